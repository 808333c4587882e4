// output_stage_avx2.cc: AVX2 twin of output_stage.cc for full 16-column tiles; same formulas,
// same single roundings (cvtdq2ps, mulps, addps, cvtps2dq ties-to-even), so bit-identical.
#include <immintrin.h>

#include <cstring>

#include "quant/cpu/output_panel.h"

#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

// Σ(a-za)(w-zw) + bias = c + bias - za·colsum + zw·(K·za - rowsum), modulo 2^32.
inline __m256i correct8(const int32_t* c, const PackedWeightS8& w, size_t n, __m256i za,
                        __m256i t, const int32_t* bias) {
  __m256i v = _mm256_loadu_si256((const __m256i*)c);
  __m256i colsum = _mm256_loadu_si256((const __m256i*)(w.colsum.data() + n));
  v = _mm256_sub_epi32(v, _mm256_mullo_epi32(za, colsum));
  if (!w.zero_point_is_zero) {
    __m256i zw = _mm256_loadu_si256((const __m256i*)(w.zero_point.data() + n));
    v = _mm256_add_epi32(v, _mm256_mullo_epi32(t, zw));
  }
  if (bias) v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i*)(bias + n)));
  return v;
}

inline __m256i requant8(__m256i acc, const OutputParams& p, size_t n) {
  __m256 m = p.multiplier_per_col ? _mm256_loadu_ps(p.multiplier + n)
                                  : _mm256_set1_ps(p.multiplier[0]);
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), m);
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(float(p.qmin - p.y_zp))),
                    _mm256_set1_ps(float(p.qmax - p.y_zp)));
  return _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(p.y_zp));
}

inline void store_bytes16(__m256i lo, __m256i hi, bool s8, void* dst) {
  __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);  // 16 x i16, in order
  __m128i a = _mm256_castsi256_si128(w16), b = _mm256_extracti128_si256(w16, 1);
  __m128i bytes = s8 ? _mm_packs_epi16(a, b) : _mm_packus_epi16(a, b);
  _mm_storeu_si128((__m128i*)dst, bytes);
}

inline __m256 float8(__m256i acc, const OutputParams& p, size_t m, size_t n) {
  __m256 s = p.scale_per_col ? _mm256_loadu_ps(p.scale + n) : _mm256_set1_ps(p.scale[0]);
  if (p.row_scale) s = _mm256_mul_ps(_mm256_set1_ps(p.row_scale[m]), s);
  __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), s);
  if (p.bias_f32) y = _mm256_add_ps(y, _mm256_loadu_ps(p.bias_f32 + n));
  if (p.relu) y = _mm256_max_ps(y, _mm256_setzero_ps());
  return y;
}

}  // namespace

void output_tile16_avx2(OutputKind kind, const int32_t* c, size_t mr, size_t m0, size_t n0,
                        const PackedWeightS8& w, const PackedA& a, const OutputParams& p,
                        void* out, size_t N) {
  const uint32_t K = static_cast<uint32_t>(w.K);
  for (size_t r = 0; r < mr; ++r) {
    const size_t m = m0 + r;
    const uint32_t za = static_cast<uint32_t>(p.a_zp[p.a_zp_per_row ? m : 0]);
    const uint32_t rs = a.rowsum.empty() ? 0u : static_cast<uint32_t>(a.rowsum[m]);
    const __m256i za_v = _mm256_set1_epi32(int32_t(za));
    const __m256i t_v = _mm256_set1_epi32(int32_t(K * za - rs));
    __m256i acc[2];
    for (size_t h = 0; h < 2; ++h)
      acc[h] = correct8(c + r * kPanelWidth + 8 * h, w, n0 + 8 * h, za_v, t_v, p.bias_i32);
    if (kind == OutputKind::s32) {
      int32_t* o = static_cast<int32_t*>(out) + m * N + n0;
      _mm256_storeu_si256((__m256i*)o, acc[0]);
      _mm256_storeu_si256((__m256i*)(o + 8), acc[1]);
    } else if (kind == OutputKind::requant) {
      store_bytes16(requant8(acc[0], p, n0), requant8(acc[1], p, n0 + 8), p.out_s8,
                    static_cast<uint8_t*>(out) + m * N + n0);
    } else {
      float* o = static_cast<float*>(out) + m * N + n0;
      _mm256_storeu_ps(o, float8(acc[0], p, m, n0));
      _mm256_storeu_ps(o + 8, float8(acc[1], p, m, n0 + 8));
    }
  }
}

