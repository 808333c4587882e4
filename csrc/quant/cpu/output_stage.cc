// output_stage.cc: zero-point correction, bias, and the three outputs (int32, requantized, fp32).
//
// Requantize contract (quantization-numerics.md §2.10.2), per element:
//   v = (float)acc * M[n]                      one fp32 rounding of the product
//   y = clamp(rint(v) + y_zp, qmin, qmax)      rint = round half to even
// Clamping v to [qmin - y_zp, qmax - y_zp] *before* rounding gives the same integer (the bounds are
// integers and rint is monotone) and keeps the float -> int conversion in range.
#include <algorithm>
#include <cmath>

#include "quant/cpu/output_panel.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

// Round half to even for |v| <= 2^22 under the default rounding mode: adding 1.5 * 2^23 leaves no
// fraction bits, so the FPU's own round-to-nearest-even does the rounding (vectorizes, no libm).
static inline float rint_small(float v) {
  // Without -ffast-math the compiler may not fold (v + magic) - magic back to v.
  const float magic = 12582912.0f;  // 1.5 * 2^23
  return (v + magic) - magic;
}

void correct_tile(const int32_t* c, size_t mr, size_t m0, size_t n0, size_t nc,
                  const PackedWeightS8& w, const PackedA& a, const OutputParams& p,
                  int32_t* acc) {
  const uint32_t K = static_cast<uint32_t>(w.K);
  for (size_t r = 0; r < mr; ++r) {
    const size_t m = m0 + r;
    const uint32_t za = static_cast<uint32_t>(p.a_zp[p.a_zp_per_row ? m : 0]);
    const uint32_t rs = a.rowsum.empty() ? 0u : static_cast<uint32_t>(a.rowsum[m]);
    for (size_t j = 0; j < nc; ++j) {
      const size_t n = n0 + j;
      const uint32_t zw = static_cast<uint32_t>(w.zero_point[n]);
      // Σ(a-za)(w-zw) = Σaw - za·Σw - zw·Σa + K·za·zw, all modulo 2^32.
      uint32_t v = static_cast<uint32_t>(c[r * kPanelWidth + j]);
      v -= za * static_cast<uint32_t>(w.colsum[n]);
      v -= zw * rs;
      v += K * za * zw;
      if (p.bias_i32) v += static_cast<uint32_t>(p.bias_i32[n]);
      acc[r * kPanelWidth + j] = static_cast<int32_t>(v);
    }
  }
}

static void requant_row(const int32_t* acc, size_t n0, size_t nc, const OutputParams& p,
                        void* out_row) {
  const float lo = float(p.qmin - p.y_zp), hi = float(p.qmax - p.y_zp);
  for (size_t j = 0; j < nc; ++j) {
    float v = float(acc[j]) * p.multiplier[p.multiplier_per_col ? n0 + j : 0];
    v = v < lo ? lo : (v > hi ? hi : v);
    int32_t q = static_cast<int32_t>(rint_small(v)) + p.y_zp;
    if (p.out_s8)
      static_cast<int8_t*>(out_row)[n0 + j] = static_cast<int8_t>(q);
    else
      static_cast<uint8_t*>(out_row)[n0 + j] = static_cast<uint8_t>(q);
  }
}

static void float_row(const int32_t* acc, size_t m, size_t n0, size_t nc, const OutputParams& p,
                      float* out_row) {
  const float rs = p.row_scale ? p.row_scale[m] : 1.0f;
  for (size_t j = 0; j < nc; ++j) {
    const size_t n = n0 + j;
    float s = p.scale[p.scale_per_col ? n : 0];
    if (p.row_scale) s = rs * s;
    float y = float(acc[j]) * s;
    if (p.bias_f32) y = y + p.bias_f32[n];
    if (p.relu) y = y > 0.0f ? y : 0.0f;
    out_row[n] = y;
  }
}

void output_tile(OutputKind kind, const int32_t* acc, size_t mr, size_t m0, size_t n0, size_t nc,
                 const OutputParams& p, void* out, size_t N) {
  for (size_t r = 0; r < mr; ++r) {
    const size_t m = m0 + r;
    const int32_t* row = acc + r * kPanelWidth;
    if (kind == OutputKind::s32) {
      int32_t* o = static_cast<int32_t*>(out) + m * N;
      for (size_t j = 0; j < nc; ++j) o[n0 + j] = row[j];
    } else if (kind == OutputKind::requant) {
      void* o = static_cast<uint8_t*>(out) + m * N;  // 1 byte per element for u8 and s8
      requant_row(row, n0, nc, p, o);
    } else {
      float_row(row, m, n0, nc, p, static_cast<float*>(out) + m * N);
    }
  }
}

void panel_terms(const PackedWeightS8& w, const OutputParams& p, size_t panel, PanelTerms& t) {
  t.n0 = panel * kPanelWidth;
  t.nc = std::min<size_t>(kPanelWidth, w.N - t.n0);
  const uint32_t za = p.a_zp_per_row ? 0u : static_cast<uint32_t>(p.a_zp[0]);
  const float* s = p.multiplier ? p.multiplier : p.scale;
  const bool s_per_col = p.multiplier ? p.multiplier_per_col : p.scale_per_col;
  PanelTerms::Own& o = t.own;
  for (size_t j = 0; j < kPanelWidth; ++j) {
    const size_t n = t.n0 + j;
    const bool real = j < t.nc;
    const uint32_t colsum = real ? static_cast<uint32_t>(w.colsum[n]) : 0u;
    const uint32_t bias = real && p.bias_i32 ? static_cast<uint32_t>(p.bias_i32[n]) : 0u;
    o.col[j] = static_cast<int32_t>(bias - za * colsum);
    o.colsum[j] = static_cast<int32_t>(colsum);
    o.zw[j] = real ? w.zero_point[n] : 0;
    o.scale[j] = !real || s == nullptr ? 0.0f : s[s_per_col ? n : 0];
    o.bias_f[j] = real && p.bias_f32 ? p.bias_f32[n] : 0.0f;
  }
  t.col = o.col;
  t.colsum = o.colsum;
  t.zw = o.zw;
  t.scale = o.scale;
  t.bias_f = o.bias_f;
}

}  // namespace needle_qc
