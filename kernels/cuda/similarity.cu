#include "similarity.h"

#include <cmath>

namespace cxrfast::cuda {
namespace {

// A block is 16×16 threads over a 64×64 tile of logits: thread (ty, tx) holds rows ty + 16r and
// columns tx + 16c (r, c < 4), strided so that its shared-memory reads fall in distinct banks.
// D is staged through shared memory 32 values at a time.
constexpr int kSide = 16;
constexpr int kSub = 4;
constexpr int kTile = kSide * kSub;
constexpr int kChunk = 32;
constexpr int kThreads = kSide * kSide;
constexpr int kOut = kChunk / kSide;  // gradient columns per thread in one D chunk

// Chunks are stored transposed, [k][row], with one float of padding: the transposing store and
// both read patterns ([k][tx + 16c] and [tx + 16c][row]) are then free of bank conflicts.
using Chunk = float[kChunk][kTile + 1];
using Weights = float[kTile][kTile + 1];

// dst[k][r] = src[start + r, k0 + k], zero outside (rows, d); consecutive threads read
// consecutive k of one row, so the global loads are coalesced.
__device__ void load_chunk(Chunk& dst, const float* __restrict__ src, int64_t rows, int64_t start, int64_t k0,
                           int64_t d) {
  const int tid = threadIdx.y * kSide + threadIdx.x;
  for (int e = tid; e < kTile * kChunk; e += kThreads) {
    const int r = e / kChunk, k = e % kChunk;
    const int64_t row = start + r, col = k0 + k;
    dst[k][r] = (row < rows && col < d) ? src[row * d + col] : 0.0f;
  }
}

// dot[r][c] = <a_{i0 + ty + 16r}, b_{j0 + tx + 16c}> (0 past n or m). Ends synchronised, so the
// caller may overwrite as and bs at once.
__device__ void tile_dots(const float* __restrict__ a, const float* __restrict__ b, int64_t n, int64_t m,
                          int64_t d, int64_t i0, int64_t j0, Chunk& as, Chunk& bs, float (&dot)[kSub][kSub]) {
#pragma unroll
  for (int r = 0; r < kSub; ++r)
#pragma unroll
    for (int c = 0; c < kSub; ++c) dot[r][c] = 0.0f;
  for (int64_t k0 = 0; k0 < d; k0 += kChunk) {
    load_chunk(as, a, n, i0, k0, d);
    load_chunk(bs, b, m, j0, k0, d);
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kChunk; ++k) {
      float av[kSub], bv[kSub];
#pragma unroll
      for (int r = 0; r < kSub; ++r) av[r] = as[k][threadIdx.y + kSide * r];
#pragma unroll
      for (int c = 0; c < kSub; ++c) bv[c] = bs[k][threadIdx.x + kSide * c];
#pragma unroll
      for (int r = 0; r < kSub; ++r)
#pragma unroll
        for (int c = 0; c < kSub; ++c) dot[r][c] += av[r] * bv[c];
    }
    __syncthreads();
  }
}

// Whether logit (i, j) takes part; j - i cannot overflow where i + offset could.
__device__ bool kept(int64_t i, int64_t j, int64_t n, int64_t m, bool exclude, int64_t offset) {
  return i < n && j < m && !(exclude && j - i == offset);
}

__device__ float softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

__device__ float sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);  // exp(-x) would overflow for very negative x
  return e / (1.0f + e);
}

// Online log-sum-exp: merges (other_max, other_sum) into (max, sum), both as sum * exp(max).
__device__ void merge_lse(float& max, float& sum, float other_max, float other_sum) {
  const float top = fmaxf(max, other_max);
  if (top == -INFINITY) return;  // both empty; exp(-inf - -inf) would be NaN
  sum = sum * expf(max - top) + other_sum * expf(other_max - top);
  max = top;
}

// The 16 threads of a tile row are 16 consecutive lanes of one warp (blockDim.x = 16), so xor
// shuffles below 16 reduce across them; every lane of the warp takes part.
__device__ float sum_across_row(float v) {
#pragma unroll
  for (int lane = kSide / 2; lane > 0; lane /= 2) v += __shfl_xor_sync(0xffffffffu, v, lane);
  return v;
}

