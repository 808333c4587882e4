// weight_only_avx2.cc: AVX2 + FMA weight-only panel kernels; F16C vcvtph2ps for fp16, a 16-bit
// shift for bf16, nibble unpack * group scale for int4, all in registers.
#include <immintrin.h>

#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

struct Decoded {
  __m256 lo, hi;  // columns 0..7 and 8..15 of one k-row
};

inline Decoded decode_f16(const uint16_t* h) {
  return {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)h)),
          _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(h + 8)))};
}

inline __m256 bf16x8(const uint16_t* h) {
  __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)h));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

inline Decoded decode_bf16(const uint16_t* h) { return {bf16x8(h), bf16x8(h + 8)}; }

inline Decoded decode_int4(const uint8_t* b, const float* s) {
  const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  __m128i bytes = _mm_loadl_epi64((const __m128i*)b);
  __m128i lo = _mm_and_si128(bytes, mask), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  __m128i q = _mm_unpacklo_epi8(lo, hi);                 // column order 0..15, values 0..15
  q = _mm_sub_epi8(_mm_xor_si128(q, eight), eight);      // sign-extend 4 -> 8 bits
  __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
  return {_mm256_mul_ps(f0, _mm256_loadu_ps(s)), _mm256_mul_ps(f1, _mm256_loadu_ps(s + 8))};
}

// k-row k of one panel, decoded to 16 floats (the one decode of the panel and blocked paths).
template <WeightFormat F>
inline Decoded decode_k(const PackedWeightLowBit& w, size_t panel, size_t k) {
  if constexpr (F == WeightFormat::int4) {
    return decode_int4(w.nibbles.data() + (panel * w.K + k) * (kPanelWidth / 2),
                       w.scales.data() + (panel * w.groups + k / w.group_size) * kPanelWidth);
  } else if constexpr (F == WeightFormat::f16) {
    return decode_f16(w.half.data() + (panel * w.K + k) * kPanelWidth);
  } else {
    return decode_bf16(w.half.data() + (panel * w.K + k) * kPanelWidth);
  }
}

template <size_t MR, WeightFormat F>
void panel_tile(const float* x, size_t ldx, const PackedWeightLowBit& w, size_t panel, float* y) {
  // Separate, fully unrolled accumulator arrays stay in registers (GCC spilled a nested array).
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 8
  for (size_t r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (size_t k = 0; k < w.K; ++k) {
    const Decoded d = decode_k<F>(w, panel, k);
#pragma GCC unroll 8
    for (size_t r = 0; r < MR; ++r) {
      __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);
      acc0[r] = _mm256_fmadd_ps(xb, d.lo, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(xb, d.hi, acc1[r]);
    }
  }
  for (size_t r = 0; r < MR; ++r) {
    _mm256_storeu_ps(y + r * kPanelWidth, acc0[r]);
    _mm256_storeu_ps(y + r * kPanelWidth + 8, acc1[r]);
  }
}

template <WeightFormat F>
void panel_any_mr(size_t mr, const float* x, size_t ldx, const PackedWeightLowBit& w,
                  size_t panel, float* y) {
  if (mr == 4) return panel_tile<4, F>(x, ldx, w, panel, y);
  for (size_t r = 0; r < mr; ++r) panel_tile<1, F>(x + r * ldx, ldx, w, panel, y + r * kPanelWidth);
}

template <WeightFormat F>
void decode_block(const PackedWeightLowBit& w, size_t panel, size_t k0, size_t kc, float* tile) {
  for (size_t k = k0; k < k0 + kc; ++k, tile += kPanelWidth) {
    const Decoded d = decode_k<F>(w, panel, k);
    _mm256_store_ps(tile, d.lo);
    _mm256_store_ps(tile + 8, d.hi);
  }
}

}  // namespace

void lowbit_decode_block_avx2(const PackedWeightLowBit& w, size_t panel, size_t k0, size_t kc,
                              float* tile) {
  switch (w.format) {
    case WeightFormat::f16: return decode_block<WeightFormat::f16>(w, panel, k0, kc, tile);
    case WeightFormat::bf16: return decode_block<WeightFormat::bf16>(w, panel, k0, kc, tile);
    default: return decode_block<WeightFormat::int4>(w, panel, k0, kc, tile);
  }
}

void lowbit_panel_avx2(size_t mr, const float* x, size_t ldx, const PackedWeightLowBit& w,
                       size_t panel, float* y) {
  switch (w.format) {
    case WeightFormat::f16: return panel_any_mr<WeightFormat::f16>(mr, x, ldx, w, panel, y);
    case WeightFormat::bf16: return panel_any_mr<WeightFormat::bf16>(mr, x, ldx, w, panel, y);
    default: return panel_any_mr<WeightFormat::int4>(mr, x, ldx, w, panel, y);
  }
}

}  // namespace needle_qc
