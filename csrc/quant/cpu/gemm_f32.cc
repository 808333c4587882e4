// gemm_f32.cc: packing with a compact last panel and the tile driver of gemm_f32_packed.
#include "quant/cpu/gemm_f32.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "quant/cpu/conv_f32.h"
#include "quant/cpu/parallel.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

void pack_gemm_f32(const float* w, size_t k, size_t n, float* packed) {
  const size_t nr = conv_f32_panel(n), full = n / nr, tail = n % nr;
  for (size_t p = 0; p < full; ++p)
    for (size_t d = 0; d < k; ++d)
      for (size_t j = 0; j < nr; ++j) packed[(p * k + d) * nr + j] = w[d * n + p * nr + j];
  float* last = packed + full * k * nr;
  for (size_t d = 0; d < k; ++d)
    for (size_t j = 0; j < tail; ++j) last[d * tail + j] = w[d * n + full * nr + j];
}

namespace {

// What every tile of one call shares.
struct TileJob {
  ConvTileFn tiles[12];  // [m - 1]: the tile of m rows, m <= mr
  size_t mr, nr, k, n;
  const float* const* panels;  // n / NR full panels, then the compact last one if any
  const float* panel_bias;     // the bias zero-padded to whole panels, or nullptr
  bool relu;
  size_t group;  // rows of a unit of work
};

// The tile of rows [m0, m0 + rows_here) x panel p for K block [k0, k0 + kc): the first block
// stored to y, each later one added onto it in the tile (Needle's order: block + y), the bias
// and ReLU with the last block.
void run_tile(const TileJob& job, const float* a, size_t m0, size_t rows_here, size_t p,
              size_t k0, size_t kc, float* y) {
  const float* rows[12];
  for (size_t r = 0; r < rows_here; ++r) rows[r] = a + (m0 + r) * job.k + k0;
  const size_t col = p * job.nr, cols = std::min(job.nr, job.n - col);  // = its row stride
  const bool last = k0 + kc == job.k;
  const ConvTileOut out{last && job.panel_bias ? job.panel_bias + col : nullptr,
                        last && job.relu, y + m0 * job.n + col, job.n, cols, k0 != 0, cols};
  job.tiles[rows_here - 1](rows, 1, kc, job.panels[p] + k0 * cols, out);
}

// One unit of work: rows [r0, r1) x panel p, K block by K block, the panel's K block swept over
// every tile of the rows while it sits in L1.
void run_unit(const TileJob& job, const float* a, size_t r0, size_t r1, size_t p, float* y) {
  for (size_t k0 = 0; k0 < job.k; k0 += kGemmF32KBlock) {
    const size_t kc = std::min(kGemmF32KBlock, job.k - k0);
    for (size_t m0 = r0; m0 < r1; m0 += job.mr)
      run_tile(job, a, m0, std::min(job.mr, r1 - m0), p, k0, kc, y);
  }
}

// Claims units (panel-major: row group g of panel p is unit p * groups + g) until none is left.
// Whichever thread is free takes the next one, so a worker that wakes late, or whose core another
// process holds, leaves its share to the others (a static split of two halves then ran at one
// thread's speed, and unequal halves left one thread 59 % of the work at batch 64).
void claim_units(const TileJob& job, const float* a, size_t m, size_t groups, size_t units,
                 std::atomic<size_t>& next, float* y) {
  for (size_t u = next.fetch_add(1); u < units; u = next.fetch_add(1)) {
    const size_t p = u / groups, r0 = u % groups * job.group;
    run_unit(job, a, r0, std::min(m, r0 + job.group), p, y);
  }
}

}  // namespace

void gemm_f32_packed(const float* a, size_t m, size_t k, const float* packed, size_t n, float* y,
                     const float* bias, bool relu) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // the empty sum +0, then the bias and ReLU as numpy's add and maximum
    for (size_t r = 0; r < m; ++r)
      for (size_t j = 0; j < n; ++j) {
        const float v = bias ? 0.0f + bias[j] : 0.0f;
        y[r * n + j] = relu ? std::max(v, 0.0f) : v;
      }
    return;
  }
  const size_t nr = conv_f32_panel(n), mr = conv_f32_rows(nr), kc = std::min(k, kGemmF32KBlock);
  const size_t full_panels = n / nr, tail = n % nr;
  const bool simd = selected_isa() != Isa::scalar;
  std::vector<float> panel_bias(bias ? (full_panels + (tail ? 1 : 0)) * nr : 0, 0.0f);
  if (bias) std::copy(bias, bias + n, panel_bias.begin());
  std::vector<const float*> panels;  // the compact last panel read in place, masked
  for (size_t p = 0; p < full_panels + (tail ? 1 : 0); ++p) panels.push_back(packed + p * k * nr);
  // units of ~16 KiB of a's rows (one K block): they stay in L1 while a panel's K block streams
  TileJob job{{}, mr, nr, k, n, panels.data(), bias ? panel_bias.data() : nullptr, relu,
              mr * std::max<size_t>(1, (4096 / kc) / mr)};
  for (size_t r = 1; r <= mr; ++r) {
    ConvTileFn tile = simd ? conv_f32_tile_avx2(r, nr) : nullptr;
    job.tiles[r - 1] = tile ? tile : conv_f32_tile_scalar(r, nr);
  }
  const size_t groups = (m + job.group - 1) / job.group, units = groups * panels.size();
  // a worker for every ~0.5 Mflop (~5 us of one core: a wake-up pays for itself)
  const size_t workers = std::min({static_cast<size_t>(num_threads()),
                                   std::max<size_t>(1, 2 * m * k * n >> 19), units});
  std::atomic<size_t> next{0};
  parallel_for(workers, 1, [&](size_t, size_t) { claim_units(job, a, m, groups, units, next, y); });
}

}  // namespace needle_qc
