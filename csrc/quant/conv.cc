// conv.cc: NHWC im2col straight into the packed-LHS layout, so a conv is one GEMM per image.
//
// Packed row m = output pixel (oh, ow); column k = (kh * KW + kw) * C + c, which is exactly the
// row index of the Needle weight [KH, KW, Cin, Cout] viewed as [KH*KW*Cin, Cout]. Out-of-image
// taps read the input zero point, so they contribute (z_x - z_x) * w = 0 exactly.
#include <algorithm>
#include <cstring>

#include "conv.h"

namespace needle_qc {

ConvGeometry::ConvGeometry(size_t H_, size_t W_, size_t C_, size_t KH_, size_t KW_, size_t sh_,
                           size_t sw_, size_t ph_, size_t pw_)
    : H(H_), W(W_), C(C_), KH(KH_), KW(KW_), sh(sh_), sw(sw_), ph(ph_), pw(pw_) {
  OH = (H + 2 * ph >= KH) ? (H + 2 * ph - KH) / sh + 1 : 0;
  OW = (W + 2 * pw >= KW) ? (W + 2 * pw - KW) / sw + 1 : 0;
}

bool ConvGeometry::is_pointwise() const {
  return KH == 1 && KW == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
}

static void im2col_row(const uint8_t* x, const ConvGeometry& g, size_t oh, size_t ow,
                       uint8_t x_zp, uint8_t* dst) {
  for (size_t kh = 0; kh < g.KH; ++kh) {
    const long ih = long(oh * g.sh + kh) - long(g.ph);
    for (size_t kw = 0; kw < g.KW; ++kw) {
      const long iw = long(ow * g.sw + kw) - long(g.pw);
      uint8_t* d = dst + (kh * g.KW + kw) * g.C;
      if (ih < 0 || iw < 0 || ih >= long(g.H) || iw >= long(g.W)) {
        std::memset(d, x_zp, g.C);
      } else {
        std::memcpy(d, x + (size_t(ih) * g.W + size_t(iw)) * g.C, g.C);
      }
    }
  }
}

PackedA im2col_pack(const uint8_t* x, const ConvGeometry& g, uint8_t x_zp, bool widen_i16,
                    bool rowsums) {
  if (g.is_pointwise()) return pack_a(x, false, g.H * g.W, g.C, widen_i16, rowsums);
  PackedA p;
  p.M = g.OH * g.OW;
  p.K = g.KH * g.KW * g.C;
  p.K4 = (p.K + 3) / 4 * 4;
  p.u8.assign(p.M * p.K4, 0);
  for (size_t oh = 0; oh < g.OH; ++oh)
    for (size_t ow = 0; ow < g.OW; ++ow)
      im2col_row(x, g, oh, ow, x_zp, p.u8.data() + (oh * g.OW + ow) * p.K4);
  p.max_value = p.u8.empty() ? 0 : *std::max_element(p.u8.begin(), p.u8.end());
  if (widen_i16) p.i16.assign(p.u8.begin(), p.u8.end());
  if (rowsums) {
    p.rowsum.assign(p.M, 0);
    for (size_t m = 0; m < p.M; ++m) {
      uint32_t s = 0;
      for (size_t k = 0; k < p.K; ++k) s += p.u8[m * p.K4 + k];
      p.rowsum[m] = static_cast<int32_t>(s);
    }
  }
  return p;
}

}  // namespace needle_qc
