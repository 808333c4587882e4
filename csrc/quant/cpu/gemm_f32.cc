// gemm_f32.cc: packing with a compact last panel and the tile driver of gemm_f32_packed.
#include "quant/cpu/gemm_f32.h"

#include <algorithm>
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
  ConvTileFn full, one;
  size_t mr, nr, k, n;
  const float* const* panels;  // n / NR full panels, then the widened last one if any
  const float* bias;           // N entries or nullptr
  const float* panel_bias;     // the bias zero-padded to whole panels (for the tiles), or nullptr
  bool relu;
};

// bias then ReLU on rows x cols of y (row stride n), after the tile's last K block
void finish_tile(const TileJob& job, float* y, size_t rows, size_t col, size_t cols) {
  for (size_t r = 0; r < rows; ++r) {
    float* __restrict row = y + r * job.n + col;
    if (job.bias) {
      const float* __restrict b = job.bias + col;
      for (size_t j = 0; j < cols; ++j) row[j] = row[j] + b[j];
    }
    if (job.relu)
      for (size_t j = 0; j < cols; ++j) row[j] = row[j] < 0.0f ? 0.0f : row[j];
  }
}

// The tile of rows [m0, m0 + rows_here) x panel p for K block [k0, k0 + kc): stored to y for
// the first block, else through `tmp` and added (Needle's order: block + y).
void run_tile(const TileJob& job, const float* a, size_t m0, size_t rows_here, size_t p,
              size_t k0, size_t kc, float* y, const float** rows, float* tmp) {
  const bool first = k0 == 0;
  const size_t col = p * job.nr, cols = std::min(job.nr, job.n - col);
  const float* panel = job.panels[p] + k0 * job.nr;
  for (size_t r = 0; r < rows_here; ++r) rows[r] = a + (m0 + r) * job.k + k0;
  // one K block: the tile itself adds the bias and applies ReLU after its chain
  const bool single = first && kc == job.k;
  ConvTileOut out{single && job.panel_bias ? job.panel_bias + col : nullptr, single && job.relu,
                  first ? y + m0 * job.n + col : tmp, first ? job.n : job.nr, cols};
  if (rows_here == job.mr) {
    job.full(rows, 1, kc, panel, out);
  } else {
    for (size_t r = 0; r < rows_here; ++r, out.y += out.ldy) job.one(rows + r, 1, kc, panel, out);
  }
  if (!first)
    for (size_t r = 0; r < rows_here; ++r)
      for (size_t j = 0; j < cols; ++j) {
        float& dst = y[(m0 + r) * job.n + col + j];
        dst = tmp[r * job.nr + j] + dst;
      }
  if (!single && k0 + kc == job.k && (job.bias || job.relu))
    finish_tile(job, y + m0 * job.n, rows_here, col, cols);
}

// Blocks of work: rows [r0, r1) x panels [p0, p1), K block by K block, each panel's K block
// swept over every tile of the rows while it sits in L1.
struct Block {
  size_t r0, r1, p0, p1;
};

void run_block(const TileJob& job, const float* a, const Block& b, float* y, const float** rows,
               float* tmp) {
  for (size_t k0 = 0; k0 < job.k; k0 += kGemmF32KBlock) {
    const size_t kc = std::min(kGemmF32KBlock, job.k - k0);
    for (size_t p = b.p0; p < b.p1; ++p)
      for (size_t m0 = b.r0; m0 < b.r1; m0 += job.mr)
        run_tile(job, a, m0, std::min(job.mr, b.r1 - m0), p, k0, kc, y, rows, tmp);
  }
}

}  // namespace

void gemm_f32_packed(const float* a, size_t m, size_t k, const float* packed, size_t n, float* y,
                     const float* bias, bool relu) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(y, y + m * n, 0.0f);
    TileJob zero{};
    zero.n = n, zero.bias = bias, zero.relu = relu;
    finish_tile(zero, y, m, 0, n);
    return;
  }
  const size_t nr = conv_f32_panel(n), mr = conv_f32_rows(nr), kc = std::min(k, kGemmF32KBlock);
  const size_t full_panels = n / nr, tail = n % nr;
  const bool simd = selected_isa() != Isa::scalar;
  // the compact last panel widened to NR columns for the tiles (k * NR floats, per call)
  std::vector<float> last(tail ? k * nr : 0, 0.0f);
  const float* compact = packed + full_panels * k * nr;
  for (size_t d = 0; d < k && tail; ++d)
    std::copy(compact + d * tail, compact + (d + 1) * tail, last.begin() + d * nr);
  std::vector<float> panel_bias(bias ? (full_panels + (tail ? 1 : 0)) * nr : 0, 0.0f);
  if (bias) std::copy(bias, bias + n, panel_bias.begin());
  std::vector<const float*> panels;
  for (size_t p = 0; p < full_panels; ++p) panels.push_back(packed + p * k * nr);
  if (tail) panels.push_back(last.data());
  TileJob job{simd ? conv_f32_tile_avx2(mr, nr) : nullptr,
              simd ? conv_f32_tile_avx2(1, nr) : nullptr, mr, nr, k, n, panels.data(), bias,
              bias ? panel_bias.data() : nullptr, relu};
  if (!job.full) job.full = conv_f32_tile_scalar(mr, nr);
  if (!job.one) job.one = conv_f32_tile_scalar(1, nr);
  // blocks of ~16 KiB of a's rows and ~128 KiB of panels (one K block each): a stays in L1,
  // the panels in L2, while a panel's K block is read once per block from L1
  const size_t group = mr * std::max<size_t>(1, (4096 / kc) / mr);
  const size_t chunk = std::max<size_t>(1, 32768 / (kc * nr));
  const size_t groups = (m + group - 1) / group, chunks = (panels.size() + chunk - 1) / chunk;
  // ~1 Mflop for a thread before a split pays for a wake-up (as the direct conv)
  const size_t flops = 2 * std::min(group, m) * k * chunk * nr + 1;
  parallel_for(groups * chunks, std::max<size_t>(1, (size_t{1} << 20) / flops),
               [&](size_t lo, size_t hi) {
                 std::vector<const float*> rows(mr);
                 std::vector<float> tmp(mr * nr);
                 for (size_t u = lo; u < hi; ++u) {
                   const size_t g = u / chunks, c = u % chunks;
                   const Block b{g * group, std::min(m, (g + 1) * group), c * chunk,
                                 std::min(panels.size(), (c + 1) * chunk)};
                   run_block(job, a, b, y, rows.data(), tmp.data());
                 }
               });
}

}  // namespace needle_qc
