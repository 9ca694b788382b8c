// SwAV's Sinkhorn–Knopp passes and swapped prediction (cxrfast.ops.sinkhorn) over the scores
// themselves, on the caller's stream. Scores are contiguous row-major (N, K) or (V, B, K) in
// `dtype` (kFloat32, kFloat16 or kBFloat16), read as float32; every other array is float32.
// The codes q_nk = e_nk * rows_k * columns_n, with e_nk = exp(max((s_nk - shift_k -
// sample_shift_n) / epsilon, -87)), are recomputed wherever needed and never stored.
//
// The Sinkhorn passes split their sum (or maximum) into `chunks` pieces of the reduced axis, each
// written as one row of `partial` for the caller to reduce: (chunks, N) or (chunks, K).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace cxrfast::cuda {

enum ScoreType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// partial[c, n] = max of s_nk - shift_k over chunk c of the prototypes.
cudaError_t sinkhorn_sample_shift(const void* scores, int dtype, const float* shift, float* partial, int64_t n,
                                  int64_t k, int64_t chunks, cudaStream_t stream);

// partial[c, n] = sum of e_nk * rows_k over chunk c of the prototypes.
cudaError_t sinkhorn_sample_totals(const void* scores, int dtype, const float* shift, const float* sample_shift,
                                   const float* rows, float inv_epsilon, float* partial, int64_t n, int64_t k,
                                   int64_t chunks, cudaStream_t stream);

// partial[c, k] = sum of e_nk * columns_n over chunk c of the samples.
cudaError_t sinkhorn_prototype_totals(const void* scores, int dtype, const float* shift, const float* sample_shift,
                                      const float* columns, float inv_epsilon, float* partial, int64_t n, int64_t k,
                                      int64_t chunks, cudaStream_t stream);

// lse (V, B) = log sum_k exp(s_vbk * inv_temperature).
cudaError_t swapped_log_sum_exps(const void* scores, int dtype, float* lse, int64_t crops, int64_t batch, int64_t k,
                                 float inv_temperature, cudaStream_t stream);

// dots (V, B) = sum_k s_vbk * q_bk for the codes q of crop `crop`, whose shift and rows are (K,)
// and sample_shift and columns (B,).
cudaError_t swapped_code_dots(const void* scores, int dtype, int64_t crop, const float* shift,
                              const float* sample_shift, const float* rows, const float* columns, float inv_epsilon,
                              float* dots, int64_t crops, int64_t batch, int64_t k, cudaStream_t stream);

// grad (V, B, K), in `dtype`, = weights_b * (counts_v * exp(s_vbk * inv_temperature - lse_vb) -
// sum over code crops a with assign[a] != v of q_abk); the code crops' scales are stacked: shifts
// and rows (A, K), sample_shifts and columns (A, B).
cudaError_t swapped_gradient(const void* scores, int dtype, const float* lse, const float* weights,
                             const float* counts, const int64_t* assign, const float* shifts,
                             const float* sample_shifts, const float* rows, const float* columns, void* grad,
                             int64_t crops, int64_t batch, int64_t k, int64_t code_crops, float inv_temperature,
                             float inv_epsilon, cudaStream_t stream);

}  // namespace cxrfast::cuda
