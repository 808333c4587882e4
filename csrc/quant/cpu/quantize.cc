// quantize.cc: portable quantize span (ONNX QuantizeLinear semantics).
//
// q = clamp(rint(x / s) + z, qmin, qmax): true fp32 division, ties to even, z added after
// rounding. As in the output stage, x / s is clamped to [qmin - z, qmax - z] before rounding.
#include <cmath>

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

}  // namespace needle_qc
