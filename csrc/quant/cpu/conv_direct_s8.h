// conv_direct_s8.h: direct NHWC u8 x s8 convolution (no im2col copy) for small-channel convs.
//
// Reduction order: kernel row kh, then the KW * Cin bytes of that row, which are contiguous in
// an NHWC image ("runs"). Each run is padded to R4 = roundup(KW * Cin, 4) with zero weights, so
// the depth is D = KH * R4 and the weights are an ordinary k-quad panel matrix [D, Cout] (quant.h
// glossary). The input is read through a copy with a z_x border (padding taps add
// (z_x - z_x) * w = 0); a pixel's run kh starts kh * row_step bytes after its run 0, and
// the up to 3 bytes a run reads past its end meet zero weights.
#pragma once

#include "quant/cpu/conv.h"

namespace needle_qc {

struct PackedConvDirect {
  size_t KH = 0, KW = 0, Cin = 0, Cout = 0, R4 = 0;
  // The only copy of the weights: s8 [D, Cout] as panels (0 in run padding), with the GEMM's
  // correction facts over the real taps: colsum = Σ_k w, zero_point = z_w, K = KH * KW * Cin,
  // col_abs = Σ_k |w - z_w|; max_pair_abs over these depth pairs. Both tiles read these panels
  // (the exact one sign-extends them); a z_w is applied as - z_w * Σ x by the output stage.
  PackedWeightS8 gemm;
  bool has_zero_point = false;  // some z_w != 0: the exact path, with patch sums

  size_t depth() const { return KH * R4; }
  size_t nbytes() const { return gemm.nbytes(); }
};

// w [KH, KW, Cin, Cout] int8, zero points [Cout] or [1] (n_zp).
PackedConvDirect pack_conv_direct_s8(const int8_t* w, size_t KH, size_t KW, size_t Cin,
                                     size_t Cout, const int32_t* w_zp, size_t n_zp);

// out[batch, OH, OW, Cout] = the conv of x[batch, H, W, Cin] (the same numbers as
// conv2d_u8s8_batch for every output kind). a_max >= 0: the vpmaddubsw tile, for a caller that
// proved a_max * max_pair_abs <= 32767 (and no z_w); x and z_x are checked against a_max while
// the input is copied, and a byte above it returns false before any output is written. With a
// z_w the output stage subtracts z_w * (the sum of each pixel's patch, border included).
bool conv2d_direct_u8s8(const uint8_t* x, size_t batch, const ConvGeometry& g, uint8_t x_zp,
                        const PackedConvDirect& w, Isa isa, int a_max, OutputKind kind,
                        const OutputParams& p, void* out);

// Largest byte of x[n] and of the z_x border (what the fast-path claim must bound).
int direct_input_max(const uint8_t* x, size_t n, const ConvGeometry& g, uint8_t x_zp);

// Raw tile c[r][0..16) = Σ_{kh < KH, d < R4} rows[r][kh * row_step + d] * w[kh * R4 + d][j] for
// r < mr, one 16-column s8 panel (the exact tile widens it to i16 in registers).
struct DirectTileArgs {
  const uint8_t* const* rows;
  size_t row_step, KH, R4;
};
// The requantizing output stage fused into an AVX2 tile (full 16-column panels): the numbers of
// output_tile16_avx2, with the per-column terms and the multipliers expanded once per call.
struct DirectRequant {
  const int32_t* bias;  // 16: bias[n] - z_x * Σ_k w[k, n] + K * z_x * z_w[n], modulo 2^32
  const int32_t* w_zp;  // 16 z_w[n], or null (all 0): then patch_sum is not read
  const int32_t* patch_sum;  // Σ x over the patch of the tile's row r (- z_w * it, mod 2^32)
  const float* multiplier;  // 16
  int32_t y_zp;
  float lo, hi;  // qmin - y_zp, qmax - y_zp
  bool out_s8;
  uint8_t* y;  // row r of the tile at y + r * ldy
  size_t ldy;
};
// rq == nullptr: the raw tile into c[r][0..16); else requantized straight to rq->y (c unused).
using DirectTileFn = void (*)(const DirectTileArgs& a, const void* panel, int32_t* c,
                              const DirectRequant* rq);
// Σ of a pixel's patch: KH runs of `run` bytes from p, row_step apart, modulo 2^32 (the - z_w Σ x
// term). The AVX2 twin reads whole dwords: up to 3 bytes past a run, which the caller keeps
// inside its buffer (the z_x copy's slack; in place every run is whole dwords).
int32_t direct_patch_sum(const uint8_t* p, size_t row_step, size_t KH, size_t run);
int32_t direct_patch_sum_avx2(const uint8_t* p, size_t row_step, size_t KH, size_t run);
constexpr size_t kDirectMaxMR = 8;
size_t direct_tile_rows(Isa isa, bool fast);  // MR of the full tile
DirectTileFn direct_tile_scalar(size_t mr);
DirectTileFn direct_tile_avx2(size_t mr, bool fast);

}  // namespace needle_qc