namespace {

// The exact int32 sums of one row (8 columns per half), from the raw tile row c.
struct RowSums {
  __m256i v[2];
};

inline RowSums row_sums(const int32_t* c, const PanelTerms& t, bool za_per_row, bool has_zw,
                        int32_t za, int32_t k_za_minus_rs) {
  RowSums s;
  for (size_t h = 0; h < 2; ++h) {
    __m256i v = _mm256_add_epi32(_mm256_loadu_si256((const __m256i*)(c + 8 * h)),
                                 _mm256_loadu_si256((const __m256i*)(t.col + 8 * h)));
    if (za_per_row)
      v = _mm256_sub_epi32(v, _mm256_mullo_epi32(
                                  _mm256_set1_epi32(za),
                                  _mm256_loadu_si256((const __m256i*)(t.colsum + 8 * h))));
    if (has_zw)
      v = _mm256_add_epi32(v, _mm256_mullo_epi32(
                                  _mm256_set1_epi32(k_za_minus_rs),
                                  _mm256_loadu_si256((const __m256i*)(t.zw + 8 * h))));
    s.v[h] = v;
  }
  return s;
}

// 16 requantized bytes: rint(clamp(float(v) * M, lo, hi)) + y_zp; the zero point is added
// in int16 after the pack (|value| <= 255 and the sum lies in [qmin, qmax]: nothing saturates).
inline __m128i requant16(const RowSums& s, const PanelTerms& t, __m256 lo, __m256 hi,
                         __m256i y_zp16, bool out_s8) {
  __m256i q[2];
  for (size_t h = 0; h < 2; ++h) {
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(s.v[h]), _mm256_loadu_ps(t.scale + 8 * h));
    q[h] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
  }
  __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8);
  w16 = _mm256_add_epi16(w16, y_zp16);
  __m128i a = _mm256_castsi256_si128(w16), b = _mm256_extracti128_si256(w16, 1);
  return out_s8 ? _mm_packs_epi16(a, b) : _mm_packus_epi16(a, b);
}

}  // namespace

void panel_terms_avx2(const PackedWeightS8& w, const OutputParams& p, size_t panel,
                      PanelTerms& t) {
  const size_t n0 = panel * kPanelWidth;
  if (w.N - n0 < kPanelWidth) return panel_terms(w, p, panel, t);
  t.n0 = n0;
  t.nc = kPanelWidth;
  PanelTerms::Own& o = t.own;
  const int32_t za = p.a_zp_per_row ? 0 : p.a_zp[0];
  const int32_t* bias = p.bias_i32 ? p.bias_i32 + n0 : nullptr;
  if (za != 0 || bias == nullptr) {  // bias - za * colsum, modulo 2^32
    const int32_t* colsum = w.colsum.data() + n0;
    for (size_t h = 0; h < 2; ++h) {
      __m256i v = _mm256_mullo_epi32(_mm256_set1_epi32(za),
                                     _mm256_loadu_si256((const __m256i*)(colsum + 8 * h)));
      __m256i b = bias ? _mm256_loadu_si256((const __m256i*)(bias + 8 * h))
                       : _mm256_setzero_si256();
      _mm256_store_si256((__m256i*)(o.col + 8 * h), _mm256_sub_epi32(b, v));
    }
    t.col = o.col;
  } else {
    t.col = bias;
  }
  t.colsum = w.colsum.data() + n0;
  t.zw = w.zero_point.data() + n0;
  const float* s = p.multiplier ? p.multiplier : p.scale;
  const bool s_per_col = p.multiplier ? p.multiplier_per_col : p.scale_per_col;
  if (s != nullptr && !s_per_col) {
    const __m256 v = _mm256_set1_ps(s[0]);
    _mm256_store_ps(o.scale, v);
    _mm256_store_ps(o.scale + 8, v);
  }
  t.scale = s == nullptr ? o.scale : s_per_col ? s + n0 : o.scale;
  t.bias_f = p.bias_f32 ? p.bias_f32 + n0 : o.bias_f;
}

