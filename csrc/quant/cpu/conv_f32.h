// conv_f32.h: direct NHWC fp32 convolution (no im2col copy): MR output pixels x NR output
// channels per register tile, the input read through per-pixel row pointers (zeros at padding).
// Every output is one sequential FMA chain over (kh, kw, c), so the result does not depend on
// the tiling, the thread count or the ISA: the scalar and AVX2 paths agree bit for bit.
#pragma once

#include <cstddef>

namespace needle_qc {

struct ConvF32Shape {
  size_t n, h, w, cin, cout, k, stride, pad, oh, ow;
};

// Columns of one packed weight panel (8, 16 or 32) for cout output channels.
size_t conv_f32_panel(size_t cout);

// w [k, k, cin, cout] -> panels [ceil(cout / NR)][k * k * cin][NR], zero-padded columns.
void pack_conv_f32(const float* w, size_t k, size_t cin, size_t cout, float* packed);
size_t packed_conv_f32_size(size_t k, size_t cin, size_t cout);

// y[n, oh, ow, cout] = Σ x·w (+ bias) (then max(., 0) if relu); x is [n, h, w, cin]. Taps
// that fall in the zero padding are left out of the sum (they would add 0·w: the same value
// except for the sign of a zero sum and 0·inf), as the naive twin leaves them out.
void conv2d_nhwc_f32(const float* x, const float* packed, const float* bias, bool relu,
                     const ConvF32Shape& s, float* y);

// The register tile: acc[r][j] = Σ_{t < taps, c < cin} rows[r * taps + t][c] *
// panel[(t * cin + c) * ldw + j], one FMA chain per output in (t, c) order; then
// v = acc, v = v + y[r * ldy + j] if add_y (a later K block of the GEMM onto the earlier ones'
// sum, Needle's order), v = v + bias[j] (bias may be null), max(v, 0) if relu, stored to
// y[r * ldy + j] for j < cols (cols < NR only in the last panel). A panel row holds ldw >= cols
// floats (ldw = cols for the GEMM's compact last panel); only its first min(cols, NR) are read
// (masked loads where cols < NR).
struct ConvTileOut {
  const float* bias;  // NR entries of this panel (zero-padded), or null
  bool relu;
  float* y;
  size_t ldy, cols;
  bool add_y;
  size_t ldw;
};
using ConvTileFn = void (*)(const float* const* rows, size_t taps, size_t cin,
                            const float* panel, const ConvTileOut& out);
// The conv's register tile over the taps of a window that lie inside the image: `segs` runs
// of `len` contiguous floats, one per kernel row (the window's in-image kw taps x cin are
// adjacent in NHWC, and so are their weights in the panel): acc[r][j] = Σ_{s < segs,
// i < len} pixels[r][s * xstride + i] * (w0 + s * wstride)[i * NR + j], one FMA chain per
// output in (s, i) order, i.e. (kh, kw, c); then the store of ConvTileOut to
// ys[r] + col0 + j (pixels of one tile need not be adjacent in y).
struct ConvSegIn {
  const float* const* pixels;  // MR pointers: each pixel's first in-image tap
  size_t segs, len, xstride;
  const float* w0;  // the panel's weights of that first tap
  size_t wstride;
};
struct ConvSegOut {
  const float* bias;  // NR entries of this panel (zero-padded), or null
  bool relu;
  float* const* ys;  // MR output pixels
  size_t col0, cols;
};
using ConvSegTileFn = void (*)(const ConvSegIn& in, const ConvSegOut& out);
ConvSegTileFn conv_f32_seg_tile_scalar(size_t mr, size_t nr);  // 1 <= mr <= conv_f32_rows(nr)
ConvSegTileFn conv_f32_seg_tile_avx2(size_t mr, size_t nr);    // nullptr where there is none

// The interior row kernel of a small-Cin 3x3 stride-1 conv: `count` adjacent output pixels
// of one output row whose windows lie wholly inside the image, over one panel: pixel r's tap
// (kh, kw, c) is x[kh * xrow + (r + kw) * cin + c], its output y[r * ldy + j], j < cols, with
// the seg tile's chain, bias and ReLU (so the same bits). Needs count >= conv_f32_rows(nr).
struct ConvRowIn {
  const float* x;  // the first pixel's tap (0, 0, 0)
  size_t xrow;     // floats between input rows (w * cin)
  const float* w;  // the panel's weights of tap (0, 0, 0)
  const float* bias;  // NR entries of this panel (zero-padded), or null
  bool relu;
  float* y;
  size_t ldy, cols, count;
};
using ConvRowFn = void (*)(const ConvRowIn& in);
ConvRowFn conv_f32_row_avx2(size_t k, size_t stride, size_t cin, size_t nr);  // or nullptr

ConvTileFn conv_f32_tile_scalar(size_t mr, size_t nr);  // 1 <= mr <= conv_f32_rows(nr)
ConvTileFn conv_f32_tile_avx2(size_t mr, size_t nr);    // nullptr where there is none
size_t conv_f32_rows(size_t nr);  // MR of the tile for a panel of nr columns

}  // namespace needle_qc
