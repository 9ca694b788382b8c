// RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, then one PackBits
// segment per byte plane, most significant byte first, sample by sample.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cxrfast::dicom {

// Decodes one frame into `dst` as little endian samples, pixel-interleaved (R,G,B,R,...), with
// rows * columns * samples_per_pixel * bytes_per_sample bytes. Throws ParseError on bad data.
void decode_rle_frame(const uint8_t* src, size_t size, uint8_t* dst, size_t rows, size_t columns,
                      int samples_per_pixel, int bytes_per_sample);

}  // namespace cxrfast::dicom
