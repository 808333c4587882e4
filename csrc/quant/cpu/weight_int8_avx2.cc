// weight_int8_avx2.cc: AVX2 + FMA int8 / uint8 weight-only panel kernel: 16 bytes of a k-row are
// widened to i32, the zero point subtracted, converted to fp32 and scaled, all in registers.
#include <immintrin.h>

#include "quant/cpu/weight_int8.h"

namespace needle_qc {

namespace {

struct Row16 {
  __m256 lo, hi;  // columns 0..7 and 8..15 of one decoded k-row
};

template <bool Unsigned, bool HasZp>
inline Row16 decode(const uint8_t* b, const float* s, const int32_t* z) {
  const __m128i bytes = _mm_loadu_si128((const __m128i*)b);
  const __m128i upper = _mm_srli_si128(bytes, 8);
  __m256i lo = Unsigned ? _mm256_cvtepu8_epi32(bytes) : _mm256_cvtepi8_epi32(bytes);
  __m256i hi = Unsigned ? _mm256_cvtepu8_epi32(upper) : _mm256_cvtepi8_epi32(upper);
  if constexpr (HasZp) {
    lo = _mm256_sub_epi32(lo, _mm256_loadu_si256((const __m256i*)z));
    hi = _mm256_sub_epi32(hi, _mm256_loadu_si256((const __m256i*)(z + 8)));
  }
  return {_mm256_mul_ps(_mm256_cvtepi32_ps(lo), _mm256_loadu_ps(s)),
          _mm256_mul_ps(_mm256_cvtepi32_ps(hi), _mm256_loadu_ps(s + 8))};
}

template <size_t MR, bool Unsigned, bool HasZp>
void panel_tile(const float* x, size_t ldx, const PackedWeightInt8& w, size_t panel, float* y) {
  // Separate, fully unrolled accumulator arrays stay in registers (GCC spilled a nested array).
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 8
  for (size_t r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  const uint8_t* b = w.data.data() + panel * w.K * kPanelWidth;
  const size_t meta = panel * w.groups * kPanelWidth;
  for (size_t k = 0; k < w.K; ++k) {
    const size_t at = meta + (w.group_size == 0 ? 0 : k / w.group_size) * kPanelWidth;
    const Row16 d = decode<Unsigned, HasZp>(b + k * kPanelWidth, w.scales.data() + at,
                                            HasZp ? w.zero_point.data() + at : nullptr);
#pragma GCC unroll 8
    for (size_t r = 0; r < MR; ++r) {
      const __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);
      acc0[r] = _mm256_fmadd_ps(xb, d.lo, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(xb, d.hi, acc1[r]);
    }
  }
  for (size_t r = 0; r < MR; ++r) {
    _mm256_storeu_ps(y + r * kPanelWidth, acc0[r]);
    _mm256_storeu_ps(y + r * kPanelWidth + 8, acc1[r]);
  }
}

template <bool Unsigned, bool HasZp>
void panel_any_mr(size_t mr, const float* x, size_t ldx, const PackedWeightInt8& w, size_t panel,
                  float* y) {
  switch (mr) {
    case 6: return panel_tile<6, Unsigned, HasZp>(x, ldx, w, panel, y);
    case 5: return panel_tile<5, Unsigned, HasZp>(x, ldx, w, panel, y);
    case 4: return panel_tile<4, Unsigned, HasZp>(x, ldx, w, panel, y);
    case 3: return panel_tile<3, Unsigned, HasZp>(x, ldx, w, panel, y);
    case 2: return panel_tile<2, Unsigned, HasZp>(x, ldx, w, panel, y);
    default: return panel_tile<1, Unsigned, HasZp>(x, ldx, w, panel, y);
  }
}

template <bool Unsigned, bool HasZp>
void decode_block(const PackedWeightInt8& w, size_t panel, size_t k0, size_t kc, float* tile) {
  const uint8_t* b = w.data.data() + panel * w.K * kPanelWidth;
  const size_t meta = panel * w.groups * kPanelWidth;
  for (size_t k = k0; k < k0 + kc; ++k, tile += kPanelWidth) {
    const size_t at = meta + (w.group_size == 0 ? 0 : k / w.group_size) * kPanelWidth;
    const Row16 d = decode<Unsigned, HasZp>(b + k * kPanelWidth, w.scales.data() + at,
                                            HasZp ? w.zero_point.data() + at : nullptr);
    _mm256_store_ps(tile, d.lo);
    _mm256_store_ps(tile + 8, d.hi);
  }
}

}  // namespace

void wint8_decode_block_avx2(const PackedWeightInt8& w, size_t panel, size_t k0, size_t kc,
                             float* tile) {
  if (w.is_unsigned) {
    if (w.has_zero_point()) return decode_block<true, true>(w, panel, k0, kc, tile);
    return decode_block<true, false>(w, panel, k0, kc, tile);
  }
  if (w.has_zero_point()) return decode_block<false, true>(w, panel, k0, kc, tile);
  return decode_block<false, false>(w, panel, k0, kc, tile);
}

void wint8_panel_avx2(size_t mr, const float* x, size_t ldx, const PackedWeightInt8& w,
                      size_t panel, float* y) {
  if (w.is_unsigned) {
    if (w.has_zero_point()) return panel_any_mr<true, true>(mr, x, ldx, w, panel, y);
    return panel_any_mr<true, false>(mr, x, ldx, w, panel, y);
  }
  if (w.has_zero_point()) return panel_any_mr<false, true>(mr, x, ldx, w, panel, y);
  return panel_any_mr<false, false>(mr, x, ldx, w, panel, y);
}

}  // namespace needle_qc
