#include "sinkhorn.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

namespace cxrfast::cuda {
namespace {

// Most kernels give each warp one row of the scores (a sample, or a crop's sample), its lanes
// striding the prototypes so that a warp reads consecutive scores; a block is 8 warps.
constexpr int kWarp = 32;
constexpr int kWarps = 8;
constexpr int kThreads = kWarp * kWarps;
constexpr int kCrops = 8;  // crops one gradient thread keeps in registers
// cxrfast.ops.similarity.EXP_FLOOR: exponents below it would give denormals, slow and negligible.
constexpr float kExpFloor = -87.0f;

__device__ float to_float(float x) { return x; }
__device__ float to_float(__half x) { return __half2float(x); }
__device__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ void store(float* p, float x) { *p = x; }
__device__ void store(__half* p, float x) { *p = __float2half_rn(x); }
__device__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }

// e_nk from the score and the two shifts, in the order the cpu backend subtracts them.
__device__ float exponential(float score, float shift, float sample_shift, float inv_epsilon) {
  return expf(fmaxf((score - shift - sample_shift) * inv_epsilon, kExpFloor));
}

// Reductions across the 32 lanes of a warp; every lane must call them.
__device__ float warp_sum(float v) {
#pragma unroll
  for (int lane = kWarp / 2; lane > 0; lane /= 2) v += __shfl_xor_sync(0xffffffffu, v, lane);
  return v;
}

__device__ float warp_max(float v) {
#pragma unroll
  for (int lane = kWarp / 2; lane > 0; lane /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, lane));
  return v;
}

// Piece c of `pieces` near-equal consecutive pieces of [0, length): none is empty while pieces <= length.
__device__ int64_t piece_begin(int64_t c, int64_t pieces, int64_t length) { return c * length / pieces; }

// partial[c, n] = max over chunk c of the prototypes of s_nk - shift_k; warp y owns sample n.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sample_shift_kernel(const T* __restrict__ scores, const float* __restrict__ shift, float* __restrict__ partial,
                        int64_t n, int64_t k, int64_t chunks) {
  const int64_t i = int64_t(blockIdx.x) * kWarps + threadIdx.y;
  const int64_t end = piece_begin(blockIdx.y + 1, chunks, k);
  float top = -INFINITY;
  if (i < n)
    for (int64_t j = piece_begin(blockIdx.y, chunks, k) + threadIdx.x; j < end; j += kWarp)
      top = fmaxf(top, to_float(scores[i * k + j]) - shift[j]);
  top = warp_max(top);
  if (threadIdx.x == 0 && i < n) partial[blockIdx.y * n + i] = top;
}

// partial[c, n] = Σ over chunk c of the prototypes of e_nk rows_k; warp y owns sample n.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sample_totals_kernel(const T* __restrict__ scores, const float* __restrict__ shift,
                         const float* __restrict__ sample_shift, const float* __restrict__ rows, float inv_epsilon,
                         float* __restrict__ partial, int64_t n, int64_t k, int64_t chunks) {
  const int64_t i = int64_t(blockIdx.x) * kWarps + threadIdx.y;
  const int64_t end = piece_begin(blockIdx.y + 1, chunks, k);
  float total = 0.0f;
  if (i < n) {
    const float own = sample_shift[i];
    for (int64_t j = piece_begin(blockIdx.y, chunks, k) + threadIdx.x; j < end; j += kWarp)
      total += exponential(to_float(scores[i * k + j]), shift[j], own, inv_epsilon) * rows[j];
  }
  total = warp_sum(total);
  if (threadIdx.x == 0 && i < n) partial[blockIdx.y * n + i] = total;
}

// partial[c, k] = Σ over chunk c of the samples of e_nk columns_n. A block owns 32 prototypes, one
// per lane, so each warp reads 32 consecutive scores of a sample; warp y takes every 8th sample,
// and the warps' sums meet in shared memory.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    prototype_totals_kernel(const T* __restrict__ scores, const float* __restrict__ shift,
                            const float* __restrict__ sample_shift, const float* __restrict__ columns,
                            float inv_epsilon, float* __restrict__ partial, int64_t n, int64_t k, int64_t chunks) {
  __shared__ float sums[kWarps][kWarp];
  const int64_t j = int64_t(blockIdx.x) * kWarp + threadIdx.x;
  const int64_t end = piece_begin(blockIdx.y + 1, chunks, n);
  float total = 0.0f;
  if (j < k) {
    const float own_shift = shift[j];
    for (int64_t i = piece_begin(blockIdx.y, chunks, n) + threadIdx.y; i < end; i += kWarps)
      total += exponential(to_float(scores[i * k + j]), own_shift, sample_shift[i], inv_epsilon) * columns[i];
  }
  sums[threadIdx.y][threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.y == 0 && j < k) {
    for (int w = 1; w < kWarps; ++w) total += sums[w][threadIdx.x];
    partial[blockIdx.y * k + j] = total;
  }
}

