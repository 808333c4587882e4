// output_panel.h: the GEMM output stage with one panel's column terms expanded once for all of
// its row tiles (AVX2; full and partial panels), the numbers of correct_tile + output_tile.
#pragma once

#include "quant/cpu/quant.h"

namespace needle_qc {

// One 16-column panel's per-column terms (16 values each, zeros past nc for a partial panel):
// pointers into the weights / parameters where they can be read as they are, else into `own`.
struct PanelTerms {
  size_t n0 = 0, nc = 0;
  // bias[n] - za * colsum[n] (modulo 2^32) for a per-tensor za; bias[n] alone for a za per row
  const int32_t* col = nullptr;
  const int32_t* colsum = nullptr;  // read only for a za per row
  const int32_t* zw = nullptr;      // read only for weights with a zero point
  const float* scale = nullptr;     // requant multiplier or f32 scale, per column
  const float* bias_f = nullptr;    // f32 output bias (read only when there is one)
  struct Own {
    alignas(32) int32_t col[kPanelWidth], colsum[kPanelWidth], zw[kPanelWidth];
    alignas(32) float scale[kPanelWidth], bias_f[kPanelWidth];
  } own;
};

// Fills t for panel `panel` of w under the output parameters p, every term copied into t.own
// (portable; the partial panel's path).
void panel_terms(const PackedWeightS8& w, const OutputParams& p, size_t panel, PanelTerms& t);
// The same terms, read in place where they can be (full panels), computed with AVX2.
void panel_terms_avx2(const PackedWeightS8& w, const OutputParams& p, size_t panel,
                      PanelTerms& t);

// Rows m0 .. m0 + mr of the raw tile c[r][16] through the output stage into out[M, N]:
// Σ(a-za)(w-zw) + bias = c + col - [za_m colsum] + zw (K za_m - rowsum_m), modulo 2^32, then the
// s32 / requant / f32 output with the roundings of output_stage.cc, bit for bit.
void output_rows_avx2(OutputKind kind, const int32_t* c, size_t mr, size_t m0,
                      const PanelTerms& t, const PackedWeightS8& w, const PackedA& a,
                      const OutputParams& p, void* out, size_t N);

}  // namespace needle_qc
