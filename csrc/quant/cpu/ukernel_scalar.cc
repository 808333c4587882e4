// ukernel_scalar.cc: portable reference microkernel (any CPU), same packed layout as the SIMD ones.
#include "quant/cpu/quant.h"

namespace needle_qc {

size_t ukernel_mr(Isa isa, bool fast) {
  if (isa == Isa::avx512vnni) return 8;
  if (isa == Isa::avx2) return fast ? 6 : 2;
  return 4;
}

void ukernel_u8s8_scalar(size_t mr, size_t K4, const uint8_t* a, size_t lda, const int8_t* w,
                         int32_t* c) {
  for (size_t r = 0; r < mr; ++r) {
    // Unsigned accumulation wraps modulo 2^32 like the SIMD adds (signed overflow would be UB).
    uint32_t acc[kPanelWidth] = {};
    const uint8_t* ar = a + r * lda;
    for (size_t kq = 0; kq < K4 / 4; ++kq) {
      const int8_t* wq = w + kq * 4 * kPanelWidth;
      for (size_t j = 0; j < kPanelWidth; ++j) {
        int32_t dot = 0;  // 4 products of |.| <= 255*128 cannot overflow
        for (size_t i = 0; i < 4; ++i) dot += int32_t(ar[kq * 4 + i]) * wq[j * 4 + i];
        acc[j] += static_cast<uint32_t>(dot);
      }
    }
    for (size_t j = 0; j < kPanelWidth; ++j) c[r * kPanelWidth + j] = static_cast<int32_t>(acc[j]);
  }
}

}  // namespace needle_qc