// Online log-sum-exp: merges (other_top, other_total) into (top, total), both as total * exp(top).
__device__ void merge_lse(float& top, float& total, float other_top, float other_total) {
  const float m = fmaxf(top, other_top);
  if (m == -INFINITY) return;  // both empty (lanes past K); exp(-inf - -inf) would be NaN
  total = total * expf(top - m) + other_total * expf(other_top - m);
  top = m;
}

// lse_r = log Σ_k exp(s_rk / τ) for the (crop, sample) rows r; warp y owns row r, each lane keeps
// a running maximum and the sum below it over its prototypes, merged across lanes at the end.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    log_sum_exps_kernel(const T* __restrict__ scores, float* __restrict__ lse, int64_t rows, int64_t k,
                        float inv_temperature) {
  const int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.y;
  float top = -INFINITY, total = 0.0f;
  if (r < rows)
    for (int64_t j = threadIdx.x; j < k; j += kWarp) {
      const float x = to_float(scores[r * k + j]) * inv_temperature;
      if (x > top) {
        total = total * expf(top - x) + 1.0f;
        top = x;
      } else {
        total += expf(x - top);
      }
    }
#pragma unroll
  for (int lane = kWarp / 2; lane > 0; lane /= 2) {
    const float other_top = __shfl_xor_sync(0xffffffffu, top, lane);
    const float other_total = __shfl_xor_sync(0xffffffffu, total, lane);
    merge_lse(top, total, other_top, other_total);
  }
  if (threadIdx.x == 0 && r < rows) lse[r] = top + logf(total);
}

// dots[v, b] = Σ_k s_vbk q_bk, q the codes of crop `crop`. Warp y owns the pair r = b · V + v, so
// a block's warps mostly share a sample and its row of the code crop, read from cache after the
// first; each lane recomputes the codes of its prototypes.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    code_dots_kernel(const T* __restrict__ scores, int64_t crop, const float* __restrict__ shift,
                     const float* __restrict__ sample_shift, const float* __restrict__ rows,
                     const float* __restrict__ columns, float inv_epsilon, float* __restrict__ dots, int64_t crops,
                     int64_t batch, int64_t k) {
  const int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.y, b = r / crops, v = r % crops;
  float total = 0.0f;
  if (b < batch) {
    const T* own = scores + (v * batch + b) * k;
    const T* code_scores = scores + (crop * batch + b) * k;
    const float own_shift = sample_shift[b], column = columns[b];
    for (int64_t j = threadIdx.x; j < k; j += kWarp)
      total += to_float(own[j]) *
               (exponential(to_float(code_scores[j]), shift[j], own_shift, inv_epsilon) * rows[j] * column);
  }
  total = warp_sum(total);
  if (threadIdx.x == 0 && b < batch) dots[v * batch + b] = total;
}

// grad_vbk for one prototype k per thread, sample b and crops v0 .. v0 + 7 of block (x, b, z):
// each code crop's q_abk is recomputed once and taken from every crop but its own.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gradient_kernel(const T* __restrict__ scores, const float* __restrict__ lse, const float* __restrict__ weights,
                    const float* __restrict__ counts, const int64_t* __restrict__ assign,
                    const float* __restrict__ shifts, const float* __restrict__ sample_shifts,
                    const float* __restrict__ rows, const float* __restrict__ columns, T* __restrict__ grad,
                    int64_t crops, int64_t batch, int64_t k, int64_t code_crops, float inv_temperature,
                    float inv_epsilon) {
  const int64_t j = int64_t(blockIdx.x) * kThreads + threadIdx.x, b = blockIdx.y, v0 = int64_t(blockIdx.z) * kCrops;
  if (j >= k) return;
  float g[kCrops];
#pragma unroll
  for (int c = 0; c < kCrops; ++c) {
    const int64_t v = v0 + c;
    g[c] = v < crops
               ? counts[v] * expf(to_float(scores[(v * batch + b) * k + j]) * inv_temperature - lse[v * batch + b])
               : 0.0f;
  }
  for (int64_t a = 0; a < code_crops; ++a) {
    const int64_t i = assign[a];
    const float q = exponential(to_float(scores[(i * batch + b) * k + j]), shifts[a * k + j],
                                sample_shifts[a * batch + b], inv_epsilon) *
                    rows[a * k + j] * columns[a * batch + b];
#pragma unroll
    for (int c = 0; c < kCrops; ++c)
      if (v0 + c != i) g[c] -= q;
  }
  const float w = weights[b];
#pragma unroll
  for (int c = 0; c < kCrops; ++c)
    if (v0 + c < crops) store(grad + ((v0 + c) * batch + b) * k + j, g[c] * w);
}