namespace {

// The rows of one panel into dst (row r at dst + r * ld bytes, column n0 first).
template <OutputKind kKind>
void panel_rows(const int32_t* c, size_t mr, size_t m0, const PanelTerms& t,
                const PackedWeightS8& w, const PackedA& a, const OutputParams& p, uint8_t* dst,
                size_t ld) {
  const uint32_t K = static_cast<uint32_t>(w.K);
  const bool per_row = p.a_zp_per_row, has_zw = !w.zero_point_is_zero;
  const __m256 lo = _mm256_set1_ps(float(p.qmin - p.y_zp));
  const __m256 hi = _mm256_set1_ps(float(p.qmax - p.y_zp));
  const __m256i y_zp16 = _mm256_set1_epi16(static_cast<int16_t>(p.y_zp));
  for (size_t r = 0; r < mr; ++r, dst += ld) {
    const size_t m = m0 + r;
    const uint32_t za = static_cast<uint32_t>(p.a_zp[per_row ? m : 0]);
    const uint32_t rs = a.rowsum.empty() ? 0u : static_cast<uint32_t>(a.rowsum[m]);
    const RowSums s = row_sums(c + r * kPanelWidth, t, per_row, has_zw, int32_t(za),
                               int32_t(K * za - rs));
    if (kKind == OutputKind::s32) {
      _mm256_storeu_si256((__m256i*)dst, s.v[0]);
      _mm256_storeu_si256((__m256i*)(dst + 32), s.v[1]);
    } else if (kKind == OutputKind::requant) {
      _mm_storeu_si128((__m128i*)dst, requant16(s, t, lo, hi, y_zp16, p.out_s8));
    } else {
      for (size_t h = 0; h < 2; ++h) {
        __m256 sc = _mm256_loadu_ps(t.scale + 8 * h);
        if (p.row_scale) sc = _mm256_mul_ps(_mm256_set1_ps(p.row_scale[m]), sc);
        __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(s.v[h]), sc);
        if (p.bias_f32) y = _mm256_add_ps(y, _mm256_loadu_ps(t.bias_f + 8 * h));
        if (p.relu) y = _mm256_max_ps(y, _mm256_setzero_ps());
        _mm256_storeu_ps((float*)(dst + 32 * h), y);
      }
    }
  }
}

