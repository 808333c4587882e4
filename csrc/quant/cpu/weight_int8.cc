// weight_int8.cc: int8 / uint8 weight packing, the portable panel kernel and the driver.
#include "quant/cpu/weight_int8.h"
#include "quant/cpu/weight_panels.h"

#include <algorithm>
#include <cmath>

namespace needle_qc {

size_t PackedWeightInt8::nbytes() const {
  return data.size() + 4 * scales.size() + 4 * zero_point.size();
}

PackedWeightInt8 pack_weight_int8(const uint8_t* q, bool is_unsigned, size_t K, size_t N,
                                  const float* scales, const int32_t* zp, size_t group_size) {
  PackedWeightInt8 p;
  p.K = K;
  p.N = N;
  p.is_unsigned = is_unsigned;
  p.group_size = group_size;
  p.groups = group_size == 0 ? 1 : (K + group_size - 1) / group_size;
  p.panels = (N + kPanelWidth - 1) / kPanelWidth;
  p.data.assign(p.panels * K * kPanelWidth, 0);
  for (size_t k = 0; k < K; ++k)
    for (size_t n = 0; n < N; ++n)
      p.data[((n / kPanelWidth) * K + k) * kPanelWidth + n % kPanelWidth] = q[k * N + n];
  const bool any_zp = zp != nullptr && std::any_of(zp, zp + p.groups * N, [](int32_t z) {
    return z != 0;
  });
  p.scales.assign(p.panels * p.groups * kPanelWidth, 0.0f);
  if (any_zp) p.zero_point.assign(p.scales.size(), 0);
  for (size_t g = 0; g < p.groups; ++g)
    for (size_t n = 0; n < N; ++n) {
      const size_t at = ((n / kPanelWidth) * p.groups + g) * kPanelWidth + n % kPanelWidth;
      p.scales[at] = scales[g * N + n];
      if (any_zp) p.zero_point[at] = zp[g * N + n];
    }
  return p;
}

void wint8_decode_row(const PackedWeightInt8& w, size_t panel, size_t k, float* out) {
  const size_t g = w.group_size == 0 ? 0 : k / w.group_size;
  const uint8_t* b = w.data.data() + (panel * w.K + k) * kPanelWidth;
  const size_t at = (panel * w.groups + g) * kPanelWidth;
  for (size_t j = 0; j < kPanelWidth; ++j) {
    int32_t v = w.is_unsigned ? int32_t(b[j]) : int32_t(int8_t(b[j]));
    if (w.has_zero_point()) v -= w.zero_point[at + j];
    out[j] = float(v) * w.scales[at + j];  // exact difference, one fp32 multiply
  }
}

void wint8_panel_scalar(size_t mr, const float* x, size_t ldx, const PackedWeightInt8& w,
                        size_t panel, float* y) {
  std::fill(y, y + mr * kPanelWidth, 0.0f);
  float row[kPanelWidth];
  for (size_t k = 0; k < w.K; ++k) {
    wint8_decode_row(w, panel, k, row);
    for (size_t r = 0; r < mr; ++r)
      for (size_t j = 0; j < kPanelWidth; ++j)
        y[r * kPanelWidth + j] = std::fma(x[r * ldx + k], row[j], y[r * kPanelWidth + j]);
  }
}

void gemm_f32_wint8(const float* x, size_t M, const PackedWeightInt8& w, const float* bias,
                    Isa isa, float* y) {
  auto panel_fn = wint8_panel_scalar;
#if defined(NEEDLE_QC_X86)
  if (isa != Isa::scalar && M >= kBlockedMinRows)
    return run_weight_blocked(wint8_decode_block_avx2, fma_rows_x16_avx2, x, M, w, bias, y);
  if (isa != Isa::scalar) panel_fn = wint8_panel_avx2;
#endif
  run_weight_panels<kWint8MaxMR>(panel_fn, x, M, w, bias, y);
}

}  // namespace needle_qc
