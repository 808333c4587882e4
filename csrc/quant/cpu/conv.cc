// conv.cc: NHWC im2col straight into the packed-LHS layout, block by block of output pixels.
//
// Packed row m = output pixel (oh, ow); column k = (kh * KW + kw) * C + c, which is exactly the
// row index of the Needle weight [KH, KW, Cin, Cout] viewed as [KH*KW*Cin, Cout]. Out-of-image
// taps read the input zero point, so they contribute (z_x - z_x) * w = 0 exactly.
#include <algorithm>
#include <cstring>

#include "quant/cpu/conv.h"

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

// Bytes an im2col buffer keeps past its last row: short runs are copied as one 8- or 16-byte move
// and spill up to 15 bytes past their end. Runs are written in address order, so a spill lands
// in the next run (rewritten right after), in the row's depth padding (re-zeroed after the row) or
// here.
constexpr size_t kIm2colSlack = 16;

// n bytes src -> dst, where reading up to src_end is allowed (the input image's end).
static inline void copy_run(uint8_t* dst, const uint8_t* src, size_t n, const uint8_t* src_end) {
  if (n <= 8 && src + 8 <= src_end) {
    std::memcpy(dst, src, 8);  // one move: the 1-channel stem's 3-byte runs
  } else if (n <= 16 && src + 16 <= src_end) {
    std::memcpy(dst, src, 16);
  } else {
    std::memcpy(dst, src, n);
  }
}

static inline void fill_bytes(uint8_t* dst, uint8_t v, size_t n) {
  if (n > 16) {
    std::memset(dst, v, n);
    return;
  }
  for (size_t i = 0; i < n; ++i) dst[i] = v;
}

// One packed row (output pixel oh, ow) of the image x; may write up to kIm2colSlack bytes past
// the row's K4 bytes (see copy_run) and leaves its depth padding zero. The geometry is copied
// into locals: byte stores may alias anything, so fields read through `g` would be reloaded
// after every store.
static void im2col_row(const uint8_t* x, const ConvGeometry& g, size_t oh, size_t ow,
                       uint8_t x_zp, uint8_t* dst) {
  const size_t C = g.C, KH = g.KH, KW = g.KW, run = KW * C;  // run: one kernel row
  const long H = long(g.H), W = long(g.W);
  const uint8_t* x_end = x + g.H * g.W * C;
  const long iw0 = long(ow * g.sw) - long(g.pw), ih0 = long(oh * g.sh) - long(g.ph);
  const bool cols_inside = iw0 >= 0 && iw0 + long(KW) <= W;
  for (size_t kh = 0; kh < KH; ++kh) {
    const long ih = ih0 + long(kh);
    uint8_t* d = dst + kh * run;
    if (ih < 0 || ih >= H) {
      fill_bytes(d, x_zp, run);
      continue;
    }
    const uint8_t* row = x + size_t(ih) * size_t(W) * C;
    if (cols_inside) {
      copy_run(d, row + size_t(iw0) * C, run, x_end);
      continue;
    }
    for (size_t kw = 0; kw < KW; ++kw) {
      const long iw = iw0 + long(kw);
      if (iw < 0 || iw >= W)
        fill_bytes(d + kw * C, x_zp, C);
      else
        copy_run(d + kw * C, row + size_t(iw) * C, C, x_end);
    }
  }
  const size_t K = KH * run, K4 = (K + 3) / 4 * 4;
  for (size_t k = K; k < K4; ++k) dst[k] = 0;  // a zero depth adds nothing
}

// Short kernel rows (KW * C <= 16: few-channel stems) go one output-row segment at a time from
// zero-point-padded copies of its KH input rows, so each (pixel, kernel row) is one 16-byte move
// with no bounds checks; per-pixel bookkeeping dominated those tiny copies.
constexpr size_t kShortRun = 16;

