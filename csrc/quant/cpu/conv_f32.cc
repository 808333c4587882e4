// conv_f32.cc: packing, the tile driver and the scalar tile of the direct NHWC fp32 conv.
#include "quant/cpu/conv_f32.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "quant/cpu/parallel.h"
#include "quant/cpu/quant.h"

namespace needle_qc {

size_t conv_f32_panel(size_t cout) { return cout <= 8 ? 8 : cout <= 16 ? 16 : 32; }

// 12 accumulators (of 16 ymm registers) whatever the panel width.
size_t conv_f32_rows(size_t nr) { return nr == 8 ? 12 : nr == 16 ? 6 : 3; }

size_t packed_conv_f32_size(size_t k, size_t cin, size_t cout) {
  const size_t nr = conv_f32_panel(cout);
  return (cout + nr - 1) / nr * k * k * cin * nr;
}

void pack_conv_f32(const float* w, size_t k, size_t cin, size_t cout, float* packed) {
  const size_t nr = conv_f32_panel(cout), depth = k * k * cin;
  const size_t panels = (cout + nr - 1) / nr;
  for (size_t p = 0; p < panels; ++p)
    for (size_t d = 0; d < depth; ++d)
      for (size_t j = 0; j < nr; ++j) {
        const size_t col = p * nr + j;
        packed[(p * depth + d) * nr + j] = col < cout ? w[d * cout + col] : 0.0f;
      }
}

namespace {

template <size_t MR, size_t NR>
void tile_scalar(const float* const* rows, size_t taps, size_t cin, const float* panel,
                 const ConvTileOut& out) {
  float acc[MR * NR] = {};
  for (size_t t = 0; t < taps; ++t)
    for (size_t c = 0; c < cin; ++c) {
      const float* wk = panel + (t * cin + c) * NR;
      for (size_t r = 0; r < MR; ++r) {
        const float a = rows[r * taps + t][c];
        for (size_t j = 0; j < NR; ++j) acc[r * NR + j] = std::fma(a, wk[j], acc[r * NR + j]);
      }
    }
  for (size_t r = 0; r < MR; ++r)
    for (size_t j = 0; j < out.cols; ++j) {
      float v = acc[r * NR + j];
      if (out.bias) v = v + out.bias[j];
      if (out.relu) v = std::max(v, 0.0f);
      out.y[r * out.ldy + j] = v;
    }
}

template <size_t NR>
ConvTileFn scalar_for(size_t mr) {
  switch (mr) {
    case 1: return tile_scalar<1, NR>;
    case 3: return tile_scalar<3, NR>;
    case 6: return tile_scalar<6, NR>;
    default: return tile_scalar<12, NR>;
  }
}

// (n, oh, ow) of an output pixel, advanced one pixel at a time (no divisions per pixel:
// they cost more than the tile's own work on a 1-channel input).
struct Pixel {
  size_t n, oh, ow;
  void next(const ConvF32Shape& s) {
    if (++ow < s.ow) return;
    ow = 0;
    if (++oh < s.oh) return;
    oh = 0;
    ++n;
  }
};

// Row pointers of output pixel px: one per tap (kh, kw), `zeros` where the tap is padding;
// `offsets` are the taps' distances from the window's corner (the common, interior case).
void pixel_rows(const float* x, const float* zeros, const ConvF32Shape& s,
                const std::vector<size_t>& offsets, const Pixel& px, const float** out) {
  const size_t ow = px.ow, oh = px.oh, n = px.n;
  const long ih0 = static_cast<long>(oh * s.stride) - static_cast<long>(s.pad);
  const long iw0 = static_cast<long>(ow * s.stride) - static_cast<long>(s.pad);
  const long h = static_cast<long>(s.h), w = static_cast<long>(s.w), k = static_cast<long>(s.k);
  if (ih0 >= 0 && iw0 >= 0 && ih0 + k <= h && iw0 + k <= w) {
    const float* corner = x + ((n * s.h + ih0) * s.w + iw0) * s.cin;
    for (size_t t = 0; t < offsets.size(); ++t) out[t] = corner + offsets[t];
    return;
  }
  for (long kh = 0; kh < k; ++kh)
    for (long kw = 0; kw < k; ++kw) {
      const long ih = ih0 + kh, iw = iw0 + kw;
      const bool in = ih >= 0 && iw >= 0 && ih < h && iw < w;
      *out++ = in ? x + ((n * s.h + ih) * s.w + iw) * s.cin : zeros;
    }
}

}  // namespace

ConvTileFn conv_f32_tile_scalar(size_t mr, size_t nr) {
  return nr == 8 ? scalar_for<8>(mr) : nr == 16 ? scalar_for<16>(mr) : scalar_for<32>(mr);
}

void conv2d_nhwc_f32(const float* x, const float* packed, const float* bias, bool relu,
                     const ConvF32Shape& s, float* y) {
  const size_t nr = conv_f32_panel(s.cout), mr = conv_f32_rows(nr), taps = s.k * s.k;
  const size_t depth = taps * s.cin, panels = (s.cout + nr - 1) / nr;
  const size_t pixels = s.n * s.oh * s.ow, tiles = (pixels + mr - 1) / mr;
  const bool simd = selected_isa() != Isa::scalar;
  ConvTileFn full = simd ? conv_f32_tile_avx2(mr, nr) : nullptr;
  ConvTileFn one = simd ? conv_f32_tile_avx2(1, nr) : nullptr;
  if (!full) full = conv_f32_tile_scalar(mr, nr);
  if (!one) one = conv_f32_tile_scalar(1, nr);
  const std::vector<float> zeros(s.cin, 0.0f);
  std::vector<size_t> offsets;
  for (size_t kh = 0; kh < s.k; ++kh)
    for (size_t kw = 0; kw < s.k; ++kw) offsets.push_back((kh * s.w + kw) * s.cin);
  std::vector<float> bias_padded(bias ? panels * nr : 0, 0.0f);
  if (bias) std::copy(bias, bias + s.cout, bias_padded.begin());
  // ~2 * depth * mr * cout flops a tile: split when a thread's share is worth a wake-up
  const size_t flops = 2 * depth * mr * s.cout + 1;
  parallel_for(tiles, std::max<size_t>(1, (size_t{1} << 20) / flops), [&](size_t lo, size_t hi) {
    std::vector<const float*> rows(mr * taps);
    for (size_t t = lo; t < hi; ++t) {
      const size_t m0 = t * mr, count = std::min(mr, pixels - m0);
      Pixel px{m0 / (s.ow * s.oh), (m0 / s.ow) % s.oh, m0 % s.ow};
      for (size_t r = 0; r < count; ++r, px.next(s))
        pixel_rows(x, zeros.data(), s, offsets, px, rows.data() + r * taps);
      for (size_t p = 0; p < panels; ++p) {
        const float* panel = packed + p * depth * nr;
        ConvTileOut out{bias ? bias_padded.data() + p * nr : nullptr, relu,
                        y + m0 * s.cout + p * nr, s.cout, std::min(nr, s.cout - p * nr)};
        if (count == mr) {
          full(rows.data(), taps, s.cin, panel, out);
          continue;
        }
        for (size_t r = 0; r < count; ++r, out.y += s.cout)
          one(rows.data() + r * taps, taps, s.cin, panel, out);
      }
    }
  });
}

#if !defined(NEEDLE_QC_X86)
ConvTileFn conv_f32_tile_avx2(size_t, size_t) { return nullptr; }
#endif

}  // namespace needle_qc
