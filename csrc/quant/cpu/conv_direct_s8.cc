// conv_direct_s8.cc: packing, the z_x-bordered input copy, the tile driver and the scalar tile of
// the direct NHWC int8 conv (layout in conv_direct_s8.h). The output stage is the GEMM's own
// (correct_tile / output_tile / output_tile16_avx2), so the numbers are the im2col conv's.
#include "quant/cpu/conv_direct_s8.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "quant/cpu/parallel.h"

namespace needle_qc {

PackedConvDirect pack_conv_direct_s8(const int8_t* w, size_t KH, size_t KW, size_t Cin,
                                     size_t Cout, const int32_t* w_zp, size_t n_zp) {
  PackedConvDirect p;
  p.KH = KH, p.KW = KW, p.Cin = Cin, p.Cout = Cout;
  const size_t run = KW * Cin;
  p.R4 = (run + 3) / 4 * 4;
  std::vector<int8_t> relaid(p.depth() * Cout, 0);  // [KH][R4][Cout], zero rows past each run
  for (size_t kh = 0; kh < KH; ++kh)
    std::memcpy(relaid.data() + kh * p.R4 * Cout, w + kh * run * Cout, run * Cout);
  p.gemm = pack_weight_s8(relaid.data(), p.depth(), Cout, w_zp, n_zp);
  p.gemm.K = KH * run;  // the taps: K * z_x * z_w counts no run padding (colsum has none)
  p.has_zero_point = !p.gemm.zero_point_is_zero;
  for (size_t n = 0; n < Cout; ++n) {  // Σ|w - z_w| over the taps only, as for the GEMM
    int64_t abs_sum = 0;
    for (size_t kh = 0; kh < KH; ++kh)
      for (size_t r = 0; r < run; ++r)
        abs_sum += std::abs(int32_t(relaid[(kh * p.R4 + r) * Cout + n]) - p.gemm.zero_point[n]);
    p.gemm.col_abs[n] = abs_sum;
  }
  return p;
}

namespace {

struct Padded {
  size_t Hp, Wp, image_bytes, row_step;
};

Padded padded_shape(const ConvGeometry& g, bool in_place) {
  Padded s;
  s.Hp = in_place ? g.H : g.H + 2 * g.ph;
  s.Wp = in_place ? g.W : g.W + 2 * g.pw;
  s.row_step = s.Wp * g.C;
  s.image_bytes = s.Hp * s.row_step;
  return s;
}

// Image x[H, W, C] into dst[Hp, Wp, C] with a z_x border; returns the largest byte written.
uint8_t pad_image(const uint8_t* x, const ConvGeometry& g, const Padded& s, uint8_t x_zp,
                  uint8_t* dst) {
  const size_t row = g.W * g.C, side = g.pw * g.C;
  uint8_t mx = (g.ph | g.pw) ? x_zp : 0;
  std::memset(dst, x_zp, g.ph * s.row_step);
  for (size_t h = 0; h < g.H; ++h) {
    uint8_t* d = dst + (g.ph + h) * s.row_step;
    const uint8_t* src = x + h * row;
    std::memset(d, x_zp, side);
    std::memcpy(d + side, src, row);
    std::memset(d + side + row, x_zp, side);
    for (size_t i = 0; i < row; ++i) mx = std::max(mx, src[i]);
  }
  std::memset(dst + (g.ph + g.H) * s.row_step, x_zp, (s.Hp - g.ph - g.H) * s.row_step);
  return mx;
}

// A run reads up to 3 bytes past its end (zero weights): keep them inside the buffer.
constexpr size_t kRunSlack = 64;

// (n, oh, ow) of output pixels, advanced one at a time (no division per pixel).
struct Pixel {
  size_t n, oh, ow;
  void next(const ConvGeometry& g) {
    if (++ow < g.OW) return;
    ow = 0;
    if (++oh < g.OH) return;
    oh = 0;
    ++n;
  }
};

template <size_t MR>
void tile_scalar(const DirectTileArgs& a, const void* panel, int32_t* c, const DirectRequant*) {
  const int8_t* w = static_cast<const int8_t*>(panel);
  for (size_t r = 0; r < MR; ++r) {
    int32_t acc[kPanelWidth] = {};
    for (size_t kh = 0; kh < a.KH; ++kh) {
      const uint8_t* src = a.rows[r] + kh * a.row_step;
      for (size_t d = 0; d < a.R4; ++d) {
        const int8_t* wk = w + ((kh * a.R4 + d) / 4) * 4 * kPanelWidth + d % 4;
        for (size_t j = 0; j < kPanelWidth; ++j) acc[j] += int32_t(src[d]) * wk[j * 4];
      }
    }
    std::memcpy(c + r * kPanelWidth, acc, sizeof(acc));
  }
}

struct DirectJob {
  const uint8_t* src;
  Padded s;
  const ConvGeometry& g;
  const PackedConvDirect& w;
  Isa isa;
  bool fast;
  size_t MR;
  DirectTileFn full, one;
  OutputKind kind;
  const OutputParams& p;
  void* out;
  PackedA patch;  // z_w: rowsum[m] = Σ of pixel m's patch (border included), else empty
  // fused requantization (AVX2, full panels): per column, padded to whole panels; else empty
  std::vector<int32_t> rq_bias;
  std::vector<float> rq_mult;
  std::vector<int32_t> rq_zp;  // z_w per column (padded) where some is nonzero, else empty
  int32_t* sums = nullptr;  // patch.rowsum's data: each tile writes its own pixels'
  int32_t (*patch_sum)(const uint8_t*, size_t, size_t, size_t) = direct_patch_sum;

