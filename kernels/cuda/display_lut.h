// Stored values -> display values on the GPU through a lookup table (the same table the CPU
// path builds from the Modality, VOI and Presentation transforms).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace cxrfast::cuda {

// dst[i] = lut[clamp(stored[i] - first, 0, lut_size - 1)] for stored values of `bits` (8/16/32)
// width, signed or not. Enqueued on `stream`; returns the launch status.
cudaError_t map_stored(const void* stored, int bits, bool is_signed, int64_t count, const float* lut,
                       int64_t first, int64_t lut_size, float* dst, cudaStream_t stream);

}  // namespace cxrfast::cuda
