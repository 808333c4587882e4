// weight_int8.h: int8 / uint8 weight-only GEMM (fp32 activations, 8-bit weights decoded inside the
// microkernel), the 8-bit sibling of the fp16 / bf16 / int4 kernels declared in quant.h.
//
// y[m, n] = Σ_k x[m, k] * dec(w)[k, n] (+ bias[n]),  dec(w)[k, n] = fp32(q[k, n] - z[g, n]) * s[g, n]
// with g = k / group_size (group_size 0: one (s, z) per column, g = 0). dec is bit-identical to the
// reference dequantize (exact integer difference, one fp32 multiply). Summation order, identical in
// every path (AVX2, scalar, naive twin), so they agree bit for bit: for each output, acc = +0, then
// acc = fma(x[m, k], dec(w)[k, n], acc) for k = 0, 1, ..., K - 1, then y = acc + bias[n] (fp32).
// It differs from a BLAS / numpy fp32 matmul only by rounding (error <= K * eps * Σ|x||w|).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/cpu/quant.h"

namespace needle_qc {

struct PackedWeightInt8 {
  size_t K = 0, N = 0, panels = 0, group_size = 0, groups = 1;
  bool is_unsigned = false;        // uint8 payload (bytes read as 0..255) vs int8
  std::vector<uint8_t> data;       // [panel][K][16] raw bytes; padded columns hold 0
  std::vector<float> scales;       // [panel][groups][16]; padded columns hold 0
  std::vector<int32_t> zero_point; // [panel][groups][16], empty when all zero points are 0
  size_t nbytes() const;
  bool has_zero_point() const { return !zero_point.empty(); }
};

// q: K*N bytes (int8 or uint8 per is_unsigned); scales / zp: groups*N (zp may be nullptr).
PackedWeightInt8 pack_weight_int8(const uint8_t* q, bool is_unsigned, size_t K, size_t N,
                                  const float* scales, const int32_t* zp, size_t group_size);

// Decodes row k of one panel into 16 floats (the scalar reference of every decode).
void wint8_decode_row(const PackedWeightInt8& w, size_t panel, size_t k, float* out);

// Panel kernels: y[mr][16] = x[mr, :] @ dec(W_panel), order as above, bias excluded.
constexpr size_t kWint8MaxMR = 6;
void wint8_panel_scalar(size_t mr, const float* x, size_t ldx, const PackedWeightInt8& w,
                        size_t panel, float* y);
void wint8_panel_avx2(size_t mr, const float* x, size_t ldx, const PackedWeightInt8& w,
                      size_t panel, float* y);
// k-rows [k0, k0 + kc) of one panel decoded into tile[kc][16] (the panel kernel's decode).
void wint8_decode_block_avx2(const PackedWeightInt8& w, size_t panel, size_t k0, size_t kc,
                             float* tile);

void gemm_f32_wint8(const float* x, size_t M, const PackedWeightInt8& w, const float* bias,
                    Isa isa, float* y);

}  // namespace needle_qc
