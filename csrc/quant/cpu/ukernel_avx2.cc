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

template <size_t MR>
static void maddubs_tile(size_t K4, const uint8_t* a, size_t lda, const int8_t* w, int32_t* c) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR][2];
  for (size_t r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (size_t kq = 0; kq < K4 / 4; ++kq) {
    const int8_t* wq = w + kq * 4 * kPanelWidth;
    __m256i w0 = _mm256_loadu_si256((const __m256i*)wq);
    __m256i w1 = _mm256_loadu_si256((const __m256i*)(wq + 32));
    for (size_t r = 0; r < MR; ++r) {
      int32_t quad;
      __builtin_memcpy(&quad, a + r * lda + kq * 4, 4);
      __m256i av = _mm256_set1_epi32(quad);
      __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, w0), ones);
      __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, w1), ones);
      acc[r][0] = _mm256_add_epi32(acc[r][0], p0);
      acc[r][1] = _mm256_add_epi32(acc[r][1], p1);
    }
  }
  for (size_t r = 0; r < MR; ++r) {
    _mm256_storeu_si256((__m256i*)(c + r * kPanelWidth), acc[r][0]);
    _mm256_storeu_si256((__m256i*)(c + r * kPanelWidth + 8), acc[r][1]);
  }
}

void ukernel_u8s8_avx2_maddubs(size_t mr, size_t K4, const uint8_t* a, size_t lda,
                               const int8_t* w, int32_t* c) {
  if (mr == 4) return maddubs_tile<4>(K4, a, lda, w, c);
  for (size_t r = 0; r < mr; ++r) maddubs_tile<1>(K4, a + r * lda, lda, w, c + r * kPanelWidth);
}

}  // namespace needle_qc
