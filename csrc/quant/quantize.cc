// quantize.cc: portable quantize span (ONNX QuantizeLinear semantics) and the float -> half casts.
//
// q = clamp(rint(x / s) + z, qmin, qmax): true fp32 division, ties to even, z added after
// rounding. As in the output stage, x / s is clamped to [qmin - z, qmax - z] before rounding.
#include <cmath>
#include <cstring>

#include "quant.h"

namespace needle_qc {

bool quantize_span_scalar(const float* x, size_t n, const float* s, const int32_t* z,
                          size_t s_step, int qmin, int qmax, bool out_s8, void* q) {
  bool finite_or_inf = true;
  for (size_t i = 0; i < n; ++i) {
    const size_t c = i * s_step;
    float t = x[i] / s[c];
    if (std::isnan(t)) finite_or_inf = false;
    const float lo = float(qmin - z[c]), hi = float(qmax - z[c]);
    t = t < lo ? lo : (t > hi ? hi : t);
    int32_t v = static_cast<int32_t>(std::nearbyint(t)) + z[c];
    if (out_s8)
      static_cast<int8_t*>(q)[i] = static_cast<int8_t>(v);
    else
      static_cast<uint8_t*>(q)[i] = static_cast<uint8_t>(v);
  }
  return finite_or_inf;
}

uint16_t f32_to_f16_rne(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
  const uint32_t mag = b & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return sign | 0x7E00u;        // NaN stays (quiet) NaN
  if (mag >= 0x477FF000u) return sign | 0x7C00u;       // >= 65520 rounds to inf
  if (mag < 0x38800000u) {                             // below 2^-14: subnormal half
    // value = mag_float; half subnormal unit is 2^-24. Scale and round to nearest even.
    float f;
    uint32_t m = mag;
    std::memcpy(&f, &m, 4);
    float units = f * 16777216.0f;  // exact: multiply by 2^24
    return sign | static_cast<uint16_t>(std::nearbyint(units));
  }
  // Normal: rebias exponent (127 -> 15) and round 23 mantissa bits to 10, ties to even.
  uint32_t r = mag - 0x38000000u;  // exponent - 112
  const uint32_t lsb = (r >> 13) & 1u;
  r += 0xFFFu + lsb;
  return sign | static_cast<uint16_t>(r >> 13);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  float mag;
  if (exp == 0) {
    mag = float(man) * (1.0f / 16777216.0f);  // subnormal: man * 2^-24, exact
  } else if (exp == 31) {
    uint32_t b = 0x7F800000u | (man << 13);
    std::memcpy(&mag, &b, 4);
  } else {
    uint32_t b = ((exp + 112) << 23) | (man << 13);
    std::memcpy(&mag, &b, 4);
  }
  uint32_t out;
  std::memcpy(&out, &mag, 4);
  out |= sign;
  std::memcpy(&mag, &out, 4);
  return mag;
}

uint16_t f32_to_bf16_rne(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x40u);
  b += 0x7FFFu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}

float bf16_to_f32(uint16_t h) {
  uint32_t b = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

}  // namespace needle_qc
