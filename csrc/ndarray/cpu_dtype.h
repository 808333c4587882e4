// Dtype table and bit-exact scalar conversions shared by every CPU kernel.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace needle {
namespace cpu {

enum class DType : int { kFloat32, kFloat16, kBFloat16, kInt8, kUInt8, kInt32 };

// Returns the dtype named `name`; throws std::invalid_argument naming the valid dtypes otherwise.
DType dtype_from_name(const std::string& name);
const char* dtype_name(DType dt);
size_t dtype_itemsize(DType dt);
inline bool dtype_is_float(DType dt) {
  return dt == DType::kFloat32 || dt == DType::kFloat16 || dt == DType::kBFloat16;
}

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE binary16 -> float32 (exact).
inline float half_to_float(uint16_t h) {
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

// float32 -> IEEE binary16, round to nearest even, overflow -> inf, NaN -> quiet NaN (as F16C).
inline uint16_t float_to_half(float f) {
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

inline float bf16_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

// float32 -> bfloat16, round to nearest even; NaN stays (quiet) NaN.
inline uint16_t float_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  const uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

// int32 -> bfloat16 with a single round to nearest even (going through float32 would round twice).
inline uint16_t int_to_bf16(int32_t v) {
  if (v == 0) return 0;
  const uint16_t sign = v < 0 ? 0x8000u : 0u;
  uint32_t mag = v < 0 ? 0u - static_cast<uint32_t>(v) : static_cast<uint32_t>(v);
  const int lz = __builtin_clz(mag);
  uint32_t exponent = static_cast<uint32_t>(31 - lz) + 127u;
  const uint32_t norm = mag << lz;  // leading one at bit 31
  uint32_t keep = norm >> 24;       // 8 significant bits
  const uint32_t rest = norm & 0xffffffu;
  if (rest > 0x800000u || (rest == 0x800000u && (keep & 1u))) ++keep;
  if (keep == 0x100u) {
    keep = 0x80u;
    ++exponent;
  }
  return sign | static_cast<uint16_t>((exponent << 7) | (keep & 0x7fu));
}

// double -> float32 rounding to odd: a later round to a narrower float (fp16, bf16) is then the
// correct single rounding of the double (float32 keeps more than 2 extra bits).
inline float double_to_float_round_odd(double d) {
  const float f = static_cast<float>(d);
  if (!std::isfinite(f) || static_cast<double>(f) == d) return f;
  uint32_t bits = float_bits(f);
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) bits -= 1;  // truncate toward zero
  return bits_float(bits | 1u);
}

template <typename Int>
struct IntRange;
template <>
struct IntRange<int8_t> {
  static constexpr int64_t lo = -128, hi = 127;
};
template <>
struct IntRange<uint8_t> {
  static constexpr int64_t lo = 0, hi = 255;
};
template <>
struct IntRange<int32_t> {
  static constexpr int64_t lo = -2147483648LL, hi = 2147483647LL;
};

// Float -> integer per the contract: round half to even, saturate, NaN -> 0.
template <typename Int>
inline Int float_to_int_sat(double f) {
  if (std::isnan(f)) return 0;
  const double r = std::nearbyint(f);  // default rounding mode: ties to even
  if (r <= static_cast<double>(IntRange<Int>::lo)) return static_cast<Int>(IntRange<Int>::lo);
  if (r >= static_cast<double>(IntRange<Int>::hi)) return static_cast<Int>(IntRange<Int>::hi);
  return static_cast<Int>(r);
}

template <typename Int>
inline Int int_saturate(int64_t v) {
  if (v < IntRange<Int>::lo) return static_cast<Int>(IntRange<Int>::lo);
  if (v > IntRange<Int>::hi) return static_cast<Int>(IntRange<Int>::hi);
  return static_cast<Int>(v);
}

// Two's-complement wrap of a 64-bit value into Int (numpy's integer overflow behaviour).
template <typename Int>
inline Int int_wrap(int64_t v) {
  using U = typename std::make_unsigned<Int>::type;
  return static_cast<Int>(static_cast<U>(static_cast<uint64_t>(v)));
}

}  // namespace cpu
}  // namespace needle
