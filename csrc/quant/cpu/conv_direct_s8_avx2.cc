// conv_direct_s8_avx2.cc: the AVX2 register tiles of the direct int8 conv: MR pixels x one
// 16-column panel, the input read in place as 4-byte quads of each kernel-row run.
//
// fast:  vpmaddubsw (u8 x s8 pair sums in int16, then vpmaddwd by 1): only where the caller
//        proved no pair sum saturates (conv_direct_s8.h).
// exact: the quad widened to i16 in-lane (unpack with zero) times the s8 panel sign-extended
//        in registers (vpmovsxbw) by vpmaddwd: |x * w| <= 255 * 128, every pair sum fits int32.
#include <immintrin.h>

#include <cstring>

#include "quant/cpu/conv_direct_s8.h"

namespace needle_qc {

namespace {

inline int32_t load_quad(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// 8 raw sums of row r -> 8 requantized int32 (the formulas of output_stage_avx2.cc's requant8).
inline __m256i requant8(__m256i acc, const DirectRequant& rq, size_t r, size_t j) {
  acc = _mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i*)(rq.bias + j)));
  if (rq.w_zp) {  // - z_w * Σ x, modulo 2^32
    const __m256i zw = _mm256_loadu_si256((const __m256i*)(rq.w_zp + j));
    acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(zw, _mm256_set1_epi32(rq.patch_sum[r])));
  }
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(rq.multiplier + j));
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(rq.lo)), _mm256_set1_ps(rq.hi));
  return _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(rq.y_zp));
}

// Columns 0..7 and 8..15 of output row r -> 16 bytes at dst.
inline void store_row(__m256i lo, __m256i hi, const DirectRequant& rq, size_t r, uint8_t* dst) {
  __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(requant8(lo, rq, r, 0),
                                                            requant8(hi, rq, r, 8)), 0xD8);
  __m128i a = _mm256_castsi256_si128(w16), b = _mm256_extracti128_si256(w16, 1);
  _mm_storeu_si128((__m128i*)dst, rq.out_s8 ? _mm_packs_epi16(a, b) : _mm_packus_epi16(a, b));
}

inline void finish_row(__m256i lo, __m256i hi, int32_t* c, const DirectRequant* rq, size_t r) {
  if (rq) {
    store_row(lo, hi, *rq, r, rq->y + r * rq->ldy);
    return;
  }
  _mm256_storeu_si256((__m256i*)(c + r * kPanelWidth), lo);
  _mm256_storeu_si256((__m256i*)(c + r * kPanelWidth + 8), hi);
}

template <size_t MR>
void tile_fast(const DirectTileArgs& a, const void* panel, int32_t* c, const DirectRequant* rq) {
  const int8_t* w = static_cast<const int8_t*>(panel);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR][2];
  for (size_t r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const size_t quads = a.R4 / 4;
  for (size_t kh = 0; kh < a.KH; ++kh) {
    const uint8_t* src[MR];
    for (size_t r = 0; r < MR; ++r) src[r] = a.rows[r] + kh * a.row_step;
    const int8_t* wk = w + kh * a.R4 * kPanelWidth;
    for (size_t q = 0; q < quads; ++q, wk += 4 * kPanelWidth) {
      const __m256i w0 = _mm256_loadu_si256((const __m256i*)wk);
      const __m256i w1 = _mm256_loadu_si256((const __m256i*)(wk + 32));
      for (size_t r = 0; r < MR; ++r) {
        const __m256i av = _mm256_set1_epi32(load_quad(src[r] + 4 * q));
        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, w0),
                                                                  ones));
        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, w1),
                                                                  ones));
      }
    }
  }
  for (size_t r = 0; r < MR; ++r) finish_row(acc[r][0], acc[r][1], c, rq, r);
}

