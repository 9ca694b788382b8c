// Depthwise convolution evaluated at a list of output positions only (SparK's visible positions),
// on a channels-last, zero-filled and already padded input map. Channels are the inner loop, so
// the compiler vectorises them; threads split channel ranges, so backward needs no atomics.
#pragma once

#include <cstdint>

namespace cxrfast::sparse {

struct DepthwiseShape {
  int64_t batch, height, width, channels;  // of the padded input map (B, H, W, C)
  int64_t kernel, stride, dilation;
  int64_t positions;                       // M output positions, rows of (b, y, x) in output coordinates
};

// out[m, c] = bias[c] + sum_k weight[c, k] * input[b, y*stride + ky*dilation, x*stride + kx*dilation, c]
void depthwise_forward(const float* input, const int64_t* positions, const float* weight, const float* bias,
                       float* out, const DepthwiseShape& s);

// grad_input (zeroed by the caller) += the transposed convolution of grad_out; grad_weight = sum over positions.
void depthwise_backward(const float* input, const int64_t* positions, const float* weight, const float* grad_out,
                        float* grad_input, float* grad_weight, const DepthwiseShape& s);

}  // namespace cxrfast::sparse
