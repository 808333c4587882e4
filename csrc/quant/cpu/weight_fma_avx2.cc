// weight_fma_avx2.cc: the FMA tile kernel of the blocked weight-only GEMMs (weight_panels.h):
// rows of x against a decoded 16-column weight tile, accumulating in place.
#include <immintrin.h>

#include "quant/cpu/quant.h"

namespace needle_qc {

namespace {

// x is row-interleaved: x[k * kFmaRows + r] (packed by the driver, so the broadcasts of one k
// share a cache line instead of hitting MR lines 4 KiB-aliased apart).
template <size_t MR>
void fma_tile(const float* x, const float* tile, size_t kc, float* acc, size_t ld, bool first) {
  // Fully unrolled so the 2 * MR accumulators live in registers (GCC otherwise kept them on the
  // stack across the k loop).
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (size_t r = 0; r < MR; ++r) {
    c0[r] = _mm256_setzero_ps();
    c1[r] = _mm256_setzero_ps();
  }
  if (!first) {
#pragma GCC unroll 8
    for (size_t r = 0; r < MR; ++r) {
      c0[r] = _mm256_loadu_ps(acc + r * ld);
      c1[r] = _mm256_loadu_ps(acc + r * ld + 8);
    }
  }
  for (size_t k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_load_ps(tile + k * kPanelWidth);
    const __m256 w1 = _mm256_load_ps(tile + k * kPanelWidth + 8);
#pragma GCC unroll 8
    for (size_t r = 0; r < MR; ++r) {
      const __m256 xb = _mm256_broadcast_ss(x + k * kFmaRows + r);
      c0[r] = _mm256_fmadd_ps(xb, w0, c0[r]);
      c1[r] = _mm256_fmadd_ps(xb, w1, c1[r]);
    }
  }
#pragma GCC unroll 8
  for (size_t r = 0; r < MR; ++r) {
    _mm256_storeu_ps(acc + r * ld, c0[r]);
    _mm256_storeu_ps(acc + r * ld + 8, c1[r]);
  }
}

}  // namespace

void fma_rows_x16_avx2(size_t mr, const float* x, const float* tile, size_t kc, float* acc,
                       size_t ld, bool first) {
  static_assert(kFmaRows == 6, "fma_rows_x16_avx2 has tiles of up to 6 rows");
  switch (mr) {
    case 6: return fma_tile<6>(x, tile, kc, acc, ld, first);
    case 5: return fma_tile<5>(x, tile, kc, acc, ld, first);
    case 4: return fma_tile<4>(x, tile, kc, acc, ld, first);
    case 3: return fma_tile<3>(x, tile, kc, acc, ld, first);
    case 2: return fma_tile<2>(x, tile, kc, acc, ld, first);
    default: return fma_tile<1>(x, tile, kc, acc, ld, first);
  }
}

}  // namespace needle_qc
