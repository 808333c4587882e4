// gemm.cc: the int8 GEMM driver, a good place to start reading. Loop nest:
//
//   for each block of MC rows (so the packed rows stay in L2)      (threads split the panels)
//     for each group of NP adjacent 16-column panels of W       (AVX2: expand their column terms)
//       for each MR-row tile: ukernel -> NP raw int32 tiles -> correct_tile -> output_tile
//                                                             (AVX2: output_rows_avx2)
//
// Few rows (M <= kGemvRows, the GEMV case) take one row tile over four panels, so the work is a
// stream over the packed weights split between the threads by columns.
#include <algorithm>

#include "quant/cpu/output_panel.h"
#include "quant/cpu/quant.h"
#include "quant/cpu/ukernel_panels.h"

namespace needle_qc {

constexpr size_t kRowBlock = 96;  // MC: rows of A per L2-resident block
constexpr size_t kGemvRows = 4;   // M at or below this: GEMV-style tiles

using TileFn = void (*)(size_t mr, size_t np, const PackedA& a, size_t m0,
                        const PackedWeightS8& w, size_t panel, int32_t* c);

static size_t panel_stride(const PackedWeightS8& w) { return w.K4 * kPanelWidth; }

static void tile_scalar(size_t mr, size_t np, const PackedA& a, size_t m0,
                        const PackedWeightS8& w, size_t panel, int32_t* c) {
  for (size_t p = 0; p < np; ++p)
    ukernel_u8s8_scalar(mr, a.K4, a.u8 + m0 * a.K4, a.K4, w.panel(panel + p),
                        c + p * kTileStride);
}

#if defined(NEEDLE_QC_X86)
static void tile_avx2_exact(size_t mr, size_t np, const PackedA& a, size_t m0,
                            const PackedWeightS8& w, size_t panel, int32_t* c) {
  for (size_t p = 0; p < np; ++p)
    ukernel_i16_avx2_exact(mr, a.K4, a.i16.data() + m0 * a.K4, a.K4, w.panel(panel + p),
                           c + p * kTileStride);
}
static void tile_avx2_fast(size_t mr, size_t np, const PackedA& a, size_t m0,
                           const PackedWeightS8& w, size_t panel, int32_t* c) {
  for (size_t p = 0; p < np; ++p)
    ukernel_u8s8_avx2_maddubs(mr, a.K4, a.u8 + m0 * a.K4, a.K4, w.panel(panel + p),
                              c + p * kTileStride);
}
static void tile_vnni(size_t mr, size_t np, const PackedA& a, size_t m0, const PackedWeightS8& w,
                      size_t panel, int32_t* c) {
  ukernel_u8s8_avx512vnni_panels(mr, np, a.K4, a.u8 + m0 * a.K4, a.K4, w.panel(panel),
                                 panel_stride(w), c);
}
#endif

static TileFn choose_tile(Isa isa, bool fast) {
#if defined(NEEDLE_QC_X86)
  if (isa == Isa::avx512vnni) return tile_vnni;
  if (isa == Isa::avx2) return fast ? tile_avx2_fast : tile_avx2_exact;
#endif
  (void)isa;
  (void)fast;
  return tile_scalar;
}

// Tile shape: rows per tile (MR) and panels per tile (NP).
struct TileShape {
  size_t MR, NP;
};

static TileShape choose_shape(Isa isa, bool fast, size_t M) {
  if (isa != Isa::avx512vnni) return {ukernel_mr(isa, fast), 1};
  if (M <= kGemvRows) return {std::max<size_t>(1, M), 4};
  return {ukernel_mr(isa, fast), 2};
}

struct GemmJob {
  const PackedA& a;
  const PackedWeightS8& w;
  TileFn tile;
  TileShape shape;
  Isa isa;  // the output stage's: AVX-512 / AVX2 for full 16-column tiles, else portable
  OutputKind kind;
  const OutputParams& p;
  void* out;
};

static void output_panel(const GemmJob& job, const int32_t* c, size_t mr, size_t m0,
                         size_t panel, int32_t* acc) {
  const size_t n0 = panel * kPanelWidth, nc = std::min<size_t>(kPanelWidth, job.w.N - n0);
#if defined(NEEDLE_QC_X86)
  if (job.isa == Isa::avx512vnni && nc == kPanelWidth) {
    output_tile16_avx512(job.kind, c, mr, m0, n0, job.w, job.a, job.p, job.out, job.w.N);
    return;
  }
  if (job.isa == Isa::avx2 && nc == kPanelWidth) {
    output_tile16_avx2(job.kind, c, mr, m0, n0, job.w, job.a, job.p, job.out, job.w.N);
    return;
  }
#endif
  correct_tile(c, mr, m0, n0, nc, job.w, job.a, job.p, acc);
  output_tile(job.kind, acc, mr, m0, n0, nc, job.p, job.out, job.w.N);
}

// AVX2: the output stage reads a panel's column terms expanded once for all its row tiles
// (the K = 32 vocabulary projection spent as long in per-tile set-up as in its microkernel).
static bool terms_once(const GemmJob& job) {
#if defined(NEEDLE_QC_X86)
  return job.isa == Isa::avx2;
#else
  (void)job;
  return false;
#endif
}

static void fill_terms(const GemmJob& job, size_t panel, PanelTerms& t) {
#if defined(NEEDLE_QC_X86)
  panel_terms_avx2(job.w, job.p, panel, t);
#else
  panel_terms(job.w, job.p, panel, t);
#endif
}

static void output_rows(const GemmJob& job, const int32_t* c, size_t mr, size_t m0,
                        const PanelTerms* terms, size_t panel, int32_t* acc) {
#if defined(NEEDLE_QC_X86)
  if (terms)
    return output_rows_avx2(job.kind, c, mr, m0, *terms, job.w, job.a, job.p, job.out, job.w.N);
#endif
  (void)terms;
  output_panel(job, c, mr, m0, panel, acc);
}

static void gemm_panels(const GemmJob& job, size_t p_begin, size_t p_end) {
  alignas(64) int32_t c[kMaxPanelsPerTile * kTileStride];
  alignas(64) int32_t acc[kMaxMR * kPanelWidth];
  PanelTerms terms[kMaxPanelsPerTile];
  const size_t M = job.a.M, MR = job.shape.MR, NP = job.shape.NP;
  const bool once = terms_once(job);
  for (size_t mb = 0; mb < M; mb += kRowBlock) {
    const size_t m_end = std::min(M, mb + kRowBlock);
    for (size_t panel = p_begin; panel < p_end; panel += NP) {
      const size_t np = std::min(NP, p_end - panel);
      if (once)
        for (size_t p = 0; p < np; ++p) fill_terms(job, panel + p, terms[p]);
      for (size_t m0 = mb; m0 < m_end; m0 += MR) {
        const size_t mr = std::min(MR, m_end - m0);
        job.tile(mr, np, job.a, m0, job.w, panel, c);
        for (size_t p = 0; p < np; ++p)
          output_rows(job, c + p * kTileStride, mr, m0, once ? terms + p : nullptr, panel + p,
                      acc);
      }
    }
  }
}

// Several row tiles per block, K > kDepthBlock (VNNI; the AVX2 vpmaddubsw tile): the depth is
// split into blocks so the weight block of one panel group (VNNI: 2 panels x 512 deep = 16 KiB;
// AVX2: 1 panel, 8 KiB) stays in L1 while every row tile of the block runs over it; the raw sums
// of all row tiles wait in `c` until the last depth block, then go through the output stage.
// Integer sums wrap, so the split changes no bit.
constexpr size_t kDepthBlock = 512;
constexpr size_t kMinDepthMR = 6;  // the smallest MR that takes this path (AVX2 vpmaddubsw: 6)
constexpr size_t kTilesPerBlock = (kRowBlock + kMinDepthMR - 1) / kMinDepthMR;

// One row tile over np adjacent panels and kc depths, added to c when `accumulate`.
using DepthTileFn = void (*)(size_t mr, size_t np, size_t kc, const uint8_t* a, size_t lda,
                             const int8_t* w, size_t panel_stride, int32_t* c, bool accumulate);

#if defined(NEEDLE_QC_X86)
static void depth_tile_avx2_fast(size_t mr, size_t np, size_t kc, const uint8_t* a, size_t lda,
                                 const int8_t* w, size_t panel_stride, int32_t* c,
                                 bool accumulate) {
  for (size_t p = 0; p < np; ++p)
    ukernel_u8s8_avx2_maddubs(mr, kc, a, lda, w + p * panel_stride, c + p * kTileStride,
                              accumulate);
}
static void depth_tile_vnni(size_t mr, size_t np, size_t kc, const uint8_t* a, size_t lda,
                            const int8_t* w, size_t panel_stride, int32_t* c, bool accumulate) {
  ukernel_u8s8_avx512vnni_panels(mr, np, kc, a, lda, w, panel_stride, c, accumulate);
}
#endif

static void gemm_panels_depth_blocked(const GemmJob& job, DepthTileFn tile, size_t p_begin,
                                      size_t p_end) {
  alignas(64) int32_t c[kTilesPerBlock * kMaxPanelsPerTile * kTileStride];
  alignas(64) int32_t acc[kMaxMR * kPanelWidth];
  PanelTerms terms;
  const size_t M = job.a.M, K4 = job.a.K4, MR = job.shape.MR, NP = job.shape.NP;
  const size_t stride = panel_stride(job.w);
  const bool once = terms_once(job);
  constexpr size_t kTileInts = kMaxPanelsPerTile * kTileStride;
  // Equal blocks of at most kDepthBlock (576 -> 2 x 288, not 512 + 64), whole k-quads.
  const size_t blocks = (K4 + kDepthBlock - 1) / kDepthBlock;
  const size_t depth = ((K4 + blocks - 1) / blocks + 3) / 4 * 4;
  for (size_t mb = 0; mb < M; mb += kRowBlock) {
    const size_t m_end = std::min(M, mb + kRowBlock);
    for (size_t panel = p_begin; panel < p_end; panel += NP) {
      const size_t np = std::min(NP, p_end - panel);
      for (size_t k0 = 0; k0 < K4; k0 += depth) {
        const size_t kc = std::min(depth, K4 - k0);
        for (size_t m0 = mb, t = 0; m0 < m_end; m0 += MR, ++t)
          tile(std::min(MR, m_end - m0), np, kc, job.a.u8 + m0 * K4 + k0, K4,
               job.w.panel(panel) + k0 * kPanelWidth, stride, c + t * kTileInts, k0 > 0);
      }
      for (size_t p = 0; p < np; ++p) {
        if (once) fill_terms(job, panel + p, terms);
        for (size_t m0 = mb, t = 0; m0 < m_end; m0 += MR, ++t)
          output_rows(job, c + t * kTileInts + p * kTileStride, std::min(MR, m_end - m0), m0,
                      once ? &terms : nullptr, panel + p, acc);
      }
    }
  }
}

static void run_panels(const GemmJob& job, size_t p_begin, size_t p_end) {
#if defined(NEEDLE_QC_X86)
  if (job.a.M > job.shape.MR && job.a.K4 > kDepthBlock && job.shape.MR >= kMinDepthMR) {
    if (job.isa == Isa::avx512vnni)
      return gemm_panels_depth_blocked(job, depth_tile_vnni, p_begin, p_end);
    if (job.tile == tile_avx2_fast)
      return gemm_panels_depth_blocked(job, depth_tile_avx2_fast, p_begin, p_end);
  }
#endif
  gemm_panels(job, p_begin, p_end);
}

static GemmJob make_job(const PackedA& a, const PackedWeightS8& w, Isa isa,
                        const GemmOptions& opt, OutputKind kind, const OutputParams& p,
                        void* out) {
  const bool fast = opt.allow_fast && isa == Isa::avx2;
  return GemmJob{a, w, choose_tile(isa, fast), choose_shape(isa, fast, a.M), isa, kind, p, out};
}

void gemm_u8s8_on_caller(const PackedA& a, const PackedWeightS8& w, Isa isa,
                         const GemmOptions& opt, OutputKind kind, const OutputParams& p,
                         void* out) {
  run_panels(make_job(a, w, isa, opt, kind, p, out), 0, w.panels);
}

void gemm_u8s8(const PackedA& a, const PackedWeightS8& w, Isa isa, const GemmOptions& opt,
               OutputKind kind, const OutputParams& p, void* out) {
  const GemmJob job = make_job(a, w, isa, opt, kind, p, out);
  // Tiny problems are not worth a thread; each thread needs ~1M multiply-adds to pay off.
  const size_t macs_per_panel = std::max<size_t>(1, a.M * a.K4 * kPanelWidth);
  const size_t min_panels = std::max<size_t>(1, (size_t{1} << 20) / macs_per_panel);
  parallel_for(w.panels, min_panels,
               [&](size_t begin, size_t end) { run_panels(job, begin, end); });
}

}  // namespace needle_qc
