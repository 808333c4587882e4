// ukernel_avx2.cc: AVX2 microkernels: exact (vpmaddwd on widened i16) and fast (vpmaddubsw).
//
// vpmaddubsw adds two u8*s8 products into a *saturating* int16: 2*255*127 > 32767, so it is used
// only when the caller proved a_max * max_pair_abs <= 32767 (checked again in gemm.cc).
#include <immintrin.h>

#include "quant/cpu/quant.h"

namespace needle_qc {

// Exact path: 4 depths of a row as i16, broadcast; W bytes widened to i16. Each vpmaddwd lane
// holds one column's (k0,k1) or (k2,k3) pair sum in int32, so no intermediate can saturate.
template <size_t MR>
static void exact_tile(size_t K4, const int16_t* a, size_t lda, const int8_t* w, int32_t* c) {
  __m256i acc[MR][4];
  for (size_t r = 0; r < MR; ++r)
    for (size_t g = 0; g < 4; ++g) acc[r][g] = _mm256_setzero_si256();
  for (size_t kq = 0; kq < K4 / 4; ++kq) {
    __m256i av[MR];
    for (size_t r = 0; r < MR; ++r) {
      int64_t quad;
      __builtin_memcpy(&quad, a + r * lda + kq * 4, 8);
      av[r] = _mm256_set1_epi64x(quad);
    }
    const int8_t* wq = w + kq * 4 * kPanelWidth;
    for (size_t g = 0; g < 4; ++g) {
      __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(wq + 16 * g)));
      for (size_t r = 0; r < MR; ++r)
        acc[r][g] = _mm256_add_epi32(acc[r][g], _mm256_madd_epi16(av[r], wv));
    }
  }
  // Lanes of acc[g] are (col 4g, halves 0/1), (col 4g+1, ...): add halves, restore column order.
  for (size_t r = 0; r < MR; ++r) {
    for (size_t h = 0; h < 2; ++h) {
      __m256i s = _mm256_hadd_epi32(acc[r][2 * h], acc[r][2 * h + 1]);
      s = _mm256_permute4x64_epi64(s, 0xD8);
      _mm256_storeu_si256((__m256i*)(c + r * kPanelWidth + 8 * h), s);
    }
  }
}

void ukernel_i16_avx2_exact(size_t mr, size_t K4, const int16_t* a, size_t lda, const int8_t* w,
                            int32_t* c) {
  if (mr == 2) return exact_tile<2>(K4, a, lda, w, c);
  for (size_t r = 0; r < mr; ++r) exact_tile<1>(K4, a + r * lda, lda, w, c + r * kPanelWidth);
}

// One row's 4 depths against a 16-column panel quad, added into (lo, hi). The row's quad is
// broadcast straight from memory; the products go through vpmaddwd with ones to int32.
#define NEEDLE_QC_MADDUBS_ROW(row, lo, hi)                                              \
  do {                                                                               \
    int32_t quad;                                                                    \
    __builtin_memcpy(&quad, row, 4);                                                 \
    const __m256i av = _mm256_set1_epi32(quad);                                      \
    lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_maddubs_epi16(av, w0), ones)); \
    hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_maddubs_epi16(av, w1), ones)); \
  } while (0)

// c[0..8) = v, or c[0..8) += v for a later depth block.
inline void store8(int32_t* c, __m256i v, bool accumulate) {
  if (accumulate) v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i*)c));
  _mm256_storeu_si256((__m256i*)c, v);
}

