// Sparse convolution as an implicit GEMM over visible positions (SparK), float32, on the caller's
// stream. rows: (M_in + 1, C) position rows, the last one zero; table: (M_out, K) row index of each
// output position's tap; weight: (K * C, N) tap-major (row k * C + c is tap k of channel c).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace cxrfast::cuda {

// out (M_out, N) = sum_k rows[table[:, k]] @ weight[k * C : (k + 1) * C] (+ bias)
cudaError_t gather_gemm_forward(const float* rows, const int64_t* table, const float* weight, const float* bias,
                                float* out, int64_t m_out, int64_t channels, int64_t n, int64_t taps,
                                cudaStream_t stream);

// grad_weight (K * C, N) = rows[table[:, k]]^T @ grad_out;  grad_rows (M_in + 1, C, zeroed by the
// caller) += grad_out @ weight_k^T scattered to table[:, k].
cudaError_t gather_gemm_backward(const float* rows, const int64_t* table, const float* weight,
                                 const float* grad_out, float* grad_rows, float* grad_weight, int64_t m_out,
                                 int64_t channels, int64_t n, int64_t taps, cudaStream_t stream);

}  // namespace cxrfast::cuda
