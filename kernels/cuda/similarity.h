// Row reductions of the similarity logits s_ij = scale * <a_i, b_j> + bias for contrastive losses
// (SimCLR, CLIP, SigLIP), float32, on the caller's stream. The N×M logit matrix is never stored:
// every kernel recomputes 64×64 tiles of it from a (N, D) and b (M, D), both contiguous row-major.
// With `exclude`, entry (i, i + offset) is left out (as if -inf) wherever that column exists.
// mode 0 ("lse"): reductions of exp(s); mode 1 ("softplus"): of softplus(s).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace cxrfast::cuda {

// out (N,) = log sum_j exp(s_ij) (mode 0; -inf for a row with nothing kept) or
// sum_j softplus(s_ij) (mode 1).
cudaError_t similarity_forward_rows(const float* a, const float* b, float* out, int64_t n, int64_t m, int64_t d,
                                    float scale, float bias, bool exclude, int64_t offset, int mode,
                                    cudaStream_t stream);

// With w_ij = g_i * phi_ij + (col_stat ? h_j * exp(s_ij - col_stat_j) : 0), phi_ij = exp(s_ij - row_stat_i)
// (mode 0) or sigmoid(s_ij) (mode 1), and w_ij = 0 where excluded:
// grad (N, D) = W b, wdot (N,) = sum_j w_ij <a_i, b_j>, wsum (N,) = sum_j w_ij, all overwritten.
// row_stat is read in mode 0 only; col_stat and h are both null or both (M,).
cudaError_t similarity_backward_a(const float* a, const float* b, const float* row_stat, const float* g,
                                  const float* col_stat, const float* h, float* grad, float* wdot, float* wsum,
                                  int64_t n, int64_t m, int64_t d, float scale, float bias, bool exclude,
                                  int64_t offset, int mode, cudaStream_t stream);

// grad_b (M, D) = Wᵀ a for the same w, overwritten.
cudaError_t similarity_backward_b(const float* a, const float* b, const float* row_stat, const float* g,
                                  const float* col_stat, const float* h, float* grad_b, int64_t n, int64_t m,
                                  int64_t d, float scale, float bias, bool exclude, int64_t offset, int mode,
                                  cudaStream_t stream);

}  // namespace cxrfast::cuda
