#include "display_lut.h"

namespace cxrfast::cuda {
namespace {

template <typename T>
__global__ void map_kernel(const T* __restrict__ stored, int64_t count, const float* __restrict__ lut,
                           int64_t first, int64_t last, float* __restrict__ dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t k = int64_t(stored[i]) - first;
    k = k < 0 ? 0 : (k > last ? last : k);
    dst[i] = __ldg(lut + k);  // the table is small and shared by all threads: read-only cache
  }
}

template <typename T>
cudaError_t launch(const void* stored, int64_t count, const float* lut, int64_t first, int64_t lut_size,
                   float* dst, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  int64_t blocks = (count + kThreads - 1) / kThreads;
  int grid = int(blocks < 65535 * 8 ? blocks : 65535 * 8);
  map_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(stored), count, lut, first, lut_size - 1, dst);
  return cudaGetLastError();
}

}  // namespace

cudaError_t map_stored(const void* stored, int bits, bool is_signed, int64_t count, const float* lut,
                       int64_t first, int64_t lut_size, float* dst, cudaStream_t stream) {
  switch (bits) {
    case 8: return is_signed ? launch<int8_t>(stored, count, lut, first, lut_size, dst, stream)
                             : launch<uint8_t>(stored, count, lut, first, lut_size, dst, stream);
    case 16: return is_signed ? launch<int16_t>(stored, count, lut, first, lut_size, dst, stream)
                              : launch<uint16_t>(stored, count, lut, first, lut_size, dst, stream);
    case 32: return is_signed ? launch<int32_t>(stored, count, lut, first, lut_size, dst, stream)
                              : launch<uint32_t>(stored, count, lut, first, lut_size, dst, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace cxrfast::cuda
