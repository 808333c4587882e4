// gemm.cc: the int8 GEMM driver, a good place to start reading. Loop nest:
//
//   for each block of MC rows (so the packed rows stay in L2)      (threads split the panels)
//     for each 16-column panel p of W
//       for each MR-row tile: ukernel -> raw int32 tile -> correct_tile -> output_tile
#include <algorithm>

#include "quant.h"

namespace needle_qc {

constexpr size_t kRowBlock = 96;  // MC: rows of A per L2-resident block

using TileFn = void (*)(size_t mr, const PackedA& a, size_t m0, const PackedWeightS8& w,
                        size_t panel, int32_t* c);

static void tile_scalar(size_t mr, const PackedA& a, size_t m0, const PackedWeightS8& w,
                        size_t panel, int32_t* c) {
  ukernel_u8s8_scalar(mr, a.K4, a.u8.data() + m0 * a.K4, a.K4, w.panel(panel), c);
}

#if defined(NEEDLE_QC_X86)
static void tile_avx2_exact(size_t mr, const PackedA& a, size_t m0, const PackedWeightS8& w,
                            size_t panel, int32_t* c) {
  ukernel_i16_avx2_exact(mr, a.K4, a.i16.data() + m0 * a.K4, a.K4, w.panel(panel), c);
}
static void tile_avx2_fast(size_t mr, const PackedA& a, size_t m0, const PackedWeightS8& w,
                           size_t panel, int32_t* c) {
  ukernel_u8s8_avx2_maddubs(mr, a.K4, a.u8.data() + m0 * a.K4, a.K4, w.panel(panel), c);
}
static void tile_vnni(size_t mr, const PackedA& a, size_t m0, const PackedWeightS8& w,
                      size_t panel, int32_t* c) {
  ukernel_u8s8_avx512vnni(mr, a.K4, a.u8.data() + m0 * a.K4, a.K4, w.panel(panel), c);
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

static void gemm_panels(size_t p_begin, size_t p_end, const PackedA& a, const PackedWeightS8& w,
                        TileFn tile, size_t MR, bool simd_output, OutputKind kind,
                        const OutputParams& p, void* out) {
  alignas(64) int32_t c[kMaxMR * kPanelWidth];
  alignas(64) int32_t acc[kMaxMR * kPanelWidth];
  for (size_t mb = 0; mb < a.M; mb += kRowBlock) {
    const size_t m_end = std::min(a.M, mb + kRowBlock);
    for (size_t panel = p_begin; panel < p_end; ++panel) {
      const size_t n0 = panel * kPanelWidth, nc = std::min<size_t>(kPanelWidth, w.N - n0);
      for (size_t m0 = mb; m0 < m_end; m0 += MR) {
        const size_t mr = std::min(MR, m_end - m0);
        tile(mr, a, m0, w, panel, c);
#if defined(NEEDLE_QC_X86)
        if (simd_output && nc == kPanelWidth) {
          output_tile16_avx2(kind, c, mr, m0, n0, w, a, p, out, w.N);
          continue;
        }
#endif
        correct_tile(c, mr, m0, n0, nc, w, a, p, acc);
        output_tile(kind, acc, mr, m0, n0, nc, p, out, w.N);
      }
    }
  }
}

void gemm_u8s8(const PackedA& a, const PackedWeightS8& w, Isa isa, const GemmOptions& opt,
               OutputKind kind, const OutputParams& p, void* out) {
  const bool fast = opt.allow_fast && isa == Isa::avx2;
  TileFn tile = choose_tile(isa, fast);
  const size_t MR = ukernel_mr(isa, fast);
  // Tiny problems are not worth a thread; each thread needs ~1M multiply-adds to pay off.
  const size_t macs_per_panel = std::max<size_t>(1, a.M * a.K4 * kPanelWidth);
  const size_t min_panels = std::max<size_t>(1, (size_t{1} << 20) / macs_per_panel);
  parallel_for(w.panels, min_panels, [&](size_t begin, size_t end) {
    gemm_panels(begin, end, a, w, tile, MR, isa != Isa::scalar, kind, p, out);
  });
}

}  // namespace needle_qc