template <size_t MR>
void tile_exact(const DirectTileArgs& a, const void* panel, int32_t* c,
                const DirectRequant* rq) {
  const int8_t* w = static_cast<const int8_t*>(panel);
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc[MR][4];
  for (size_t r = 0; r < MR; ++r)
    for (size_t g = 0; g < 4; ++g) acc[r][g] = zero;
  const size_t quads = a.R4 / 4;
  for (size_t kh = 0; kh < a.KH; ++kh) {
    const uint8_t* src[MR];
    for (size_t r = 0; r < MR; ++r) src[r] = a.rows[r] + kh * a.row_step;
    const int8_t* wk = w + kh * a.R4 * kPanelWidth;
    for (size_t q = 0; q < quads; ++q, wk += 4 * kPanelWidth) {
      __m256i wv[4];  // i16 columns 4g .. 4g+3, depths 0..3 each
      for (size_t g = 0; g < 4; ++g)
        wv[g] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(wk + 16 * g)));
      for (size_t r = 0; r < MR; ++r) {
        // i16 x0 x1 x2 x3 x0 x1 x2 x3 in each lane
        const __m256i av = _mm256_unpacklo_epi8(_mm256_set1_epi32(load_quad(src[r] + 4 * q)),
                                                zero);
        for (size_t g = 0; g < 4; ++g)
          acc[r][g] = _mm256_add_epi32(acc[r][g], _mm256_madd_epi16(av, wv[g]));
      }
    }
  }
  // acc[g] lanes: (col 4g, depths 01), (col 4g, depths 23), (col 4g+1, ...) ...: add the halves
  // and restore the column order.
  for (size_t r = 0; r < MR; ++r) {
    __m256i s[2];
    for (size_t h = 0; h < 2; ++h)
      s[h] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][2 * h], acc[r][2 * h + 1]), 0xD8);
    finish_row(s[0], s[1], c, rq, r);
  }
}

// Byte lanes [0, n) of 32 all ones, the rest zero (n <= 32); dword lanes likewise (n <= 8).
inline __m256i first_bytes(size_t n) {
  alignas(64) static const int8_t table[64] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                               -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                               -1, -1, -1, -1, -1, -1, -1, -1};
  return _mm256_loadu_si256((const __m256i*)(table + 32 - n));
}
inline __m256i first_dwords(size_t n) {
  static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1};
  return _mm256_loadu_si256((const __m256i*)(table + 8 - n));
}

}  // namespace

// vpsadbw against zero: 32 bytes -> 4 partial sums; a run's tail is loaded as whole dwords
// (vpmaskmovd reads none past them) and its bytes past the run masked off.
int32_t direct_patch_sum_avx2(const uint8_t* p, size_t row_step, size_t KH, size_t run) {
  const size_t body = run / 32 * 32, tail = run - body;
  const __m256i zero = _mm256_setzero_si256(), tail_bytes = first_bytes(tail);
  const __m256i tail_dwords = first_dwords((tail + 3) / 4);
  __m256i acc = zero;
  for (size_t kh = 0; kh < KH; ++kh, p += row_step) {
    for (size_t d = 0; d < body; d += 32)
      acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i*)(p + d)),
                                                   zero));
    if (tail) {
      const __m256i v = _mm256_maskload_epi32((const int*)(p + body), tail_dwords);
      acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_and_si256(v, tail_bytes), zero));
    }
  }
  const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  return static_cast<int32_t>(uint32_t(_mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1)));
}

DirectTileFn direct_tile_avx2(size_t mr, bool fast) {
  if (fast) {
    switch (mr) {
      case 1: return tile_fast<1>;
      case 4: return tile_fast<4>;
      case 5: return tile_fast<5>;
      case 6: return tile_fast<6>;
      default: return nullptr;
    }
  }
  switch (mr) {
    case 1: return tile_exact<1>;
    case 2: return tile_exact<2>;
    case 3: return tile_exact<3>;
    default: return nullptr;
  }
}

}  // namespace needle_qc
