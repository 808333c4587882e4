// quantize.cc: portable quantize span (ONNX QuantizeLinear semantics) and dequantize spans.
//
// q = clamp(rint(x / s) + z, qmin, qmax): true fp32 division, ties to even, z added after
// rounding. As in the output stage, x / s is clamped to [qmin - z, qmax - z] before rounding.
#include <cmath>
#include <cstdint>

#include "quant/cpu/quant.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

// mn/mx = min/max of x[0..n) (0/0 when n == 0); false when some x is NaN or +-inf. SSE2 (every
// x86-64) takes 8 floats a step in two independent min/max chains: the order does not change the
// min and max of finite floats (only which zero sign an all-zero extreme shows, and the dynamic
// qparams widen the range to hold 0 anyway). 82k floats: ~270 -> ~15 us.
bool min_max_f32(const float* x, size_t n, float& mn, float& mx) {
  mn = INFINITY, mx = -INFINITY;
  bool finite = true;
  size_t i = 0;
#if defined(__SSE2__)
  __m128 lo0 = _mm_set1_ps(INFINITY), lo1 = lo0, hi0 = _mm_set1_ps(-INFINITY), hi1 = hi0;
  __m128 bad = _mm_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
    const __m128 da = _mm_sub_ps(a, a), db = _mm_sub_ps(b, b);  // NaN for NaN and +-inf
    bad = _mm_or_ps(bad, _mm_or_ps(_mm_cmpunord_ps(da, da), _mm_cmpunord_ps(db, db)));
    lo0 = _mm_min_ps(lo0, a), lo1 = _mm_min_ps(lo1, b);
    hi0 = _mm_max_ps(hi0, a), hi1 = _mm_max_ps(hi1, b);
  }
  alignas(16) float lo[4], hi[4];
  _mm_store_ps(lo, _mm_min_ps(lo0, lo1));
  _mm_store_ps(hi, _mm_max_ps(hi0, hi1));
  for (int l = 0; l < 4; ++l) {
    mn = lo[l] < mn ? lo[l] : mn;
    mx = hi[l] > mx ? hi[l] : mx;
  }
  finite = _mm_movemask_ps(bad) == 0;
#endif
  for (; i < n; ++i) {
    finite &= std::isfinite(x[i]);
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  if (n == 0) mn = mx = 0.0f;
  return finite;
}

}  // namespace needle_qc