// Pixels ow in [ow0, ow1) of output row oh of image x into consecutive packed rows at dst.
static void im2col_segment_short(const uint8_t* x, const ConvGeometry& g, size_t oh, size_t ow0,
                                 size_t ow1, uint8_t x_zp, size_t K4, uint8_t* dst,
                                 std::vector<uint8_t>& padded) {
  const size_t C = g.C, KH = g.KH, run = g.KW * C, K = KH * run, sw_bytes = g.sw * C;
  const size_t row_bytes = g.W * C, pad_bytes = g.pw * C, wp = row_bytes + 2 * pad_bytes;
  padded.resize(KH * wp + kShortRun);  // slack: the last 16-byte read may pass the last row
  for (size_t kh = 0; kh < KH; ++kh) {
    uint8_t* pr = padded.data() + kh * wp;
    const long ih = long(oh * g.sh + kh) - long(g.ph);
    if (ih < 0 || ih >= long(g.H)) {
      std::memset(pr, x_zp, wp);
      continue;
    }
    std::memset(pr, x_zp, pad_bytes);
    std::memcpy(pr + pad_bytes, x + size_t(ih) * row_bytes, row_bytes);
    std::memset(pr + pad_bytes + row_bytes, x_zp, pad_bytes);
  }
  const uint8_t* src = padded.data();
  for (size_t ow = ow0; ow < ow1; ++ow, dst += K4) {
    // Moves spill forward only: into later kernel rows, the depth padding (zeroed next) or the
    // next packed row (written after this one).
    for (size_t kh = 0; kh < KH; ++kh) std::memcpy(dst + kh * run, src + kh * wp + ow * sw_bytes,
                                                   kShortRun);
    for (size_t k = K; k < K4; ++k) dst[k] = 0;
  }
}

// Packed rows for the batched pixels m in [m0, m0 + rows), m = (n * OH + oh) * OW + ow, of the
// images at x; split into output-row segments so no pixel needs a division.
static void im2col_rows(const uint8_t* x, const ConvGeometry& g, size_t m0, size_t rows,
                        uint8_t x_zp, size_t K4, uint8_t* dst, std::vector<uint8_t>& padded) {
  const size_t rpi = g.OH * g.OW, image_in = g.H * g.W * g.C;
  const bool short_run = g.KW * g.C <= kShortRun;
  for (size_t m = m0, end = m0 + rows; m < end;) {
    const size_t n = m / rpi, pix = m % rpi, oh = pix / g.OW, ow0 = pix % g.OW;
    const size_t ow1 = std::min(g.OW, ow0 + (end - m));
    const uint8_t* image = x + n * image_in;
    if (short_run) {
      im2col_segment_short(image, g, oh, ow0, ow1, x_zp, K4, dst, padded);
    } else {
      for (size_t ow = ow0; ow < ow1; ++ow) im2col_row(image, g, oh, ow, x_zp, dst + (ow - ow0) * K4);
    }
    dst += (ow1 - ow0) * K4;
    m += ow1 - ow0;
  }
}

PackedA im2col_pack(const uint8_t* x, const ConvGeometry& g, uint8_t x_zp,
                    const PackANeeds& needs) {
  if (g.is_pointwise()) return pack_a(x, false, g.H * g.W, g.C, needs);
  PackedA p;
  p.M = g.OH * g.OW;
  p.K = g.KH * g.KW * g.C;
  p.K4 = (p.K + 3) / 4 * 4;
  p.u8_storage.assign(p.M * p.K4 + kIm2colSlack, 0);
  std::vector<uint8_t> padded;
  im2col_rows(x, g, 0, p.M, x_zp, p.K4, p.u8_storage.data(), padded);
  p.u8 = p.u8_storage.data();
  complete_packed_a(p, needs);
  return p;
}

namespace {

constexpr size_t kConvBlockBytes = 64 * 1024;  // im2col rows per block: ~64 KiB, stays in L2

struct ConvJob {
  const uint8_t* x;
  const ConvGeometry& g;
  uint8_t x_zp;
  const PackedConvWeight& w;
  Isa isa;
  OutputKind kind;
  const OutputParams& p;
  uint8_t* out;
  size_t out_row_bytes;  // Cout * itemsize
  PackANeeds needs;
  size_t block_rows;

