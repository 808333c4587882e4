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

// Short runs (small Cin: the 1-channel stem copies 3 bytes per kernel row) are cheaper as a
// byte loop than as a memcpy/memset call.
static inline void copy_bytes(uint8_t* dst, const uint8_t* src, size_t n) {
  if (n > 16) {
    std::memcpy(dst, src, n);
    return;
  }
  for (size_t i = 0; i < n; ++i) dst[i] = src[i];
}

static inline void fill_bytes(uint8_t* dst, uint8_t v, size_t n) {
  if (n > 16) {
    std::memset(dst, v, n);
    return;
  }
  for (size_t i = 0; i < n; ++i) dst[i] = v;
}

static void im2col_row(const uint8_t* x, const ConvGeometry& g, size_t oh, size_t ow,
                       uint8_t x_zp, uint8_t* dst) {
  const size_t run = g.KW * g.C;  // one kernel row: KW adjacent input pixels, C bytes each
  const long iw0 = long(ow * g.sw) - long(g.pw);
  const bool cols_inside = iw0 >= 0 && iw0 + long(g.KW) <= long(g.W);
  for (size_t kh = 0; kh < g.KH; ++kh) {
    const long ih = long(oh * g.sh + kh) - long(g.ph);
    uint8_t* d = dst + kh * run;
    if (ih < 0 || ih >= long(g.H)) {
      fill_bytes(d, x_zp, run);
      continue;
    }
    const uint8_t* row = x + size_t(ih) * g.W * g.C;
    if (cols_inside) {
      copy_bytes(d, row + size_t(iw0) * g.C, run);
      continue;
    }
    for (size_t kw = 0; kw < g.KW; ++kw) {
      const long iw = iw0 + long(kw);
      if (iw < 0 || iw >= long(g.W))
        fill_bytes(d + kw * g.C, x_zp, g.C);
      else
        copy_bytes(d + kw * g.C, row + size_t(iw) * g.C, g.C);
    }
  }
}

PackedA im2col_pack(const uint8_t* x, const ConvGeometry& g, uint8_t x_zp,
                    const PackANeeds& needs) {
  if (g.is_pointwise()) return pack_a(x, false, g.H * g.W, g.C, needs);
  PackedA p;
  p.M = g.OH * g.OW;
  p.K = g.KH * g.KW * g.C;
  p.K4 = (p.K + 3) / 4 * 4;
  p.u8_storage.assign(p.M * p.K4, 0);
  for (size_t oh = 0; oh < g.OH; ++oh)
    for (size_t ow = 0; ow < g.OW; ++ow)
      im2col_row(x, g, oh, ow, x_zp, p.u8_storage.data() + (oh * g.OW + ow) * p.K4);
  p.u8 = p.u8_storage.data();
  complete_packed_a(p, needs);
  return p;
}

void conv2d_u8s8_batch(const uint8_t* x, size_t batch, const ConvGeometry& g, uint8_t x_zp,
                       const PackedConvWeight& w, Isa isa, OutputKind kind,
                       const OutputParams& p, void* out, size_t out_itemsize) {
  const size_t image_in = g.H * g.W * g.C;
  const size_t image_out = g.OH * g.OW * w.Cout * out_itemsize;
  auto one_image = [&](size_t n) {
    PackANeeds needs;
    needs.widen_i16 = isa == Isa::avx2;
    needs.rowsums = !w.gemm.zero_point_is_zero;
    PackedA a = im2col_pack(x + n * image_in, g, x_zp, needs);
    gemm_u8s8(a, w.gemm, isa, GemmOptions{}, kind, p, static_cast<uint8_t*>(out) + n * image_out);
  };
  // An image whose GEMM is too small to split (the 1-channel stem: ~0.2M multiply-adds) or has
  // fewer column panels than threads runs whole on one thread, images spread over the threads;
  // otherwise images go one after another and each GEMM splits its panels.
  const size_t macs = g.OH * g.OW * w.gemm.K4 * w.gemm.panels * kPanelWidth;
  const bool per_image_threads =
      macs >= (size_t{1} << 21) && w.gemm.panels >= static_cast<size_t>(num_threads());
  if (batch > 1 && !per_image_threads) {
    parallel_for(batch, 1, [&](size_t begin, size_t end) {
      for (size_t n = begin; n < end; ++n) one_image(n);
    });
    return;
  }
  for (size_t n = 0; n < batch; ++n) one_image(n);
}

}  // namespace needle_qc
