#include "sparse_gather_gemm.h"

namespace cxrfast::cuda {
namespace {

constexpr int kTile = 16;

// One 16×16 output tile per block; the A operand is gathered row by row through the table as it
// is staged in shared memory, so the gathered matrix never exists.
__global__ void forward_kernel(const float* __restrict__ rows, const int64_t* __restrict__ table,
                               const float* __restrict__ weight, const float* __restrict__ bias,
                               float* __restrict__ out, int64_t m_out, int64_t channels, int64_t n, int64_t taps) {
  __shared__ float a[kTile][kTile + 1];
  __shared__ float b[kTile][kTile + 1];
  const int64_t m = blockIdx.y * int64_t(kTile) + threadIdx.y;
  const int64_t col = blockIdx.x * int64_t(kTile) + threadIdx.x;
  float acc = 0.0f;
  for (int64_t k = 0; k < taps; ++k) {
    const int64_t src = m < m_out ? table[m * taps + k] : 0;
    for (int64_t c0 = 0; c0 < channels; c0 += kTile) {
      const int64_t ca = c0 + threadIdx.x, cb = c0 + threadIdx.y;
      a[threadIdx.y][threadIdx.x] = (m < m_out && ca < channels) ? rows[src * channels + ca] : 0.0f;
      b[threadIdx.y][threadIdx.x] = (cb < channels && col < n) ? weight[(k * channels + cb) * n + col] : 0.0f;
      __syncthreads();
#pragma unroll
      for (int i = 0; i < kTile; ++i) acc += a[threadIdx.y][i] * b[i][threadIdx.x];
      __syncthreads();
    }
  }
  if (m < m_out && col < n) out[m * n + col] = acc + (bias ? bias[col] : 0.0f);
}

// grad_weight[k * C + c, col] = sum_m rows[table[m, k], c] * grad_out[m, col]; grid.z = tap.
__global__ void grad_weight_kernel(const float* __restrict__ rows, const int64_t* __restrict__ table,
                                   const float* __restrict__ grad_out, float* __restrict__ grad_weight,
                                   int64_t m_out, int64_t channels, int64_t n, int64_t taps) {
  __shared__ float a[kTile][kTile + 1];  // [m][c]
  __shared__ float g[kTile][kTile + 1];  // [m][col]
  const int64_t k = blockIdx.z;
  const int64_t c = blockIdx.y * int64_t(kTile) + threadIdx.y;
  const int64_t col = blockIdx.x * int64_t(kTile) + threadIdx.x;
  float acc = 0.0f;
  for (int64_t m0 = 0; m0 < m_out; m0 += kTile) {
    const int64_t ma = m0 + threadIdx.y;  // row loaded by this thread into both tiles
    const int64_t ca = blockIdx.y * int64_t(kTile) + threadIdx.x;
    const int64_t src = ma < m_out ? table[ma * taps + k] : 0;
    a[threadIdx.y][threadIdx.x] = (ma < m_out && ca < channels) ? rows[src * channels + ca] : 0.0f;
    g[threadIdx.y][threadIdx.x] = (ma < m_out && col < n) ? grad_out[ma * n + col] : 0.0f;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTile; ++i) acc += a[i][threadIdx.y] * g[i][threadIdx.x];
    __syncthreads();
  }
  if (c < channels && col < n) grad_weight[(k * channels + c) * n + col] = acc;
}

// grad_rows[table[m, k], c] += sum_col grad_out[m, col] * weight[k * C + c, col]; grid.z = tap.
__global__ void grad_rows_kernel(const float* __restrict__ grad_out, const int64_t* __restrict__ table,
                                 const float* __restrict__ weight, float* __restrict__ grad_rows, int64_t m_out,
                                 int64_t channels, int64_t n, int64_t taps) {
  __shared__ float g[kTile][kTile + 1];  // [m][col]
  __shared__ float w[kTile][kTile + 1];  // [c][col]
  const int64_t k = blockIdx.z;
  const int64_t m = blockIdx.y * int64_t(kTile) + threadIdx.y;
  const int64_t c = blockIdx.x * int64_t(kTile) + threadIdx.x;
  float acc = 0.0f;
  for (int64_t n0 = 0; n0 < n; n0 += kTile) {
    const int64_t cg = n0 + threadIdx.x;
    const int64_t cw = blockIdx.x * int64_t(kTile) + threadIdx.y;
    g[threadIdx.y][threadIdx.x] = (m < m_out && cg < n) ? grad_out[m * n + cg] : 0.0f;
    w[threadIdx.y][threadIdx.x] = (cw < channels && cg < n) ? weight[(k * channels + cw) * n + cg] : 0.0f;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTile; ++i) acc += g[threadIdx.y][i] * w[threadIdx.x][i];
    __syncthreads();
  }
  if (m < m_out && c < channels) atomicAdd(grad_rows + table[m * taps + k] * channels + c, acc);
}

dim3 tiles(int64_t x, int64_t y, int64_t z = 1) {
  return dim3(unsigned((x + kTile - 1) / kTile), unsigned((y + kTile - 1) / kTile), unsigned(z));
}

}  // namespace

cudaError_t gather_gemm_forward(const float* rows, const int64_t* table, const float* weight, const float* bias,
                                float* out, int64_t m_out, int64_t channels, int64_t n, int64_t taps,
                                cudaStream_t stream) {
  if (m_out == 0 || n == 0) return cudaSuccess;
  forward_kernel<<<tiles(n, m_out), dim3(kTile, kTile), 0, stream>>>(rows, table, weight, bias, out, m_out,
                                                                      channels, n, taps);
  return cudaGetLastError();
}

cudaError_t gather_gemm_backward(const float* rows, const int64_t* table, const float* weight,
                                 const float* grad_out, float* grad_rows, float* grad_weight, int64_t m_out,
                                 int64_t channels, int64_t n, int64_t taps, cudaStream_t stream) {
  if (n == 0 || channels == 0) return cudaSuccess;
  grad_weight_kernel<<<tiles(n, channels, taps), dim3(kTile, kTile), 0, stream>>>(rows, table, grad_out,
                                                                                   grad_weight, m_out, channels, n,
                                                                                   taps);
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess || m_out == 0) return status;
  grad_rows_kernel<<<tiles(channels, m_out, taps), dim3(kTile, kTile), 0, stream>>>(grad_out, table, weight,
                                                                                     grad_rows, m_out, channels, n,
                                                                                     taps);
  return cudaGetLastError();
}

}  // namespace cxrfast::cuda
