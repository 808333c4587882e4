// weight_panels.h: the shared driver of the weight-only GEMMs (fp16/bf16/int4 and int8/uint8):
// threads over packed column panels, MR rows at a time, a panel kernel per tile, then + bias.
#pragma once

#include <algorithm>
#include <cstddef>

#include "parallel.h"
#include "quant.h"

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

}  // namespace needle_qc
