// Stored pixel values: unpacking raw Pixel Data (byte order, Bits Stored masking, sign
// extension) and mapping stored values through a lookup table to display values.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cxrfast::dicom {

struct PixelFormat {
  int bits_allocated = 16;  // 8, 16 or 32
  int bits_stored = 16;
  bool is_signed = false;   // Pixel Representation 1
  bool swap_bytes = false;  // big endian source on this little endian machine
};

// Raw values -> stored values of the same width: unused high bits cleared (unsigned) or filled
// with the sign bit (signed). `src` and `dst` may be the same buffer.
void unpack_stored(const uint8_t* src, void* dst, size_t count, const PixelFormat& format);

// A table over stored values [first, first + size); values outside it take the nearest end.
struct Lut {
  const float* values;
  int64_t first;
  int64_t size;
};

// Raw values -> lut[stored value], one pass, as float32.
void map_stored(const uint8_t* src, float* dst, size_t count, const PixelFormat& format, const Lut& lut);

// Smallest and largest stored value outside the padding range [pad_low, pad_high] (pass
// pad_low > pad_high for none). Returns the number of values outside it.
size_t stored_range(const uint8_t* src, size_t count, const PixelFormat& format, int64_t pad_low,
                    int64_t pad_high, int64_t* low, int64_t* high);

// The same operations reading `count` values at `offset` of an open file: each chunk is
// converted while it is still in cache. Returns false if the file is shorter.
bool read_stored(int fd, uint64_t offset, void* dst, size_t count, const PixelFormat& format);
bool read_mapped(int fd, uint64_t offset, float* dst, size_t count, const PixelFormat& format, const Lut& lut);

}  // namespace cxrfast::dicom