// The common case (a per-tensor za folded into t.col, weights without a zero point): the sums
// are c + col, so the column terms and the scales are loaded once for all rows, and nothing per
// row is read but the tile. Same formulas as panel_rows, so the same bits.
template <OutputKind kKind, bool kS8>
void panel_rows_plain(const int32_t* c, size_t mr, size_t m0, const PanelTerms& t,
                      const OutputParams& p, uint8_t* dst, size_t ld) {
  const __m256i col0 = _mm256_loadu_si256((const __m256i*)t.col);
  const __m256i col1 = _mm256_loadu_si256((const __m256i*)(t.col + 8));
  const __m256 sc0 = _mm256_loadu_ps(t.scale), sc1 = _mm256_loadu_ps(t.scale + 8);
  if (kKind == OutputKind::requant) {
    const __m256 lo = _mm256_set1_ps(float(p.qmin - p.y_zp));
    const __m256 hi = _mm256_set1_ps(float(p.qmax - p.y_zp));
    const __m256i y_zp16 = _mm256_set1_epi16(static_cast<int16_t>(p.y_zp));
    for (size_t r = 0; r < mr; ++r, dst += ld, c += kPanelWidth) {
      const __m256i v0 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i*)c), col0);
      const __m256i v1 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i*)(c + 8)), col1);
      const __m256i q0 = _mm256_cvtps_epi32(_mm256_min_ps(
          _mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v0), sc0), lo), hi));
      const __m256i q1 = _mm256_cvtps_epi32(_mm256_min_ps(
          _mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v1), sc1), lo), hi));
      __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
      w16 = _mm256_add_epi16(w16, y_zp16);
      const __m128i a = _mm256_castsi256_si128(w16), b = _mm256_extracti128_si256(w16, 1);
      _mm_storeu_si128((__m128i*)dst, kS8 ? _mm_packs_epi16(a, b) : _mm_packus_epi16(a, b));
    }
    return;
  }
  const __m256 bf0 = p.bias_f32 ? _mm256_loadu_ps(t.bias_f) : _mm256_setzero_ps();
  const __m256 bf1 = p.bias_f32 ? _mm256_loadu_ps(t.bias_f + 8) : _mm256_setzero_ps();
  for (size_t r = 0; r < mr; ++r, dst += ld, c += kPanelWidth) {
    const __m256i v0 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i*)c), col0);
    const __m256i v1 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i*)(c + 8)), col1);
    __m256 s0 = sc0, s1 = sc1;
    if (p.row_scale) {
      const __m256 rs = _mm256_set1_ps(p.row_scale[m0 + r]);
      s0 = _mm256_mul_ps(rs, sc0), s1 = _mm256_mul_ps(rs, sc1);
    }
    __m256 y0 = _mm256_mul_ps(_mm256_cvtepi32_ps(v0), s0);
    __m256 y1 = _mm256_mul_ps(_mm256_cvtepi32_ps(v1), s1);
    if (p.bias_f32) y0 = _mm256_add_ps(y0, bf0), y1 = _mm256_add_ps(y1, bf1);
    if (p.relu)
      y0 = _mm256_max_ps(y0, _mm256_setzero_ps()), y1 = _mm256_max_ps(y1, _mm256_setzero_ps());
    _mm256_storeu_ps((float*)dst, y0);
    _mm256_storeu_ps((float*)(dst + 32), y1);
  }
}

template <OutputKind kKind>
void panel_any_rows(const int32_t* c, size_t mr, size_t m0, const PanelTerms& t,
                    const PackedWeightS8& w, const PackedA& a, const OutputParams& p,
                    uint8_t* dst, size_t ld) {
  if (kKind != OutputKind::s32 && !p.a_zp_per_row && w.zero_point_is_zero)
    return p.out_s8 ? panel_rows_plain<kKind, true>(c, mr, m0, t, p, dst, ld)
                    : panel_rows_plain<kKind, false>(c, mr, m0, t, p, dst, ld);
  panel_rows<kKind>(c, mr, m0, t, w, a, p, dst, ld);
}

template <OutputKind kKind>
void panel_out(const int32_t* c, size_t mr, size_t m0, const PanelTerms& t,
               const PackedWeightS8& w, const PackedA& a, const OutputParams& p, void* out,
               size_t N) {
  constexpr size_t elem = kKind == OutputKind::requant ? 1 : 4;
  uint8_t* dst = static_cast<uint8_t*>(out) + (m0 * N + t.n0) * elem;
  if (t.nc == kPanelWidth) return panel_any_rows<kKind>(c, mr, m0, t, w, a, p, dst, N * elem);
  // A partial panel: whole rows into a scratch tile, then its nc real columns.
  alignas(32) uint8_t part[kMaxMR * kPanelWidth * elem];
  panel_any_rows<kKind>(c, mr, m0, t, w, a, p, part, kPanelWidth * elem);
  for (size_t r = 0; r < mr; ++r)
    std::memcpy(dst + r * N * elem, part + r * kPanelWidth * elem, t.nc * elem);
}

}  // namespace

void output_rows_avx2(OutputKind kind, const int32_t* c, size_t mr, size_t m0,
                      const PanelTerms& t, const PackedWeightS8& w, const PackedA& a,
                      const OutputParams& p, void* out, size_t N) {
  if (kind == OutputKind::s32) return panel_out<OutputKind::s32>(c, mr, m0, t, w, a, p, out, N);
  if (kind == OutputKind::requant)
    return panel_out<OutputKind::requant>(c, mr, m0, t, w, a, p, out, N);
  panel_out<OutputKind::f32>(c, mr, m0, t, w, a, p, out, N);
}

}  // namespace needle_qc
