// Dtype table and bit-exact scalar conversions shared by every CPU kernel.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "common/dtype.h"
#include "common/float_bits.h"

namespace needle {
namespace cpu {

using common::DType;
using common::dtype_is_float;
using common::dtype_itemsize;
using common::dtype_name;

// Returns the dtype named `name`; throws std::invalid_argument naming the valid dtypes otherwise.
DType dtype_from_name(const std::string& name);

using common::bf16_to_float;
using common::bits_float;
using common::float_bits;
using common::float_to_bf16;
using common::float_to_half;
using common::half_to_float;

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

using common::double_to_float_round_odd;

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
