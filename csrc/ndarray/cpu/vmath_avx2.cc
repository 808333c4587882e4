// AVX2+FMA exp/log/tanh: range reduction plus minimax polynomials (Cephes coefficients), with
// IEEE special cases (NaN, +-inf, 0, negatives, subnormal inputs and results) handled by blends.
// Each function has a lean path for vectors whose 8 lanes are all ordinary (the common case) and
// a full path with every special case; on ordinary lanes the two give identical bits, so a
// result never depends on which neighbours share its vector.
#include "ndarray/cpu/vmath.h"

#include "common/cpu_features.h"
#include "ndarray/cpu/parallel.h"

#if defined(NEEDLE_X86_SIMD)
#include <immintrin.h>
#endif

namespace needle {
namespace cpu {

#if defined(NEEDLE_X86_SIMD)
namespace {

inline __m256 set1(float v) { return _mm256_set1_ps(v); }
inline __m256i set1i(int v) { return _mm256_set1_epi32(v); }
inline bool all_lanes(__m256 mask) { return _mm256_movemask_ps(mask) == 0xff; }

// 2^k for integer-valued k in [-126, 127] (a normal float built from its exponent bits).
inline __m256 pow2_normal(__m256 k) {
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(k), set1i(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}

// y * 2^n for integer-valued n in [-150, 128], as two factors so subnormal results are exact.
inline __m256 scale_pow2(__m256 y, __m256 n) {
  const __m256 half = _mm256_round_ps(_mm256_mul_ps(n, set1(0.5f)),
                                      _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  return _mm256_mul_ps(_mm256_mul_ps(y, pow2_normal(half)), pow2_normal(_mm256_sub_ps(n, half)));
}

// exp(x) = y * 2^n with n = round(x / ln2) and y = exp(r) in [0.7, 1.42], for finite x.
inline __m256 exp_reduced(__m256 x, __m256* n_out) {
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, set1(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2, with ln2 split so n * hi is exact
  __m256 r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  __m256 p = set1(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, set1(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, set1(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, set1(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, set1(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, set1(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  *n_out = n;
  return _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), set1(1.0f));
}

// Every case: clamps so the scaling saturates to 0 or inf, then restores +inf and NaN.
inline __m256 exp8_full(__m256 x) {
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, set1(-104.0f)), set1(89.0f));
  __m256 n;
  const __m256 y = exp_reduced(xc, &n);
  __m256 out = scale_pow2(y, n);
  out = _mm256_blendv_ps(out, set1(__builtin_inff()), _mm256_cmp_ps(x, set1(88.7228394f),
                                                                     _CMP_GT_OQ));
  return _mm256_blendv_ps(out, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));  // NaN stays NaN
}

inline __m256 exp8(__m256 x) {
  // On [-86, 87.5] n is in [-124, 126] and the result is normal: one exact scaling suffices
  // (and equals scale_pow2's two). NaN fails the ordered compares and takes the full path.
  const __m256 ordinary = _mm256_and_ps(_mm256_cmp_ps(x, set1(-86.0f), _CMP_GE_OQ),
                                        _mm256_cmp_ps(x, set1(87.5f), _CMP_LE_OQ));
  if (!all_lanes(ordinary)) return exp8_full(x);
  __m256 n;
  const __m256 y = exp_reduced(x, &n);
  return _mm256_mul_ps(y, pow2_normal(n));
}

// log(2^e * (1 + f)) for f = m - 1, m in [sqrt(1/2), sqrt(2)), e integer-valued.
inline __m256 log_reduced(__m256 e, __m256 m) {
  const __m256 f = _mm256_sub_ps(m, set1(1.0f));
  __m256 p = set1(7.0376836292e-2f);
  p = _mm256_fmadd_ps(p, f, set1(-1.1514610310e-1f));
  p = _mm256_fmadd_ps(p, f, set1(1.1676998740e-1f));
  p = _mm256_fmadd_ps(p, f, set1(-1.2420140846e-1f));
  p = _mm256_fmadd_ps(p, f, set1(1.4249322787e-1f));
  p = _mm256_fmadd_ps(p, f, set1(-1.6668057665e-1f));
  p = _mm256_fmadd_ps(p, f, set1(2.0000714765e-1f));
  p = _mm256_fmadd_ps(p, f, set1(-2.4999993993e-1f));
  p = _mm256_fmadd_ps(p, f, set1(3.3333331174e-1f));
  const __m256 f2 = _mm256_mul_ps(f, f);
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f2), f);
  y = _mm256_fmadd_ps(e, set1(-2.12194440e-4f), y);  // ln2 split as in exp_reduced
  y = _mm256_fnmadd_ps(set1(0.5f), f2, y);
  return _mm256_fmadd_ps(e, set1(0.693359375f), _mm256_add_ps(f, y));
}

// Every case: subnormals rescaled by 2^23, then 0 -> -inf, x < 0 -> NaN, +inf, NaN by blends.
inline __m256 log8_full(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, set1(1.17549435e-38f), _CMP_LT_OQ);
  const __m256 xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, set1(8388608.0f)), tiny);
  const __m256i bits = _mm256_castps_si256(xs);
  __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), set1i(126)));
  e = _mm256_sub_ps(e, _mm256_and_ps(tiny, set1(23.0f)));
  // mantissa in [0.5, 1), then doubled below sqrt(1/2)
  __m256 m = _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_and_si256(bits, set1i(0x007fffff)), set1i(0x3f000000)));
  const __m256 small = _mm256_cmp_ps(m, set1(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(small, set1(1.0f)));
  m = _mm256_add_ps(m, _mm256_and_ps(small, m));
  __m256 out = log_reduced(e, m);
  const __m256 inf = set1(__builtin_inff());
  out = _mm256_blendv_ps(out, inf, _mm256_cmp_ps(x, inf, _CMP_EQ_OQ));
  out = _mm256_blendv_ps(out, _mm256_sub_ps(set1(0.0f), inf),
                         _mm256_cmp_ps(x, set1(0.0f), _CMP_EQ_OQ));
  const __m256 bad = _mm256_or_ps(_mm256_cmp_ps(x, set1(0.0f), _CMP_LT_OQ),
                                  _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  return _mm256_blendv_ps(out, set1(__builtin_nanf("")), bad);
}

inline __m256 log8(__m256 x) {
  // Positive normal finite floats are exactly the bit patterns in (0x007fffff, 0x7f800000)
  // read as signed integers (negative floats read as negative integers).
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i normal = _mm256_and_si256(_mm256_cmpgt_epi32(bits, set1i(0x007fffff)),
                                          _mm256_cmpgt_epi32(set1i(0x7f800000), bits));
  if (!all_lanes(_mm256_castsi256_ps(normal))) return log8_full(x);
  // Subtracting the bits of sqrt(1/2) (0x3f3504f3) carries into the exponent exactly when the
  // mantissa is >= sqrt(2)'s, giving log8_full's e and m without compares or blends.
  const __m256i t = _mm256_sub_epi32(bits, set1i(0x3f3504f3));
  const __m256i k = _mm256_srai_epi32(t, 23);
  const __m256 m = _mm256_castsi256_ps(_mm256_sub_epi32(bits, _mm256_slli_epi32(k, 23)));
  return log_reduced(_mm256_cvtepi32_ps(k), m);
}

inline __m256 tanh8(__m256 x) {
  // Works on |x| and ORs the sign back at the end: tanh is odd, so the bits match computing on
  // x, and -0 stays -0 (x + x^3 p would round -0 + +0 to +0). NaN lanes are neither small nor
  // big, so they keep |x| and get their own bits back.
  const __m256 sign = _mm256_and_ps(x, set1(-0.0f));
  const __m256 ax = _mm256_andnot_ps(set1(-0.0f), x);
  // |x| < 0.625: odd polynomial (no cancellation); else 1 - 2 / (exp(2|x|) + 1).
  const __m256 is_small = _mm256_cmp_ps(ax, set1(0.625f), _CMP_LT_OQ);
  const __m256 is_big = _mm256_cmp_ps(ax, set1(0.625f), _CMP_GE_OQ);
  // Both branches for every vector: skipping one when no lane needs it costs more in branch
  // misses on mixed data than it saves (measured).
  __m256 mag = ax;
  {
    const __m256 z = _mm256_mul_ps(ax, ax);
    __m256 p = set1(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, set1(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, set1(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, set1(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, set1(-3.33332819422e-1f));
    mag = _mm256_blendv_ps(mag, _mm256_fmadd_ps(_mm256_mul_ps(p, z), ax, ax), is_small);
  }
  {
    // |x| > 9.5 gives 1.0f anyway; with the clamp 2|x| is in [1.25, 19], so n is in [2, 28]
    // and exp needs neither its overflow nor its subnormal handling.
    const __m256 a = _mm256_min_ps(ax, set1(9.5f));
    __m256 n;
    const __m256 y = exp_reduced(_mm256_add_ps(a, a), &n);
    const __m256 e = _mm256_mul_ps(y, pow2_normal(n));
    const __m256 big = _mm256_sub_ps(set1(1.0f),
                                     _mm256_div_ps(set1(2.0f), _mm256_add_ps(e, set1(1.0f))));
    mag = _mm256_blendv_ps(mag, big, is_big);
  }
  return _mm256_or_ps(mag, sign);
}

// Full vectors straight from memory; the tail through a padded buffer so every element gets
// the same arithmetic wherever it sits.
template <typename F>
void apply(F f, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(32) float buf[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int64_t j = i; j < n; ++j) buf[j - i] = x[j];
    _mm256_store_ps(buf, f(_mm256_load_ps(buf)));
    for (int64_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}

}  // namespace

float max_avx2(const float* a, int64_t n) {
  // _mm256_max_ps(r, x) is r > x ? r : x, as the scalar loop; NaNs are tracked separately.
  const __m256 lowest = set1(-__builtin_inff());
  __m256 r0 = lowest, r1 = lowest, r2 = lowest, r3 = lowest;
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 x0 = _mm256_loadu_ps(a + i), x1 = _mm256_loadu_ps(a + i + 8);
    const __m256 x2 = _mm256_loadu_ps(a + i + 16), x3 = _mm256_loadu_ps(a + i + 24);
    r0 = _mm256_max_ps(r0, x0);
    r1 = _mm256_max_ps(r1, x1);
    r2 = _mm256_max_ps(r2, x2);
    r3 = _mm256_max_ps(r3, x3);
    const __m256 u01 = _mm256_cmp_ps(x0, x1, _CMP_UNORD_Q);
    const __m256 u23 = _mm256_cmp_ps(x2, x3, _CMP_UNORD_Q);
    nan = _mm256_or_ps(nan, _mm256_or_ps(u01, u23));
  }
  alignas(32) float lanes[32];
  _mm256_store_ps(lanes, r0);
  _mm256_store_ps(lanes + 8, r1);
  _mm256_store_ps(lanes + 16, r2);
  _mm256_store_ps(lanes + 24, r3);
  bool any_nan = _mm256_movemask_ps(nan) != 0;
  float m = -__builtin_inff();
  for (int j = 0; j < 32; ++j) m = m > lanes[j] ? m : lanes[j];
  for (; i < n; ++i) {
    any_nan |= a[i] != a[i];
    m = m > a[i] ? m : a[i];
  }
  return any_nan ? __builtin_nanf("") : m;
}

bool vmath_avx2_supported() {
  static const bool ok =
      !simd_disabled() && common::cpu_features().avx2 && common::cpu_features().fma;
  return ok;
}
void exp_avx2(const float* x, float* y, int64_t n) { apply(exp8, x, y, n); }
void log_avx2(const float* x, float* y, int64_t n) { apply(log8, x, y, n); }
void tanh_avx2(const float* x, float* y, int64_t n) { apply(tanh8, x, y, n); }
#else
bool vmath_avx2_supported() { return false; }
float max_avx2(const float*, int64_t) { return 0.0f; }
void exp_avx2(const float*, float*, int64_t) {}
void log_avx2(const float*, float*, int64_t) {}
void tanh_avx2(const float*, float*, int64_t) {}
#endif

}  // namespace cpu
}  // namespace needle
