// __nv_bfloat16 for the CPU emulation: the upper half of a float32, rounded to nearest even.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if (std::isnan(f)) return {uint16_t((u >> 16) | 0x40)};  // stays a NaN, quiet
  u += 0x7fff + ((u >> 16) & 1);
  return {uint16_t(u >> 16)};
}