  // The fused output of panel `panel` for the tile at pixel m0, or null where there is none.
  bool fused(size_t panel, size_t m0, DirectRequant& rq) const {
    const size_t n0 = panel * kPanelWidth;
    if (rq_bias.empty() || n0 + kPanelWidth > w.Cout) return false;
    rq = DirectRequant{rq_bias.data() + n0, rq_zp.empty() ? nullptr : rq_zp.data() + n0,
                       sums ? sums + m0 : nullptr, rq_mult.data() + n0, p.y_zp,
                       float(p.qmin - p.y_zp), float(p.qmax - p.y_zp), p.out_s8,
                       static_cast<uint8_t*>(out) + m0 * w.Cout + n0, w.Cout};
    return true;
  }
};

void output_panel(const DirectJob& job, const int32_t* c, size_t mr, size_t m0, size_t panel) {
  const size_t n0 = panel * kPanelWidth, nc = std::min(kPanelWidth + n0, job.w.Cout) - n0;
#if defined(NEEDLE_QC_X86)
  if (job.isa != Isa::scalar && nc == size_t(kPanelWidth)) {
    output_tile16_avx2(job.kind, c, mr, m0, n0, job.w.gemm, job.patch, job.p, job.out,
                       job.w.Cout);
    return;
  }
#endif
  alignas(64) int32_t acc[kDirectMaxMR * kPanelWidth];
  correct_tile(c, mr, m0, n0, nc, job.w.gemm, job.patch, job.p, acc);
  output_tile(job.kind, acc, mr, m0, n0, nc, job.p, job.out, job.w.Cout);
}

// Tiles [lo, hi) of MR consecutive output pixels (rows of the NHWC output), every panel each.
void run_tiles(const DirectJob& job, size_t pixels, size_t lo, size_t hi) {
  const ConvGeometry& g = job.g;
  const size_t MR = job.MR;
  alignas(64) int32_t c[kDirectMaxMR * kPanelWidth];
  const uint8_t* rows[kDirectMaxMR];
  size_t m0 = lo * MR;
  Pixel px{m0 / (g.OH * g.OW), (m0 / g.OW) % g.OH, m0 % g.OW};
  for (size_t t = lo; t < hi; ++t, m0 += MR) {
    const size_t count = std::min(MR, pixels - m0);
    for (size_t r = 0; r < count; ++r, px.next(g))
      rows[r] = job.src + px.n * job.s.image_bytes + px.oh * g.sh * job.s.row_step +
                px.ow * g.sw * g.C;
    if (job.sums)  // before the output stage of these pixels reads them
      for (size_t r = 0; r < count; ++r)
        job.sums[m0 + r] = job.patch_sum(rows[r], job.s.row_step, g.KH, g.KW * g.C);
    for (size_t panel = 0; panel < job.w.gemm.panels; ++panel) {
      const int8_t* wp = job.w.gemm.panel(panel);
      DirectRequant rq{};
      const DirectRequant* fused = job.fused(panel, m0, rq) ? &rq : nullptr;
      if (count == MR) {
        job.full(DirectTileArgs{rows, job.s.row_step, job.w.KH, job.w.R4}, wp, c, fused);
      } else {
        for (size_t r = 0; r < count; ++r) {
          job.one(DirectTileArgs{rows + r, job.s.row_step, job.w.KH, job.w.R4}, wp,
                  c + r * kPanelWidth, fused);
          rq.y += rq.ldy;  // the next row's output and patch sum (where fused)
          if (rq.patch_sum) ++rq.patch_sum;
        }
      }
      if (!fused) output_panel(job, c, count, m0, panel);
    }
  }
}

// bias - z_x * colsum + K * z_x * z_w (wrapping, as correct_tile), z_w where some is nonzero,
// and the multipliers, one per column.
void fuse_requant(DirectJob& job, int32_t zx) {
  const PackedWeightS8& w = job.w.gemm;
  const size_t n = w.panels * kPanelWidth;
  job.rq_bias.assign(n, 0);
  job.rq_mult.assign(n, 0.0f);
  if (job.sums) job.rq_zp.assign(n, 0);  // the patch sums are taken where some z_w != 0
  for (size_t j = 0; j < job.w.Cout; ++j) {
    uint32_t v = uint32_t(job.p.bias_i32 ? job.p.bias_i32[j] : 0);
    v -= uint32_t(zx) * uint32_t(w.colsum[j]);
    v += uint32_t(w.K) * uint32_t(zx) * uint32_t(w.zero_point[j]);
    job.rq_bias[j] = int32_t(v);
    if (!job.rq_zp.empty()) job.rq_zp[j] = w.zero_point[j];
    job.rq_mult[j] = job.p.multiplier[job.p.multiplier_per_col ? j : 0];
  }
}

// A scratch buffer per calling thread, kept between calls (no page faults per call).
AlignedVector<uint8_t>& scratch(size_t bytes) {
  thread_local AlignedVector<uint8_t> buf;
  if (buf.size() < bytes) buf.resize(bytes);
  return buf;
}

}  // namespace

int32_t direct_patch_sum(const uint8_t* p, size_t row_step, size_t KH, size_t run) {
  uint32_t s = 0;
  for (size_t kh = 0; kh < KH; ++kh, p += row_step)
    for (size_t d = 0; d < run; ++d) s += p[d];
  return static_cast<int32_t>(s);
}

DirectTileFn direct_tile_scalar(size_t mr) {
  switch (mr) {
    case 1: return tile_scalar<1>;
    case 2: return tile_scalar<2>;
    case 3: return tile_scalar<3>;
    case 4: return tile_scalar<4>;
    case 6: return tile_scalar<6>;
    default: return tile_scalar<8>;
  }
}

size_t direct_tile_rows(Isa isa, bool fast) {
  if (isa == Isa::scalar) return 4;
  return fast ? 4 : 2;
}

int direct_input_max(const uint8_t* x, size_t n, const ConvGeometry& g, uint8_t x_zp) {
  uint8_t mx = (g.ph | g.pw) ? x_zp : 0;
  const size_t bytes = n * g.H * g.W * g.C;
  for (size_t i = 0; i < bytes; ++i) mx = std::max(mx, x[i]);
  return mx;
}

bool conv2d_direct_u8s8(const uint8_t* x, size_t batch, const ConvGeometry& g, uint8_t x_zp,
                        const PackedConvDirect& w, Isa isa, int a_max, OutputKind kind,
                        const OutputParams& p, void* out) {
  const bool fast = a_max >= 0 && isa != Isa::scalar && !w.has_zero_point;
  // Without padding and with whole-quad runs nothing is read past an image: use x itself.
  const bool in_place = g.ph == 0 && g.pw == 0 && w.R4 == g.KW * g.C;
  const Padded s = padded_shape(g, in_place);
  const uint8_t* src = x;
  int seen = 0;  // the largest input byte, padding included (checked against a_max)
  if (!in_place) {
    uint8_t* dst = scratch(batch * s.image_bytes + kRunSlack).data();
    std::vector<uint8_t> image_max(batch, 0);
    parallel_for(batch, std::max<size_t>(1, (size_t{1} << 16) / (s.image_bytes + 1)),
                 [&](size_t b, size_t e) {
                   for (size_t n = b; n < e; ++n)
                     image_max[n] = pad_image(x + n * g.H * g.W * g.C, g, s, x_zp,
                                              dst + n * s.image_bytes);
                 });
    for (uint8_t m : image_max) seen = std::max<int>(seen, m);
    src = dst;
  } else if (a_max >= 0) {
    seen = direct_input_max(x, batch, g, x_zp);
  }
  if (seen > a_max && a_max >= 0) return false;  // a wrong claim: no numbers at all
  const int32_t zx = x_zp;
  OutputParams q = p;
  q.a_zp = &zx;
  q.a_zp_per_row = false;
  const size_t MR = direct_tile_rows(isa, fast);
  DirectTileFn full = isa == Isa::scalar ? nullptr : direct_tile_avx2(MR, fast);
  DirectTileFn one = isa == Isa::scalar ? nullptr : direct_tile_avx2(1, fast);
  if (!full) full = direct_tile_scalar(MR);
  if (!one) one = direct_tile_scalar(1);
  const size_t pixels = batch * g.OH * g.OW, tiles = (pixels + MR - 1) / MR;
  DirectJob job{src, s, g, w, isa, fast, MR, full, one, kind, q, out, PackedA{}, {}, {}};
  if (w.has_zero_point) {
    job.patch.rowsum.resize(pixels);  // - z_w * Σ x, in the output stage
    job.sums = job.patch.rowsum.data();
    if (isa != Isa::scalar) job.patch_sum = direct_patch_sum_avx2;
  }
  if (kind == OutputKind::requant && isa != Isa::scalar) fuse_requant(job, zx);
  // ~1M multiply-adds per thread before another one is worth waking
  const size_t macs = std::max<size_t>(1, MR * w.depth() * w.gemm.panels * kPanelWidth);
  parallel_for(tiles, std::max<size_t>(1, (size_t{1} << 20) / macs),
               [&](size_t lo, size_t hi) { run_tiles(job, pixels, lo, hi); });
  return true;
}

#if !defined(NEEDLE_QC_X86)
DirectTileFn direct_tile_avx2(size_t, bool) { return nullptr; }
int32_t direct_patch_sum_avx2(const uint8_t* p, size_t row_step, size_t KH, size_t run) {
  return direct_patch_sum(p, row_step, KH, run);
}
#endif

}  // namespace needle_qc
