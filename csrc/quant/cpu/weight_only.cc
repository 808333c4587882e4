// weight_only.cc: fp16 / bf16 / int4 weight packing, the portable panel kernel and the driver.
//
// y[m, n] = Σ_k x[m, k] * dec(w)[k, n] (+ bias[n]) with fp32 accumulation, where dec is the
// half -> fp32 conversion or q * scale[k / group_size, n] for int4. Weights are decoded inside the
// microkernel, one 16-column k-row at a time (few rows), or 256 k-rows of one panel at a time into
// a 16 KiB tile reused by up to 192 rows (weight_panels.h); no fp32 copy of W ever exists.
#include <algorithm>
#include <cmath>

#include "quant/cpu/quant.h"
#include "quant/cpu/weight_panels.h"

namespace needle_qc {

size_t PackedWeightLowBit::nbytes() const {
  return 2 * half.size() + nibbles.size() + 4 * scales.size();
}

PackedWeightLowBit pack_weight_half(const float* w, size_t K, size_t N, WeightFormat format) {
  PackedWeightLowBit p;
  p.format = format;
  p.K = K;
  p.N = N;
  p.panels = (N + kPanelWidth - 1) / kPanelWidth;
  p.half.assign(p.panels * K * kPanelWidth, 0);
  for (size_t k = 0; k < K; ++k) {
    for (size_t n = 0; n < N; ++n) {
      const float v = w[k * N + n];
      uint16_t h = format == WeightFormat::f16 ? f32_to_f16_rne(v) : f32_to_bf16_rne(v);
      if (format == WeightFormat::f16 && std::isfinite(v)) {
        p.n_overflow += (h & 0x7C00u) == 0x7C00u;
        p.n_subnormal += v != 0.0f && (h & 0x7C00u) == 0;  // subnormal or flushed to zero
      }
      p.half[((n / kPanelWidth) * K + k) * kPanelWidth + n % kPanelWidth] = h;
    }
  }
  return p;
}

PackedWeightLowBit pack_weight_int4(const int8_t* q, size_t K, size_t N, const float* scales,
                                    size_t group_size) {
  PackedWeightLowBit p;
  p.format = WeightFormat::int4;
  p.K = K;
  p.N = N;
  p.group_size = group_size;
  p.groups = (K + group_size - 1) / group_size;
  p.panels = (N + kPanelWidth - 1) / kPanelWidth;
  p.nibbles.assign(p.panels * K * kPanelWidth / 2, 0);
  p.scales.assign(p.panels * p.groups * kPanelWidth, 0.0f);
  for (size_t k = 0; k < K; ++k) {
    for (size_t n = 0; n < N; ++n) {
      const uint8_t nib = static_cast<uint8_t>(q[k * N + n]) & 0x0Fu;
      const size_t j = n % kPanelWidth;
      uint8_t& byte = p.nibbles[((n / kPanelWidth) * K + k) * (kPanelWidth / 2) + j / 2];
      byte |= (j % 2 == 0) ? nib : static_cast<uint8_t>(nib << 4);  // low nibble first
    }
  }
  for (size_t g = 0; g < p.groups; ++g)
    for (size_t n = 0; n < N; ++n)
      p.scales[((n / kPanelWidth) * p.groups + g) * kPanelWidth + n % kPanelWidth] =
          scales[g * N + n];
  return p;
}

// Decodes row k of one panel into 16 floats (the scalar twin of the AVX2 decode).
static void decode_row(const PackedWeightLowBit& w, size_t panel, size_t k, float* out) {
  if (w.format == WeightFormat::int4) {
    const uint8_t* b = w.nibbles.data() + (panel * w.K + k) * (kPanelWidth / 2);
    const float* s = w.scales.data() + (panel * w.groups + k / w.group_size) * kPanelWidth;
    for (size_t j = 0; j < kPanelWidth; ++j) {
      int nib = (j % 2 == 0) ? (b[j / 2] & 0x0F) : (b[j / 2] >> 4);
      out[j] = float((nib ^ 8) - 8) * s[j];  // sign-extend the 4-bit value
    }
    return;
  }
  const uint16_t* h = w.half.data() + (panel * w.K + k) * kPanelWidth;
  for (size_t j = 0; j < kPanelWidth; ++j)
    out[j] = w.format == WeightFormat::f16 ? f16_to_f32(h[j]) : bf16_to_f32(h[j]);
}

void lowbit_panel_scalar(size_t mr, const float* x, size_t ldx, const PackedWeightLowBit& w,
                         size_t panel, float* y) {
  std::fill(y, y + mr * kPanelWidth, 0.0f);
  float row[kPanelWidth];
  for (size_t k = 0; k < w.K; ++k) {
    decode_row(w, panel, k, row);
    for (size_t r = 0; r < mr; ++r)
      for (size_t j = 0; j < kPanelWidth; ++j) y[r * kPanelWidth + j] += x[r * ldx + k] * row[j];
  }
}

void gemm_f32_lowbit(const float* x, size_t M, const PackedWeightLowBit& w, const float* bias,
                     Isa isa, float* y) {
  auto panel_fn = lowbit_panel_scalar;
#if defined(NEEDLE_QC_X86)
  if (isa != Isa::scalar && M >= kBlockedMinRows)
    return run_weight_blocked(lowbit_decode_block_avx2, fma_rows_x16_avx2, x, M, w, bias, y);
  if (isa != Isa::scalar) panel_fn = lowbit_panel_avx2;
#endif
  run_weight_panels<4>(panel_fn, x, M, w, bias, y);
}

}  // namespace needle_qc