  size_t rows_per_image() const { return g.OH * g.OW; }
};

// Rows [m0, m0 + rows) of the batched LHS (m = (n * OH + oh) * OW + ow) into `a`: the input
// itself for a pointwise conv whose rows need no padding, else im2col into a's storage.
void fill_rows(const ConvJob& job, size_t m0, size_t rows, PackedA& a,
               std::vector<uint8_t>& padded) {
  const ConvGeometry& g = job.g;
  a.M = rows;
  if (g.is_pointwise() && a.K4 == a.K) {
    a.u8 = job.x + m0 * g.C;  // NHWC pixels are already the rows, batch after batch
  } else {
    im2col_rows(job.x, g, m0, rows, job.x_zp, a.K4, a.u8_storage.data(), padded);
    a.u8 = a.u8_storage.data();
  }
  complete_packed_a(a, job.needs);
}

// Row blocks [b, e): each is packed into this thread's L2-sized buffer and multiplied at once.
void conv_blocks(const ConvJob& job, size_t M, size_t b, size_t e) {
  PackedA a;
  a.K = job.w.gemm.K;
  a.K4 = job.w.gemm.K4;
  a.u8_storage.assign(job.block_rows * a.K4 + kIm2colSlack, 0);
  std::vector<uint8_t> padded;  // im2col_segment_short's scratch, reused
  for (size_t blk = b; blk < e; ++blk) {
    const size_t m0 = blk * job.block_rows, rows = std::min(job.block_rows, M - m0);
    fill_rows(job, m0, rows, a, padded);
    OutputParams p = job.p;  // row-indexed parameters start at this block's first row
    if (p.row_scale) p.row_scale += m0;
    if (p.a_zp_per_row) p.a_zp += m0;
    gemm_u8s8_on_caller(a, job.w.gemm, job.isa, GemmOptions{}, job.kind, p,
                        job.out + m0 * job.out_row_bytes);
  }
}

}  // namespace

void conv2d_u8s8_batch(const uint8_t* x, size_t batch, const ConvGeometry& g, uint8_t x_zp,
                       const PackedConvWeight& w, Isa isa, OutputKind kind,
                       const OutputParams& p, void* out, size_t out_itemsize) {
  PackANeeds needs;
  needs.widen_i16 = isa == Isa::avx2;
  needs.rowsums = !w.gemm.zero_point_is_zero;
  const size_t K4 = w.gemm.K4;
  const size_t block_rows = std::max<size_t>(kMaxMR, kConvBlockBytes / K4 / kMaxMR * kMaxMR);
  ConvJob job{x, g, x_zp, w, isa, kind, p, static_cast<uint8_t*>(out),
              w.Cout * out_itemsize, needs, block_rows};
  const size_t M = batch * job.rows_per_image();
  const size_t blocks = (M + block_rows - 1) / block_rows;
  const size_t threads = static_cast<size_t>(num_threads());
  if (blocks < threads && w.gemm.panels >= threads) {
    // Few output pixels, many channels (late layers at batch 1): split the columns instead.
    for (size_t n = 0; n < batch; ++n) {
      PackedA a = im2col_pack(x + n * g.H * g.W * g.C, g, x_zp, needs);
      gemm_u8s8(a, w.gemm, isa, GemmOptions{}, kind, p,
                static_cast<uint8_t*>(out) + n * job.rows_per_image() * job.out_row_bytes);
    }
    return;
  }
  // Threads take contiguous runs of row blocks; a block too small to be worth a thread
  // (~1M multiply-adds) keeps the whole batch on one.
  const size_t macs_per_block = std::max<size_t>(1, block_rows * K4 * w.gemm.panels * kPanelWidth);
  const size_t min_blocks = std::max<size_t>(1, (size_t{1} << 20) / macs_per_block);
  parallel_for(blocks, min_blocks, [&](size_t b, size_t e) { conv_blocks(job, M, b, e); });
}

}  // namespace needle_qc
