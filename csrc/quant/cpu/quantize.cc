// quantize.cc: portable quantize span (ONNX QuantizeLinear semantics) and dequantize spans.
//
// q = clamp(rint(x / s) + z, qmin, qmax): true fp32 division, ties to even, z added after
// rounding. As in the output stage, x / s is clamped to [qmin - z, qmax - z] before rounding.
#include <cmath>
#include <cstdint>

#include "quant/cpu/quant.h"

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

// y[i] = (q[i] - z) * s. 8-bit q: |q - z| <= 510 is exact in int32 and in float, so the int32
// form (which vectorizes; int64 -> float does not) gives the bits of the int64 one.
void dequantize_span(const uint8_t* q, size_t n, float s, int32_t z, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = float(int32_t(q[i]) - z) * s;
}
void dequantize_span(const int8_t* q, size_t n, float s, int32_t z, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = float(int32_t(q[i]) - z) * s;
}
// int32 q: q - z is formed in int64 (exact), then one rounding to float.
void dequantize_span(const int32_t* q, size_t n, float s, int32_t z, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = float(int64_t(q[i]) - z) * s;
}

// mn/mx = min/max of x[0..n) (0/0 when n == 0); false when some x is NaN or +-inf.
bool min_max_f32(const float* x, size_t n, float& mn, float& mx) {
  mn = INFINITY;
  mx = -INFINITY;
  bool finite = true;
  for (size_t i = 0; i < n; ++i) {
    finite &= std::isfinite(x[i]);
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  if (n == 0) mn = mx = 0.0f;
  return finite;
}

}  // namespace needle_qc
