// ukernel_avx512vnni.cc: AVX-512 VNNI microkernel; vpdpbusd sums 4 u8*s8 products into int32
// without any int16 intermediate, so it is exact for every input.
#include <immintrin.h>

#include "quant.h"

namespace needle_qc {

template <size_t MR>
static void vnni_tile(size_t K4, const uint8_t* a, size_t lda, const int8_t* w, int32_t* c) {
  __m512i acc[MR];
  for (size_t r = 0; r < MR; ++r) acc[r] = _mm512_setzero_si512();
  for (size_t kq = 0; kq < K4 / 4; ++kq) {
    __m512i wv = _mm512_loadu_si512(w + kq * 4 * kPanelWidth);
    for (size_t r = 0; r < MR; ++r) {
      int32_t quad;
      __builtin_memcpy(&quad, a + r * lda + kq * 4, 4);
      acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(quad), wv);
    }
  }
  for (size_t r = 0; r < MR; ++r) _mm512_storeu_si512(c + r * kPanelWidth, acc[r]);
}

void ukernel_u8s8_avx512vnni(size_t mr, size_t K4, const uint8_t* a, size_t lda, const int8_t* w,
                             int32_t* c) {
  switch (mr) {
    case 8: return vnni_tile<8>(K4, a, lda, w, c);
    case 4: return vnni_tile<4>(K4, a, lda, w, c);
    default: break;
  }
  for (size_t r = 0; r < mr; ++r) vnni_tile<1>(K4, a + r * lda, lda, w, c + r * kPanelWidth);
}

}  // namespace needle_qc
