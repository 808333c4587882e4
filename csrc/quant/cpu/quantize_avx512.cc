// quantize_avx512.cc: AVX-512 quantize span (per tensor or per element scale), 16 floats per
// instruction; the same formula and bits as quantize.cc (true division, ties to even).
#include <immintrin.h>

#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

// 16 lanes: clamp(x / s, lo, hi) -> rint (vcvtps2dq, ties to even) -> + z; NaN lanes into `nan`.
inline __m512i quantize16(__m512 x, __m512 s, __m512i z, __m512 lo, __m512 hi, __mmask16& nan) {
  const __m512 t = _mm512_div_ps(x, s);  // exactly rounded, like the scalar division
  nan |= _mm512_cmp_ps_mask(t, t, _CMP_UNORD_Q);
  return _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(t, lo), hi)), z);
}

// Values are already in [qmin, qmax], so the saturating narrowing only narrows. (Narrowed in a
// register, then stored: the memory form of vpmov*db is microcoded and slow on AMD Zen 4.)
inline void store16(__m512i v, bool out_s8, uint8_t* dst) {
  const __m128i bytes = out_s8 ? _mm512_cvtsepi32_epi8(v) : _mm512_cvtusepi32_epi8(v);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), bytes);
}

}  // namespace

bool quantize_span_avx512(const float* x, size_t n, const float* s, const int32_t* z,
                          size_t s_step, int qmin, int qmax, bool out_s8, void* q) {
  uint8_t* out = static_cast<uint8_t*>(q);
  __mmask16 nan = 0;
  size_t i = 0;
  if (s_step == 0) {
    const __m512 s_b = _mm512_set1_ps(s[0]);
    const __m512i z_b = _mm512_set1_epi32(z[0]);
    const __m512 lo = _mm512_set1_ps(float(qmin - z[0])), hi = _mm512_set1_ps(float(qmax - z[0]));
    for (; i + 16 <= n; i += 16)
      store16(quantize16(_mm512_loadu_ps(x + i), s_b, z_b, lo, hi, nan), out_s8, out + i);
  } else {
    const __m512i qmin_v = _mm512_set1_epi32(qmin), qmax_v = _mm512_set1_epi32(qmax);
    for (; i + 16 <= n; i += 16) {
      const __m512i zv = _mm512_loadu_si512(z + i);
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(qmin_v, zv));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(qmax_v, zv));
      const __m512i v = quantize16(_mm512_loadu_ps(x + i), _mm512_loadu_ps(s + i), zv, lo, hi, nan);
      store16(v, out_s8, out + i);
    }
  }
  const size_t c = i * s_step;
  const bool tail_ok =
      quantize_span_scalar(x + i, n - i, s + c, z + c, s_step, qmin, qmax, out_s8, out + i);
  return tail_ok && nan == 0;
}

}  // namespace needle_qc