// MR = 4 rows with named accumulators: an array of __m256i made GCC copy every accumulator
// and spill one per depth quad inside the loop.
static void maddubs_tile4(size_t K4, const uint8_t* a, size_t lda, const int8_t* w, int32_t* c,
                          bool acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c0l = _mm256_setzero_si256(), c0h = c0l, c1l = c0l, c1h = c0l, c2l = c0l, c2h = c0l,
          c3l = c0l, c3h = c0l;
  const uint8_t *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda;
  for (size_t k = 0; k < K4; k += 4, w += 4 * kPanelWidth) {
    const __m256i w0 = _mm256_loadu_si256((const __m256i*)w);
    const __m256i w1 = _mm256_loadu_si256((const __m256i*)(w + 32));
    NEEDLE_QC_MADDUBS_ROW(a0 + k, c0l, c0h);
    NEEDLE_QC_MADDUBS_ROW(a1 + k, c1l, c1h);
    NEEDLE_QC_MADDUBS_ROW(a2 + k, c2l, c2h);
    NEEDLE_QC_MADDUBS_ROW(a3 + k, c3l, c3h);
  }
  store8(c, c0l, acc);
  store8(c + 8, c0h, acc);
  store8(c + 16, c1l, acc);
  store8(c + 24, c1h, acc);
  store8(c + 32, c2l, acc);
  store8(c + 40, c2h, acc);
  store8(c + 48, c3l, acc);
  store8(c + 56, c3h, acc);
}

// MR = 6: 12 accumulators, ones, the broadcast row and a product: 15 of the 16 registers; the
// panel's two halves are read as memory operands (L1) by each row.
static void maddubs_tile6(size_t K4, const uint8_t* a, size_t lda, const int8_t* w, int32_t* c,
                          bool acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c0l = _mm256_setzero_si256(), c0h = c0l, c1l = c0l, c1h = c0l, c2l = c0l, c2h = c0l,
          c3l = c0l, c3h = c0l, c4l = c0l, c4h = c0l, c5l = c0l, c5h = c0l;
  const uint8_t *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda, *a4 = a + 4 * lda,
                *a5 = a + 5 * lda;
  for (size_t k = 0; k < K4; k += 4, w += 4 * kPanelWidth) {
    const __m256i w0 = _mm256_loadu_si256((const __m256i*)w);
    const __m256i w1 = _mm256_loadu_si256((const __m256i*)(w + 32));
    NEEDLE_QC_MADDUBS_ROW(a0 + k, c0l, c0h);
    NEEDLE_QC_MADDUBS_ROW(a1 + k, c1l, c1h);
    NEEDLE_QC_MADDUBS_ROW(a2 + k, c2l, c2h);
    NEEDLE_QC_MADDUBS_ROW(a3 + k, c3l, c3h);
    NEEDLE_QC_MADDUBS_ROW(a4 + k, c4l, c4h);
    NEEDLE_QC_MADDUBS_ROW(a5 + k, c5l, c5h);
  }
  store8(c, c0l, acc);
  store8(c + 8, c0h, acc);
  store8(c + 16, c1l, acc);
  store8(c + 24, c1h, acc);
  store8(c + 32, c2l, acc);
  store8(c + 40, c2h, acc);
  store8(c + 48, c3l, acc);
  store8(c + 56, c3h, acc);
  store8(c + 64, c4l, acc);
  store8(c + 72, c4h, acc);
  store8(c + 80, c5l, acc);
  store8(c + 88, c5h, acc);
}

static void maddubs_tile1(size_t K4, const uint8_t* a, const int8_t* w, int32_t* c, bool acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i lo = _mm256_setzero_si256(), hi = lo;
  for (size_t k = 0; k < K4; k += 4, w += 4 * kPanelWidth) {
    const __m256i w0 = _mm256_loadu_si256((const __m256i*)w);
    const __m256i w1 = _mm256_loadu_si256((const __m256i*)(w + 32));
    NEEDLE_QC_MADDUBS_ROW(a + k, lo, hi);
  }
  store8(c, lo, acc);
  store8(c + 8, hi, acc);
}
#undef NEEDLE_QC_MADDUBS_ROW

void ukernel_u8s8_avx2_maddubs(size_t mr, size_t K4, const uint8_t* a, size_t lda,
                               const int8_t* w, int32_t* c, bool accumulate) {
  if (mr == 6) return maddubs_tile6(K4, a, lda, w, c, accumulate);
  size_t r = 0;
  for (; r + 4 <= mr; r += 4)
    maddubs_tile4(K4, a + r * lda, lda, w, c + r * kPanelWidth, accumulate);
  for (; r < mr; ++r) maddubs_tile1(K4, a + r * lda, w, c + r * kPanelWidth, accumulate);
}

}  // namespace needle_qc