// w_ij for a kept logit s; col_stat / h already read for column j (unused when use_col is false).
__device__ float weight(float s, float row_stat, float g, bool use_col, float col_stat, float h, int mode) {
  float w = g * (mode == 0 ? expf(s - row_stat) : sigmoid(s));
  if (use_col) w += h * expf(s - col_stat);
  return w;
}

__global__ void __launch_bounds__(kThreads)
    forward_rows_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                        int64_t n, int64_t m, int64_t d, float scale, float bias, bool exclude, int64_t offset,
                        int mode) {
  __shared__ Chunk as, bs;
  const int64_t i0 = int64_t(blockIdx.x) * kTile;
  // Per row, over this thread's columns: running max and sum of exp(s - max) (mode 0), or the
  // sum of softplus (mode 1, max unused).
  float row_max[kSub], row_sum[kSub];
#pragma unroll
  for (int r = 0; r < kSub; ++r) row_max[r] = -INFINITY, row_sum[r] = 0.0f;
  for (int64_t j0 = 0; j0 < m; j0 += kTile) {
    float dot[kSub][kSub];
    tile_dots(a, b, n, m, d, i0, j0, as, bs, dot);
#pragma unroll
    for (int r = 0; r < kSub; ++r) {
      const int64_t i = i0 + threadIdx.y + kSide * r;
      float s[kSub];
      bool in[kSub];
      float tile_max = -INFINITY;
#pragma unroll
      for (int c = 0; c < kSub; ++c) {
        in[c] = kept(i, j0 + threadIdx.x + kSide * c, n, m, exclude, offset);
        s[c] = scale * dot[r][c] + bias;
        if (in[c]) tile_max = fmaxf(tile_max, s[c]);
      }
      if (mode == 0) {
        if (tile_max == -INFINITY) continue;  // nothing kept here
        const float top = fmaxf(row_max[r], tile_max);
        float sum = row_sum[r] * expf(row_max[r] - top);
#pragma unroll
        for (int c = 0; c < kSub; ++c)
          if (in[c]) sum += expf(s[c] - top);
        row_max[r] = top, row_sum[r] = sum;
      } else {
#pragma unroll
        for (int c = 0; c < kSub; ++c)
          if (in[c]) row_sum[r] += softplus(s[c]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kSub; ++r) {
    if (mode == 0) {
#pragma unroll
      for (int lane = kSide / 2; lane > 0; lane /= 2) {
        const float other_max = __shfl_xor_sync(0xffffffffu, row_max[r], lane);
        const float other_sum = __shfl_xor_sync(0xffffffffu, row_sum[r], lane);
        merge_lse(row_max[r], row_sum[r], other_max, other_sum);
      }
    } else {
      row_sum[r] = sum_across_row(row_sum[r]);
    }
    const int64_t i = i0 + threadIdx.y + kSide * r;
    if (threadIdx.x == 0 && i < n) {
      if (mode == 0)
        out[i] = row_max[r] == -INFINITY ? -INFINITY : row_max[r] + logf(row_sum[r]);
      else
        out[i] = row_sum[r];
    }
  }
}

// grad[o, :] (+)= Σ_t w(o, t) · other[t0 + t, :] for the 64 owners from o0, one D chunk of
// `other` at a time through `os`; w(o, t) is ws[o][t], or ws[t][o] when `kTransposed` (grad_b
// owns the tile's columns). Thread (ty, tx) owns o0 + ty + 16r and entries k0 + tx + 16c; `first`
// stores instead of adding (the first tile), so no caller zeroes the gradient. `os` must be free
// (tile_dots ends synchronised); the first chunk's barrier also publishes ws, written just before.
template <bool kTransposed>
__device__ void accumulate_gradient(const Weights& ws, Chunk& os, const float* __restrict__ other, int64_t other_rows,
                                    int64_t t0, float* __restrict__ grad, int64_t owners, int64_t o0, int64_t d,
                                    bool first) {
  for (int64_t k0 = 0; k0 < d; k0 += kChunk) {
    load_chunk(os, other, other_rows, t0, k0, d);  // os[k][t] = other[t0 + t, k0 + k]
    __syncthreads();
    float part[kSub][kOut] = {};
#pragma unroll 8
    for (int t = 0; t < kTile; ++t) {
      float ov[kOut];
#pragma unroll
      for (int c = 0; c < kOut; ++c) ov[c] = os[threadIdx.x + kSide * c][t];
#pragma unroll
      for (int r = 0; r < kSub; ++r) {
        const int o = threadIdx.y + kSide * r;
        const float w = kTransposed ? ws[t][o] : ws[o][t];
#pragma unroll
        for (int c = 0; c < kOut; ++c) part[r][c] += w * ov[c];
      }
    }
#pragma unroll
    for (int r = 0; r < kSub; ++r) {
      const int64_t o = o0 + threadIdx.y + kSide * r;
#pragma unroll
      for (int c = 0; c < kOut; ++c) {
        const int64_t k = k0 + threadIdx.x + kSide * c;
        if (o < owners && k < d) {
          float* p = grad + o * d + k;
          *p = first ? part[r][c] : *p + part[r][c];
        }
      }
    }
    __syncthreads();  // os is reloaded next chunk, ws rewritten next tile
  }
}

// The gradient of a block's 64 rows is 64 × D, too much for registers when D is large, and it
// sums over every column tile. Each column tile's logits are computed once, turned into w in
// shared memory, and multiplied by that tile of b one D chunk at a time; the partial gradient
// lives in global memory, where the block owns its rows, so it is read, added to and written
// back without atomics. Every gradient element is always handled by the same thread (the
// mapping depends on threadIdx and k0 only), so it reads back its own writes. The first column
// tile stores instead of adding: the output needs no zeroing.
__global__ void __launch_bounds__(kThreads)
    backward_a_kernel(const float* __restrict__ a, const float* __restrict__ b, const float* __restrict__ row_stat,
                      const float* __restrict__ g, const float* __restrict__ col_stat, const float* __restrict__ h,
                      float* __restrict__ grad, float* __restrict__ wdot, float* __restrict__ wsum, int64_t n,
                      int64_t m, int64_t d, float scale, float bias, bool exclude, int64_t offset, int mode) {
  __shared__ Chunk as, bs;
  __shared__ Weights ws;  // ws[row][column] of the current tile
  const int64_t i0 = int64_t(blockIdx.x) * kTile;
  const bool use_col = col_stat != nullptr;
  float rs[kSub], gs[kSub], dot_sum[kSub], w_sum[kSub];
#pragma unroll
  for (int r = 0; r < kSub; ++r) {
    const int64_t i = i0 + threadIdx.y + kSide * r;
    rs[r] = (i < n && mode == 0) ? row_stat[i] : 0.0f;
    gs[r] = i < n ? g[i] : 0.0f;
    dot_sum[r] = 0.0f, w_sum[r] = 0.0f;
  }
  for (int64_t j0 = 0; j0 < m; j0 += kTile) {
    float dot[kSub][kSub];
    tile_dots(a, b, n, m, d, i0, j0, as, bs, dot);
    float cs[kSub], hs[kSub];
#pragma unroll
    for (int c = 0; c < kSub; ++c) {
      const int64_t j = j0 + threadIdx.x + kSide * c;
      cs[c] = (use_col && j < m) ? col_stat[j] : 0.0f;
      hs[c] = (use_col && j < m) ? h[j] : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < kSub; ++r) {
      const int64_t i = i0 + threadIdx.y + kSide * r;
#pragma unroll
      for (int c = 0; c < kSub; ++c) {
        const int64_t j = j0 + threadIdx.x + kSide * c;
        const float w = kept(i, j, n, m, exclude, offset)
                            ? weight(scale * dot[r][c] + bias, rs[r], gs[r], use_col, cs[c], hs[c], mode)
                            : 0.0f;
        dot_sum[r] += w * dot[r][c];
        w_sum[r] += w;
        ws[threadIdx.y + kSide * r][threadIdx.x + kSide * c] = w;
      }
    }
    accumulate_gradient<false>(ws, bs, b, m, j0, grad, n, i0, d, j0 == 0);
  }
#pragma unroll
  for (int r = 0; r < kSub; ++r) {
    const float total_dot = sum_across_row(dot_sum[r]);
    const float total_w = sum_across_row(w_sum[r]);
    const int64_t i = i0 + threadIdx.y + kSide * r;
    if (threadIdx.x == 0 && i < n) wdot[i] = total_dot, wsum[i] = total_w;
  }
}

// The transpose of backward_a: a block owns 64 columns and loops over row tiles, keeping the
// partial grad_b of its columns in global memory the same way (no atomics, no zeroing).
__global__ void __launch_bounds__(kThreads)
    backward_b_kernel(const float* __restrict__ a, const float* __restrict__ b, const float* __restrict__ row_stat,
                      const float* __restrict__ g, const float* __restrict__ col_stat, const float* __restrict__ h,
                      float* __restrict__ grad_b, int64_t n, int64_t m, int64_t d, float scale, float bias,
                      bool exclude, int64_t offset, int mode) {
  __shared__ Chunk as, bs;
  __shared__ Weights ws;  // ws[row][column] of the current tile
  const int64_t j0 = int64_t(blockIdx.x) * kTile;
  const bool use_col = col_stat != nullptr;
  float cs[kSub], hs[kSub];
#pragma unroll
  for (int c = 0; c < kSub; ++c) {
    const int64_t j = j0 + threadIdx.x + kSide * c;
    cs[c] = (use_col && j < m) ? col_stat[j] : 0.0f;
    hs[c] = (use_col && j < m) ? h[j] : 0.0f;
  }
  for (int64_t i0 = 0; i0 < n; i0 += kTile) {
    float dot[kSub][kSub];
    tile_dots(a, b, n, m, d, i0, j0, as, bs, dot);
#pragma unroll
    for (int r = 0; r < kSub; ++r) {
      const int64_t i = i0 + threadIdx.y + kSide * r;
      const float rs = (i < n && mode == 0) ? row_stat[i] : 0.0f;
      const float gs = i < n ? g[i] : 0.0f;
#pragma unroll
      for (int c = 0; c < kSub; ++c) {
        const int64_t j = j0 + threadIdx.x + kSide * c;
        ws[threadIdx.y + kSide * r][threadIdx.x + kSide * c] =
            kept(i, j, n, m, exclude, offset) ? weight(scale * dot[r][c] + bias, rs, gs, use_col, cs[c], hs[c], mode)
                                              : 0.0f;
      }
    }
    accumulate_gradient<true>(ws, as, a, n, i0, grad_b, m, j0, d, i0 == 0);
  }
}

unsigned blocks(int64_t count) { return unsigned((count + kTile - 1) / kTile); }

}  // namespace

cudaError_t similarity_forward_rows(const float* a, const float* b, float* out, int64_t n, int64_t m, int64_t d,
                                    float scale, float bias, bool exclude, int64_t offset, int mode,
                                    cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  forward_rows_kernel<<<blocks(n), dim3(kSide, kSide), 0, stream>>>(a, b, out, n, m, d, scale, bias, exclude,
                                                                    offset, mode);
  return cudaGetLastError();
}

cudaError_t similarity_backward_a(const float* a, const float* b, const float* row_stat, const float* g,
                                  const float* col_stat, const float* h, float* grad, float* wdot, float* wsum,
                                  int64_t n, int64_t m, int64_t d, float scale, float bias, bool exclude,
                                  int64_t offset, int mode, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (m == 0) {  // no column tile to store the gradient; wdot and wsum still come from the kernel
    const cudaError_t status = cudaMemsetAsync(grad, 0, size_t(n) * size_t(d) * sizeof(float), stream);
    if (status != cudaSuccess) return status;
  }
  backward_a_kernel<<<blocks(n), dim3(kSide, kSide), 0, stream>>>(a, b, row_stat, g, col_stat, h, grad, wdot, wsum,
                                                                  n, m, d, scale, bias, exclude, offset, mode);
  return cudaGetLastError();
}

cudaError_t similarity_backward_b(const float* a, const float* b, const float* row_stat, const float* g,
                                  const float* col_stat, const float* h, float* grad_b, int64_t n, int64_t m,
                                  int64_t d, float scale, float bias, bool exclude, int64_t offset, int mode,
                                  cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  if (n == 0) return cudaMemsetAsync(grad_b, 0, size_t(m) * size_t(d) * sizeof(float), stream);
  backward_b_kernel<<<blocks(m), dim3(kSide, kSide), 0, stream>>>(a, b, row_stat, g, col_stat, h, grad_b, n, m, d,
                                                                  scale, bias, exclude, offset, mode);
  return cudaGetLastError();
}

}  // namespace cxrfast::cuda
