// ukernel_avx512vnni.cc: AVX-512 VNNI microkernels; vpdpbusd sums 4 u8*s8 products into int32
// without any int16 intermediate, so it is exact for every input.
//
// The multi-panel kernel computes NP adjacent panels (16*NP columns) per call: each broadcast of
// A feeds NP vpdpbusd, and for few rows (the GEMV case) the NP panels -- plus, for one row, two
// interleaved depth halves -- give enough independent accumulator chains to hide vpdpbusd's
// latency. Integer sums wrap modulo 2^32, so splitting the depth changes no bit of the result.
#include <immintrin.h>

#include "quant/cpu/quant.h"
#include "quant/cpu/ukernel_panels.h"

namespace needle_qc {

template <size_t MR>
static void vnni_tile(size_t K4, const uint8_t* a, size_t lda, const int8_t* w, int32_t* c,
                      bool accumulate = false) {
  __m512i acc[MR];
  for (size_t r = 0; r < MR; ++r)
    acc[r] = accumulate ? _mm512_loadu_si512(c + r * kPanelWidth) : _mm512_setzero_si512();
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

static void vnni_tile_any(size_t mr, size_t K4, const uint8_t* a, size_t lda, const int8_t* w,
                          int32_t* c, bool accumulate) {
  switch (mr) {
    case 8: return vnni_tile<8>(K4, a, lda, w, c, accumulate);
    case 4: return vnni_tile<4>(K4, a, lda, w, c, accumulate);
    default: break;
  }
  for (size_t r = 0; r < mr; ++r)
    vnni_tile<1>(K4, a + r * lda, lda, w, c + r * kPanelWidth, accumulate);
}

// One depth quad kq of MR rows x NP panels into acc[r][p].
template <size_t MR, size_t NP>
static inline void vnni_step(size_t kq, const uint8_t* a, size_t lda, const int8_t* w,
                             size_t panel_stride, __m512i (&acc)[MR][NP]) {
  __m512i wv[NP];
  for (size_t p = 0; p < NP; ++p)
    wv[p] = _mm512_loadu_si512(w + p * panel_stride + kq * 4 * kPanelWidth);
  for (size_t r = 0; r < MR; ++r) {
    int32_t quad;
    __builtin_memcpy(&quad, a + r * lda + kq * 4, 4);
    const __m512i av = _mm512_set1_epi32(quad);
    for (size_t p = 0; p < NP; ++p) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], av, wv[p]);
  }
}

// c[p * kTileStride + r * 16 + j]: one MR x 16 tile per panel.
// accumulate: start from the sums already in c (the depth blocks after the first).
template <size_t MR, size_t NP>
static void vnni_multi(size_t K4, const uint8_t* a, size_t lda, const int8_t* w,
                       size_t panel_stride, int32_t* c, bool accumulate) {
  constexpr size_t kSplit = MR == 1 ? 2 : 1;  // one row: two depth chains per panel
  __m512i acc[kSplit][MR][NP];
  for (size_t s = 0; s < kSplit; ++s)
    for (size_t r = 0; r < MR; ++r)
      for (size_t p = 0; p < NP; ++p)
        acc[s][r][p] = accumulate && s == 0
                           ? _mm512_loadu_si512(c + p * kTileStride + r * kPanelWidth)
                           : _mm512_setzero_si512();
  const size_t KQ = K4 / 4;
  size_t kq = 0;
  for (; kq + kSplit <= KQ; kq += kSplit)
    for (size_t s = 0; s < kSplit; ++s) vnni_step<MR, NP>(kq + s, a, lda, w, panel_stride, acc[s]);
  for (; kq < KQ; ++kq) vnni_step<MR, NP>(kq, a, lda, w, panel_stride, acc[0]);
  for (size_t r = 0; r < MR; ++r) {
    for (size_t p = 0; p < NP; ++p) {
      __m512i sum = acc[0][r][p];
      for (size_t s = 1; s < kSplit; ++s) sum = _mm512_add_epi32(sum, acc[s][r][p]);
      _mm512_storeu_si512(c + p * kTileStride + r * kPanelWidth, sum);
    }
  }
}

template <size_t NP>
static bool vnni_multi_rows(size_t mr, size_t K4, const uint8_t* a, size_t lda, const int8_t* w,
                            size_t panel_stride, int32_t* c, bool accumulate) {
  switch (mr) {
    case 1: vnni_multi<1, NP>(K4, a, lda, w, panel_stride, c, accumulate); return true;
    case 2: vnni_multi<2, NP>(K4, a, lda, w, panel_stride, c, accumulate); return true;
    case 3: vnni_multi<3, NP>(K4, a, lda, w, panel_stride, c, accumulate); return true;
    case 4: vnni_multi<4, NP>(K4, a, lda, w, panel_stride, c, accumulate); return true;
    default: break;
  }
  if constexpr (NP <= 2) {  // 8 x 2 = 16 accumulators; 8 x 4 would spill
    switch (mr) {
      case 5: vnni_multi<5, NP>(K4, a, lda, w, panel_stride, c, accumulate); return true;
      case 6: vnni_multi<6, NP>(K4, a, lda, w, panel_stride, c, accumulate); return true;
      case 7: vnni_multi<7, NP>(K4, a, lda, w, panel_stride, c, accumulate); return true;
      case 8: vnni_multi<8, NP>(K4, a, lda, w, panel_stride, c, accumulate); return true;
      default: break;
    }
  }
  return false;
}

void ukernel_u8s8_avx512vnni_panels(size_t mr, size_t np, size_t K4, const uint8_t* a,
                                    size_t lda, const int8_t* w, size_t panel_stride,
                                    int32_t* c, bool accumulate) {
  if (np == 4 && vnni_multi_rows<4>(mr, K4, a, lda, w, panel_stride, c, accumulate)) return;
  if (np == 2 && vnni_multi_rows<2>(mr, K4, a, lda, w, panel_stride, c, accumulate)) return;
  for (size_t p = 0; p < np; ++p) {
    if (mr == 1) {
      vnni_multi<1, 1>(K4, a, lda, w + p * panel_stride, panel_stride, c + p * kTileStride,
                       accumulate);
    } else {
      vnni_tile_any(mr, K4, a, lda, w + p * panel_stride, c + p * kTileStride, accumulate);
    }
  }
}

}  // namespace needle_qc
