#include "sparse/depthwise.h"

#include <algorithm>
#include <vector>

namespace cxrfast::sparse {
namespace {

constexpr int64_t kChannelBlock = 64;  // a block of channels per task: whole cache lines, no sharing

template <typename Body>
void channel_blocks(int64_t channels, Body&& body) {
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(dynamic)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    body(blk * kChannelBlock, std::min(channels, (blk + 1) * kChannelBlock));
  }
}

inline int64_t pixel(const DepthwiseShape& s, const int64_t* pos, int64_t ky, int64_t kx) {
  const int64_t y = pos[1] * s.stride + ky * s.dilation, x = pos[2] * s.stride + kx * s.dilation;
  return ((pos[0] * s.height + y) * s.width + x) * s.channels;
}

}  // namespace

void depthwise_forward(const float* input, const int64_t* positions, const float* weight, const float* bias,
                       float* out, const DepthwiseShape& s) {
  const int64_t taps = s.kernel * s.kernel;
  channel_blocks(s.channels, [&](int64_t c0, int64_t c1) {
    // The block's weights transposed to (tap, channel) so the inner loop runs over channels.
    std::vector<float> w(size_t(taps * (c1 - c0)));
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t k = 0; k < taps; ++k) w[size_t(k * (c1 - c0) + (c - c0))] = weight[c * taps + k];
    for (int64_t m = 0; m < s.positions; ++m) {
      const int64_t* pos = positions + 3 * m;
      float* o = out + m * s.channels;
      for (int64_t c = c0; c < c1; ++c) o[c] = bias ? bias[c] : 0.0f;
      for (int64_t ky = 0; ky < s.kernel; ++ky) {
        for (int64_t kx = 0; kx < s.kernel; ++kx) {
          const float* x = input + pixel(s, pos, ky, kx);
          const float* wk = w.data() + (ky * s.kernel + kx) * (c1 - c0) - c0;
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c) o[c] += wk[c] * x[c];
        }
      }
    }
  });
}

void depthwise_backward(const float* input, const int64_t* positions, const float* weight, const float* grad_out,
                        float* grad_input, float* grad_weight, const DepthwiseShape& s) {
  const int64_t taps = s.kernel * s.kernel;
  channel_blocks(s.channels, [&](int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    std::vector<float> w(size_t(taps * width)), gw(size_t(taps * width), 0.0f);
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t k = 0; k < taps; ++k) w[size_t(k * width + (c - c0))] = weight[c * taps + k];
    for (int64_t m = 0; m < s.positions; ++m) {
      const int64_t* pos = positions + 3 * m;
      const float* g = grad_out + m * s.channels;
      for (int64_t ky = 0; ky < s.kernel; ++ky) {
        for (int64_t kx = 0; kx < s.kernel; ++kx) {
          const int64_t at = pixel(s, pos, ky, kx);
          const float* x = input + at;
          float* gx = grad_input + at;
          const float* wk = w.data() + (ky * s.kernel + kx) * width - c0;
          float* gwk = gw.data() + (ky * s.kernel + kx) * width - c0;
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c) {
            gx[c] += wk[c] * g[c];
            gwk[c] += x[c] * g[c];
          }
        }
      }
    }
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t k = 0; k < taps; ++k) grad_weight[c * taps + k] = gw[size_t(k * width + (c - c0))];
  });
}

}  // namespace cxrfast::sparse