unsigned blocks(int64_t count, int64_t per_block) { return unsigned((count + per_block - 1) / per_block); }

// Calls launch with a value of the scores' element type, from which it takes T.
template <typename Launch>
cudaError_t by_type(int dtype, Launch launch) {
  switch (dtype) {
    case kFloat32:
      return launch(float{});
    case kFloat16:
      return launch(__half{});
    case kBFloat16:
      return launch(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t sinkhorn_sample_shift(const void* scores, int dtype, const float* shift, float* partial, int64_t n,
                                  int64_t k, int64_t chunks, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const dim3 grid(blocks(n, kWarps), unsigned(chunks)), block(kWarp, kWarps);
  return by_type(dtype, [&](auto type) {
    using T = decltype(type);
    sample_shift_kernel<T><<<grid, block, 0, stream>>>(static_cast<const T*>(scores), shift, partial, n, k, chunks);
    return cudaGetLastError();
  });
}

cudaError_t sinkhorn_sample_totals(const void* scores, int dtype, const float* shift, const float* sample_shift,
                                   const float* rows, float inv_epsilon, float* partial, int64_t n, int64_t k,
                                   int64_t chunks, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const dim3 grid(blocks(n, kWarps), unsigned(chunks)), block(kWarp, kWarps);
  return by_type(dtype, [&](auto type) {
    using T = decltype(type);
    sample_totals_kernel<T><<<grid, block, 0, stream>>>(static_cast<const T*>(scores), shift, sample_shift, rows,
                                                        inv_epsilon, partial, n, k, chunks);
    return cudaGetLastError();
  });
}

cudaError_t sinkhorn_prototype_totals(const void* scores, int dtype, const float* shift, const float* sample_shift,
                                      const float* columns, float inv_epsilon, float* partial, int64_t n, int64_t k,
                                      int64_t chunks, cudaStream_t stream) {
  if (n == 0) return cudaMemsetAsync(partial, 0, size_t(chunks) * size_t(k) * sizeof(float), stream);
  const dim3 grid(blocks(k, kWarp), unsigned(chunks)), block(kWarp, kWarps);
  return by_type(dtype, [&](auto type) {
    using T = decltype(type);
    prototype_totals_kernel<T><<<grid, block, 0, stream>>>(static_cast<const T*>(scores), shift, sample_shift,
                                                           columns, inv_epsilon, partial, n, k, chunks);
    return cudaGetLastError();
  });
}

cudaError_t swapped_log_sum_exps(const void* scores, int dtype, float* lse, int64_t crops, int64_t batch, int64_t k,
                                 float inv_temperature, cudaStream_t stream) {
  if (crops * batch == 0) return cudaSuccess;
  const dim3 grid(blocks(crops * batch, kWarps)), block(kWarp, kWarps);
  return by_type(dtype, [&](auto type) {
    using T = decltype(type);
    log_sum_exps_kernel<T><<<grid, block, 0, stream>>>(static_cast<const T*>(scores), lse, crops * batch, k,
                                                       inv_temperature);
    return cudaGetLastError();
  });
}

cudaError_t swapped_code_dots(const void* scores, int dtype, int64_t crop, const float* shift,
                              const float* sample_shift, const float* rows, const float* columns, float inv_epsilon,
                              float* dots, int64_t crops, int64_t batch, int64_t k, cudaStream_t stream) {
  if (crops * batch == 0) return cudaSuccess;
  const dim3 grid(blocks(crops * batch, kWarps)), block(kWarp, kWarps);
  return by_type(dtype, [&](auto type) {
    using T = decltype(type);
    code_dots_kernel<T><<<grid, block, 0, stream>>>(static_cast<const T*>(scores), crop, shift, sample_shift, rows,
                                                    columns, inv_epsilon, dots, crops, batch, k);
    return cudaGetLastError();
  });
}

cudaError_t swapped_gradient(const void* scores, int dtype, const float* lse, const float* weights,
                             const float* counts, const int64_t* assign, const float* shifts,
                             const float* sample_shifts, const float* rows, const float* columns, void* grad,
                             int64_t crops, int64_t batch, int64_t k, int64_t code_crops, float inv_temperature,
                             float inv_epsilon, cudaStream_t stream) {
  if (crops * batch == 0) return cudaSuccess;
  const dim3 grid(blocks(k, kThreads), unsigned(batch), blocks(crops, kCrops)), block(kThreads);
  return by_type(dtype, [&](auto type) {
    using T = decltype(type);
    gradient_kernel<T><<<grid, block, 0, stream>>>(static_cast<const T*>(scores), lse, weights, counts, assign,
                                                   shifts, sample_shifts, rows, columns, static_cast<T*>(grad), crops,
                                                   batch, k, code_crops, inv_temperature, inv_epsilon);
    return cudaGetLastError();
  });
}

}  // namespace cxrfast::cuda
