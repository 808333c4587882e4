// weight_panels.h: the shared drivers of the weight-only GEMMs (fp16/bf16/int4 and int8/uint8),
// threads over packed column panels in both:
//   run_weight_panels   few rows: a panel kernel decodes each k-row and feeds MR rows at once;
//   run_weight_blocked  many rows: a block of k-rows of one panel is decoded once into an L1 tile
//                       (16 KiB of fp32, never the whole matrix) and every row of x runs over it,
//                       so the decoding is paid once per 192 rows instead of once per MR.
// Both give every output the same FMA sequence from +0 in k order, then + bias: the same bits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "quant/cpu/parallel.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

// PanelFn: void(size_t mr, const float* x, size_t ldx, const W& w, size_t panel, float* tile)
// writes an mr x kPanelWidth tile of x @ W for one panel. W has K, N and panels.
template <size_t MR, class W, class PanelFn>
void run_weight_panels(PanelFn panel_fn, const float* x, size_t M, const W& w, const float* bias,
                       float* y) {
  const size_t min_panels = std::max<size_t>(1, (size_t{1} << 18) / std::max<size_t>(1, M * w.K));
  parallel_for(w.panels, min_panels, [&](size_t begin, size_t end) {
    alignas(32) float tile[MR * kPanelWidth];
    for (size_t panel = begin; panel < end; ++panel) {
      const size_t n0 = panel * kPanelWidth, nc = std::min<size_t>(kPanelWidth, w.N - n0);
      for (size_t m0 = 0; m0 < M; m0 += MR) {
        const size_t mr = std::min(MR, M - m0);
        panel_fn(mr, x + m0 * w.K, w.K, w, panel, tile);
        for (size_t r = 0; r < mr; ++r)
          for (size_t j = 0; j < nc; ++j)
            y[(m0 + r) * w.N + n0 + j] = tile[r * kPanelWidth + j] + (bias ? bias[n0 + j] : 0.0f);
      }
    }
  });
}

constexpr size_t kBlockK = 256;         // decoded k-rows per tile: 256 x 16 fp32 = 16 KiB
constexpr size_t kBlockM = 192;         // rows of x per block: 192 x 256 fp32 = 192 KiB, in L2
constexpr size_t kBlockedMinRows = 8;   // from here on decoding once per block pays

// x[0..rows, 0..kc) (row stride ldx) -> xp, groups of kFmaRows rows interleaved by k:
// xp[g * kFmaRows * kc + k * kFmaRows + r] = x[g * kFmaRows + r, k] (missing rows read 0).
inline void pack_rows_interleaved(const float* x, size_t ldx, size_t rows, size_t kc,
                                  std::vector<float>& xp) {
  const size_t groups = (rows + kFmaRows - 1) / kFmaRows;
  xp.assign(groups * kFmaRows * kc, 0.0f);
  for (size_t m = 0; m < rows; ++m) {
    float* dst = xp.data() + (m / kFmaRows) * kFmaRows * kc + m % kFmaRows;
    for (size_t k = 0; k < kc; ++k) dst[k * kFmaRows] = x[m * ldx + k];
  }
}

// DecodeFn: void(const W& w, size_t panel, size_t k0, size_t kc, float* tile); FmaFn as
// fma_rows_x16_avx2. x [M, K] -> y [M, N] (+ bias); y holds the running sums of full panels,
// a 16-wide buffer those of the last, partial one.
template <class W, class DecodeFn, class FmaFn>
void run_weight_blocked(DecodeFn decode, FmaFn fma_rows, const float* x, size_t M, const W& w,
                        const float* bias, float* y) {
  const size_t K = w.K, N = w.N;
  const size_t min_panels = std::max<size_t>(1, (size_t{1} << 18) / std::max<size_t>(1, M * K));
  parallel_for(w.panels, min_panels, [&](size_t begin, size_t end) {
    alignas(64) float tile[kBlockK * kPanelWidth];
    std::vector<float> tail, xp;
    for (size_t mb = 0; mb < M; mb += kBlockM) {
      const size_t mc = std::min(kBlockM, M - mb);
      for (size_t k0 = 0; k0 < K; k0 += kBlockK) {
        const size_t kc = std::min(kBlockK, K - k0);
        pack_rows_interleaved(x + mb * K + k0, K, mc, kc, xp);
        for (size_t panel = begin; panel < end; ++panel) {
          const size_t n0 = panel * kPanelWidth;
          const bool full = n0 + kPanelWidth <= N;
          if (!full) tail.resize(mc * kPanelWidth);
          float* acc = full ? y + mb * N + n0 : tail.data();
          const size_t ld = full ? N : kPanelWidth;
          decode(w, panel, k0, kc, tile);
          for (size_t m0 = 0; m0 < mc; m0 += kFmaRows)
            fma_rows(std::min(kFmaRows, mc - m0), xp.data() + m0 * kc, tile, kc, acc + m0 * ld, ld,
                     k0 == 0);
        }
      }
      for (size_t panel = begin; panel < end; ++panel) {  // + bias, the partial panel copied out
        const size_t n0 = panel * kPanelWidth, nc = std::min<size_t>(kPanelWidth, N - n0);
        for (size_t r = 0; r < mc; ++r) {
          float* out = y + (mb + r) * N + n0;
          const float* sum = nc == kPanelWidth ? out : tail.data() + r * kPanelWidth;
          for (size_t j = 0; j < nc; ++j) out[j] = sum[j] + (bias ? bias[n0 + j] : 0.0f);
        }
      }
    }
  });
}

}  // namespace needle_qc
