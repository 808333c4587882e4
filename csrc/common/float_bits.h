// float_bits.h: the one fp16 / bf16 rounding code of every module (bit-exact, host and device).
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

// One body compiles for the host (g++) and for CUDA kernels (nvcc): CPU and GPU round alike.
#if defined(__CUDACC__)
#define NEEDLE_HOST_DEVICE __host__ __device__
#else
#define NEEDLE_HOST_DEVICE
#endif

namespace needle {
namespace common {

NEEDLE_HOST_DEVICE inline uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
NEEDLE_HOST_DEVICE inline float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// IEEE binary16 -> float32 (exact).
NEEDLE_HOST_DEVICE inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24 is exact in float32
    const float mag = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -mag : mag;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

// float32 -> IEEE binary16, round to nearest even, overflow -> inf, NaN -> quiet NaN keeping the
// top payload bits (what F16C's vcvtps2ph does, so the SIMD and portable paths agree).
NEEDLE_HOST_DEVICE inline uint16_t float_to_half(float f) {
  uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) {
    if (x == 0x7f800000u) return sign | 0x7c00u;
    return sign | 0x7e00u | static_cast<uint16_t>((x >> 13) & 0x3ffu);
  }
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (x < 0x38800000u) {
    // Result is subnormal: adding 0.5 puts the binary16 subnormal ulp (2^-24) at the float32
    // ulp, so the hardware add performs the round-to-nearest-even for us.
    const float sum = bits_float(x) + 0.5f;
    return sign | static_cast<uint16_t>(float_bits(sum) - 0x3f000000u);
  }
  const uint32_t odd = (x >> 13) & 1u;
  x += 0xc8000fffu + odd;  // rebias exponent (-112 << 23) and round half to even
  return sign | static_cast<uint16_t>(x >> 13);
}

// float_to_half, except every NaN becomes sign | 0x7e00: the quantizer's weight casts promise one
// canonical NaN (the CUDA twin's __float2half_rn path gives the same).
NEEDLE_HOST_DEVICE inline uint16_t float_to_half_canonical_nan(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>(((x >> 16) & 0x8000u) | 0x7e00u);
  return float_to_half(f);
}

NEEDLE_HOST_DEVICE inline float bf16_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

// float32 -> bfloat16, round to nearest even; NaN stays NaN (quiet bit set, sign kept).
NEEDLE_HOST_DEVICE inline uint16_t float_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  const uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

// double -> float32 rounding to odd (truncate, then set the last bit when inexact): a later
// round to nearest even to a format >= 2 bits narrower (fp16, bf16) is then the one correct
// rounding of the double, with no double-rounding error.
NEEDLE_HOST_DEVICE inline float double_to_float_round_odd(double d) {
  const float f = static_cast<float>(d);
  uint32_t bits = float_bits(f);
  const bool finite = (bits & 0x7f800000u) != 0x7f800000u;
  if (!finite || static_cast<double>(f) == d) return f;  // exact, inf or NaN: nothing to do
  if (fabs(static_cast<double>(f)) > fabs(d)) bits -= 1;  // step toward zero: truncation
  return bits_float(bits | 1u);
}

}  // namespace common
}  // namespace needle
