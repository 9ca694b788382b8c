#include "dicom/pixels.h"

#include <unistd.h>

#include <algorithm>
#include <type_traits>
#include <cstring>
#include <vector>

namespace cxrfast::dicom {
namespace {

constexpr size_t kChunkBytes = 1 << 20;  // fits in L2 with room for the destination

template <typename Raw>
inline Raw load(const uint8_t* p, bool swap) {
  Raw v;
  std::memcpy(&v, p, sizeof(Raw));
  if (swap) {
    if constexpr (sizeof(Raw) == 2) v = static_cast<Raw>(__builtin_bswap16(v));
    if constexpr (sizeof(Raw) == 4) v = static_cast<Raw>(__builtin_bswap32(v));
  }
  return v;
}

// Stored value of one raw sample as int64: masked to bits_stored, sign-extended if signed.
template <typename Raw>
struct Decoder {
  using Wide = std::conditional_t<sizeof(Raw) == 4, uint64_t, uint32_t>;
  Wide mask;
  int shift;  // sign extension: shift left then arithmetic right
  bool is_signed;
  bool swap;
  explicit Decoder(const PixelFormat& f)
      : mask(f.bits_stored >= int(sizeof(Raw) * 8) ? Wide(~Raw(0)) : Wide((Wide(1) << f.bits_stored) - 1)),
        shift(int(sizeof(Raw) * 8) - f.bits_stored),
        is_signed(f.is_signed),
        swap(f.swap_bytes) {}
  inline Raw operator()(const uint8_t* p) const {
    Raw v = load<Raw>(p, swap);
    if (is_signed) {
      using Signed = std::make_signed_t<Raw>;
      return static_cast<Raw>(static_cast<Signed>(static_cast<Raw>(v << shift)) >> shift);
    }
    return static_cast<Raw>(v & mask);
  }
  inline int64_t value(const uint8_t* p) const {
    Raw v = (*this)(p);
    return is_signed ? int64_t(static_cast<std::make_signed_t<Raw>>(v)) : int64_t(v);
  }
};

template <typename Fn>
void dispatch(const PixelFormat& f, Fn&& fn) {
  switch (f.bits_allocated) {
    case 8: fn(Decoder<uint8_t>(f)); break;
    case 16: fn(Decoder<uint16_t>(f)); break;
    case 32: fn(Decoder<uint32_t>(f)); break;
    default: break;  // validated by the caller
  }
}

// Parallel over blocks large enough to amortise the thread start.
template <typename Body>
void parallel_blocks(size_t count, Body&& body) {
  constexpr size_t kBlock = 1 << 16;
  const int64_t blocks = int64_t((count + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static) if (blocks > 4)
  for (int64_t b = 0; b < blocks; ++b) {
    size_t begin = size_t(b) * kBlock;
    body(begin, std::min(count, begin + kBlock));
  }
}

bool pread_all(int fd, uint8_t* dst, size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t got = ::pread(fd, dst, n, static_cast<off_t>(offset));
    if (got <= 0) return false;
    dst += got;
    n -= size_t(got);
    offset += uint64_t(got);
  }
  return true;
}

}  // namespace

void unpack_stored(const uint8_t* src, void* dst, size_t count, const PixelFormat& format) {
  dispatch(format, [&](auto decode) {
    using Raw = decltype(decode(src));
    Raw* out = static_cast<Raw*>(dst);
    parallel_blocks(count, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) out[i] = decode(src + i * sizeof(Raw));
    });
  });
}

void map_stored(const uint8_t* src, float* dst, size_t count, const PixelFormat& format, const Lut& lut) {
  dispatch(format, [&](auto decode) {
    using Raw = decltype(decode(src));
    const int64_t last = lut.size - 1;
    parallel_blocks(count, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        int64_t k = decode.value(src + i * sizeof(Raw)) - lut.first;
        dst[i] = lut.values[k < 0 ? 0 : (k > last ? last : k)];
      }
    });
  });
}

size_t stored_range(const uint8_t* src, size_t count, const PixelFormat& format, int64_t pad_low,
                    int64_t pad_high, int64_t* low, int64_t* high) {
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  size_t kept = 0;
  dispatch(format, [&](auto decode) {
    using Raw = decltype(decode(src));
#pragma omp parallel for reduction(min : lo) reduction(max : hi) reduction(+ : kept) if (count > (1 << 18))
    for (int64_t i = 0; i < int64_t(count); ++i) {
      int64_t v = decode.value(src + size_t(i) * sizeof(Raw));
      if (v >= pad_low && v <= pad_high) continue;
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      ++kept;
    }
  });
  *low = lo;
  *high = hi;
  return kept;
}

bool read_stored(int fd, uint64_t offset, void* dst, size_t count, const PixelFormat& format) {
  const size_t item = size_t(format.bits_allocated / 8);
  const size_t per_chunk = kChunkBytes / item;
  const int64_t chunks = int64_t((count + per_chunk - 1) / per_chunk);
  bool ok = true;
  uint8_t* out = static_cast<uint8_t*>(dst);
  // Straight into the destination, then fixed up in place while the chunk is in cache.
#pragma omp parallel for schedule(dynamic) reduction(&& : ok) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    size_t begin = size_t(c) * per_chunk, n = std::min(count - begin, per_chunk);
    uint8_t* p = out + begin * item;
    if (!pread_all(fd, p, n * item, offset + begin * item)) {
      ok = false;
      continue;
    }
    dispatch(format, [&](auto decode) {
      using Raw = decltype(decode(p));
      Raw* v = reinterpret_cast<Raw*>(p);
      for (size_t i = 0; i < n; ++i) v[i] = decode(p + i * sizeof(Raw));
    });
  }
  return ok;
}

bool read_mapped(int fd, uint64_t offset, float* dst, size_t count, const PixelFormat& format, const Lut& lut) {
  const size_t item = size_t(format.bits_allocated / 8);
  const size_t per_chunk = kChunkBytes / 4 / item;  // raw chunk plus its float output stay in L2
  const int64_t chunks = int64_t((count + per_chunk - 1) / per_chunk);
  bool ok = true;
#pragma omp parallel reduction(&& : ok) if (chunks > 1)
  {
    std::vector<uint8_t> raw(per_chunk * item);
#pragma omp for schedule(dynamic)
    for (int64_t c = 0; c < chunks; ++c) {
      size_t begin = size_t(c) * per_chunk, n = std::min(count - begin, per_chunk);
      if (!pread_all(fd, raw.data(), n * item, offset + begin * item)) {
        ok = false;
        continue;
      }
      const int64_t last = lut.size - 1;
      dispatch(format, [&](auto decode) {
        using Raw = decltype(decode(raw.data()));
        for (size_t i = 0; i < n; ++i) {
          int64_t k = decode.value(raw.data() + i * sizeof(Raw)) - lut.first;
          dst[begin + i] = lut.values[k < 0 ? 0 : (k > last ? last : k)];
        }
      });
    }
  }
  return ok;
}

}  // namespace cxrfast::dicom
