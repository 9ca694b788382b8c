#include "dicom/rle.h"

#include <string>

#include "dicom/parser.h"

namespace cxrfast::dicom {
namespace {

uint32_t le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// PackBits into every `stride`-th byte of dst; returns the number of bytes produced.
size_t unpack_segment(const uint8_t* src, size_t size, uint8_t* dst, size_t capacity, size_t stride) {
  size_t in = 0, out = 0;
  while (in < size && out < capacity) {
    int8_t header = static_cast<int8_t>(src[in++]);
    if (header >= 0) {  // header + 1 literal bytes
      size_t n = size_t(header) + 1;
      if (n > size - in) throw ParseError("RLE literal run of " + std::to_string(n) + " bytes runs past its segment");
      if (n > capacity - out) n = capacity - out;
      for (size_t k = 0; k < n; ++k) dst[(out + k) * stride] = src[in + k];
      in += size_t(header) + 1;
      out += n;
    } else if (header != -128) {  // one byte repeated 1 - header times; -128 is a no-op
      if (in >= size) throw ParseError("RLE replicate run without its byte at the end of a segment");
      size_t n = size_t(1 - header);
      if (n > capacity - out) n = capacity - out;
      uint8_t b = src[in++];
      for (size_t k = 0; k < n; ++k) dst[(out + k) * stride] = b;
      out += n;
    }
  }
  return out;
}

}  // namespace

void decode_rle_frame(const uint8_t* src, size_t size, uint8_t* dst, size_t rows, size_t columns,
                      int samples_per_pixel, int bytes_per_sample) {
  if (size < 64) throw ParseError("RLE frame of " + std::to_string(size) + " bytes is shorter than its 64-byte header");
  const uint32_t segments = le32(src);
  const uint32_t expected = uint32_t(samples_per_pixel * bytes_per_sample);
  if (segments != expected) {
    throw ParseError("RLE header lists " + std::to_string(segments) + " segments, but " +
                     std::to_string(expected) + " are needed for this pixel format");
  }
  if (segments > 15) throw ParseError("RLE header lists more than 15 segments");
  const size_t pixels = rows * columns;
  const size_t stride = size_t(samples_per_pixel) * size_t(bytes_per_sample);
  uint32_t offsets[16];
  for (uint32_t s = 0; s < segments; ++s) offsets[s] = le32(src + 4 + 4 * s);
  offsets[segments] = uint32_t(size);
  for (uint32_t s = 0; s < segments; ++s) {  // each offset names its own segment in the message
    if (offsets[s] < 64 || offsets[s] > size) {
      throw ParseError("RLE segment " + std::to_string(s) + " has offset " + std::to_string(offsets[s]) +
                       " outside the frame of " + std::to_string(size) + " bytes");
    }
    if (s > 0 && offsets[s] < offsets[s - 1]) {
      throw ParseError("RLE segment " + std::to_string(s) + " has offset " + std::to_string(offsets[s]) +
                       ", before segment " + std::to_string(s - 1) + " at " + std::to_string(offsets[s - 1]));
    }
  }
  std::string failure;
  // Segments are independent byte planes: decode them side by side.
#pragma omp parallel for schedule(dynamic) if (pixels > (1 << 16))
  for (int s = 0; s < int(segments); ++s) {
    const int sample = s / bytes_per_sample;
    const int byte = bytes_per_sample - 1 - s % bytes_per_sample;  // MSB segment first
    uint8_t* plane = dst + size_t(sample * bytes_per_sample + byte);
    try {
      size_t got = unpack_segment(src + offsets[s], offsets[s + 1] - offsets[s], plane, pixels, stride);
      if (got < pixels) {
        throw ParseError("RLE segment " + std::to_string(s) + " decodes to " + std::to_string(got) +
                         " bytes, expected " + std::to_string(pixels));
      }
    } catch (const ParseError& e) {
#pragma omp critical
      failure = e.what();
    }
  }
  if (!failure.empty()) throw ParseError(failure);
}

}  // namespace cxrfast::dicom
