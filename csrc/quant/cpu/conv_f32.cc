// conv_f32.cc: packing, the tile driver and the scalar tile of the direct NHWC fp32 conv.
#include "quant/cpu/conv_f32.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
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
  const size_t width = std::min(NR, out.cols);  // the columns read from a panel row
  for (size_t t = 0; t < taps; ++t)
    for (size_t c = 0; c < cin; ++c) {
      const float* wk = panel + (t * cin + c) * out.ldw;
      for (size_t r = 0; r < MR; ++r) {
        const float a = rows[r * taps + t][c];
        for (size_t j = 0; j < width; ++j) acc[r * NR + j] = std::fma(a, wk[j], acc[r * NR + j]);
      }
    }
  for (size_t r = 0; r < MR; ++r)
    for (size_t j = 0; j < out.cols; ++j) {
      float v = acc[r * NR + j];
      if (out.add_y) v = v + out.y[r * out.ldy + j];
      if (out.bias) v = v + out.bias[j];
      if (out.relu) v = std::max(v, 0.0f);
      out.y[r * out.ldy + j] = v;
    }
}

template <size_t NR, size_t... M>
ConvTileFn scalar_for(size_t mr, std::index_sequence<M...>) {
  static constexpr ConvTileFn tiles[] = {tile_scalar<M + 1, NR>...};
  return mr >= 1 && mr <= sizeof...(M) ? tiles[mr - 1] : nullptr;
}

template <size_t MR, size_t NR>
void seg_tile_scalar(const ConvSegIn& in, const ConvSegOut& out) {
  float acc[MR * NR] = {};
  for (size_t s = 0; s < in.segs; ++s)
    for (size_t i = 0; i < in.len; ++i) {
      const float* wk = in.w0 + s * in.wstride + i * NR;
      for (size_t r = 0; r < MR; ++r) {
        const float a = in.pixels[r][s * in.xstride + i];
        for (size_t j = 0; j < NR; ++j) acc[r * NR + j] = std::fma(a, wk[j], acc[r * NR + j]);
      }
    }
  for (size_t r = 0; r < MR; ++r)
    for (size_t j = 0; j < out.cols; ++j) {
      float v = acc[r * NR + j];
      if (out.bias) v = v + out.bias[j];
      if (out.relu) v = std::max(v, 0.0f);
      out.ys[r][out.col0 + j] = v;
    }
}

template <size_t NR, size_t... M>
ConvSegTileFn seg_scalar_for(size_t mr, std::index_sequence<M...>) {
  static constexpr ConvSegTileFn tiles[] = {seg_tile_scalar<M + 1, NR>...};
  return mr >= 1 && mr <= sizeof...(M) ? tiles[mr - 1] : nullptr;
}

// Output rows (or columns) whose windows have the same taps [lo, hi) inside the image along
// that axis; `outs` lists them in order.
struct AxisClass {
  size_t lo, hi;
  std::vector<size_t> outs;
};

std::vector<AxisClass> axis_classes(size_t in, size_t out, const ConvF32Shape& s) {
  std::vector<AxisClass> classes;
  for (size_t o = 0; o < out; ++o) {
    const long start = static_cast<long>(o * s.stride) - static_cast<long>(s.pad);
    const long k = static_cast<long>(s.k);
    const long lo = std::min(k, std::max(0L, -start));
    const long hi = std::max(lo, std::min(k, static_cast<long>(in) - start));
    auto same = [&](const AxisClass& c) { return c.lo == size_t(lo) && c.hi == size_t(hi); };
    auto it = std::find_if(classes.begin(), classes.end(), same);
    if (it == classes.end()) it = classes.insert(classes.end(), {size_t(lo), size_t(hi), {}});
    it->outs.push_back(o);
  }
  return classes;
}

// The output pixels [n] x rows.outs x cols.outs whose windows share one in-image tap set, in
// that order; `first_tile` is the index of its first tile in the whole call.
struct PixelGroup {
  const AxisClass *rows, *cols;
  size_t pixels, first_tile;
};

// Everything the tiles of one call share.
struct ConvJob {
  const float* x;
  const float* packed;
  const float* bias;  // zero-padded to whole panels, or null
  bool relu;
  ConvF32Shape s;
  size_t nr, mr, panels, depth;
  ConvSegTileFn tiles[12];  // [m - 1]: the tile of m rows, m <= mr
  float* y;
};

// Walks the pixels of the groups in order, tile by tile: (group, image, row, column) advanced
// one pixel at a time (divisions per tile cost as much as a tile of a 1-channel conv).
class PixelCursor {
 public:
  PixelCursor(const std::vector<PixelGroup>& groups, size_t tile, size_t mr) : mr_(mr) {
    g_ = std::upper_bound(groups.begin(), groups.end(), tile,
                          [](size_t t, const PixelGroup& pg) { return t < pg.first_tile; }) - 1;
    const size_t m0 = (tile - g_->first_tile) * mr, nb = g_->cols->outs.size();
    ib_ = m0 % nb;
    ia_ = (m0 / nb) % g_->rows->outs.size();
    img_ = m0 / (nb * g_->rows->outs.size());
    left_ = g_->pixels - m0;
  }

  // The next tile's pixels (first in-image tap) and outputs; returns its pixel count.
  size_t next(const ConvJob& job, const float** pixels, float** ys) {
    const ConvF32Shape& s = job.s;
    while (left_ == 0) {  // a group ends on a tile boundary: the next one starts afresh
      ++g_;
      ib_ = ia_ = img_ = 0;
      left_ = g_->pixels;
    }
    const size_t count = std::min(mr_, left_);
    const AxisClass &rows = *g_->rows, &cols = *g_->cols;
    const bool empty = rows.hi == rows.lo || cols.hi == cols.lo;
    for (size_t r = 0; r < count; ++r) {
      const size_t oh = rows.outs[ia_], ow = cols.outs[ib_];
      const size_t ih = oh * s.stride + rows.lo - s.pad, iw = ow * s.stride + cols.lo - s.pad;
      pixels[r] = empty ? job.x : job.x + ((img_ * s.h + ih) * s.w + iw) * s.cin;
      ys[r] = job.y + ((img_ * s.oh + oh) * s.ow + ow) * s.cout;
      if (++ib_ < cols.outs.size()) continue;
      ib_ = 0;
      if (++ia_ < rows.outs.size()) continue;
      ia_ = 0;
      ++img_;
    }
    left_ -= count;
    return count;
  }

  const PixelGroup& group() const { return *g_; }

 private:
  std::vector<PixelGroup>::const_iterator g_;
  size_t mr_, ib_, ia_, img_, left_;
};

// One tile of the cursor's group: every panel over the same pixels.
void run_tile(const ConvJob& job, const PixelGroup& g, const float* const* pixels, float* const* ys,
              size_t count) {
  const ConvF32Shape& s = job.s;
  const size_t segs = g.rows->hi - g.rows->lo, len = (g.cols->hi - g.cols->lo) * s.cin;
  const size_t first_tap = (g.rows->lo * s.k + g.cols->lo) * s.cin * job.nr;
  ConvSegIn in{pixels, len ? segs : 0, len, s.w * s.cin, nullptr, s.k * s.cin * job.nr};
  const ConvSegTileFn tile = job.tiles[count - 1];
  for (size_t p = 0; p < job.panels; ++p) {
    in.w0 = job.packed + p * job.depth * job.nr + first_tap;
    const ConvSegOut out{job.bias ? job.bias + p * job.nr : nullptr, job.relu, ys, p * job.nr,
                         std::min(job.nr, s.cout - p * job.nr)};
    tile(in, out);
  }
}

// The pixels whose windows lie wholly inside the image (rows.outs x cols.outs of every image,
// each list contiguous at stride 1) through the row kernel: one item per (image, output row).
void run_interior(const ConvJob& job, ConvRowFn row, const AxisClass& rows,
                  const AxisClass& cols) {
  const ConvF32Shape& s = job.s;
  const size_t oh0 = rows.outs.front(), ow0 = cols.outs.front(), nrows = rows.outs.size();
  const size_t flops = 2 * job.depth * cols.outs.size() * s.cout + 1;
  parallel_for(s.n * nrows, std::max<size_t>(1, (size_t{1} << 20) / flops),
               [&](size_t lo, size_t hi) {
    for (size_t item = lo; item < hi; ++item) {
      const size_t img = item / nrows, oh = oh0 + item % nrows;
      const size_t ih = oh - s.pad, iw = ow0 - s.pad;
      ConvRowIn in{job.x + ((img * s.h + ih) * s.w + iw) * s.cin, s.w * s.cin, nullptr,
                   nullptr, job.relu, nullptr, s.cout, 0, cols.outs.size()};
      float* y = job.y + ((img * s.oh + oh) * s.ow + ow0) * s.cout;
      for (size_t p = 0; p < job.panels; ++p) {
        in.w = job.packed + p * job.depth * job.nr;
        in.bias = job.bias ? job.bias + p * job.nr : nullptr;
        in.y = y + p * job.nr;
        in.cols = std::min(job.nr, s.cout - p * job.nr);
        row(in);
      }
    }
  });
}

// The row kernel where the conv has one and enough pixels a row lie inside the image.
ConvRowFn interior_row_kernel(const ConvF32Shape& s, size_t nr, size_t mr, bool simd,
                              const AxisClass& rows, const AxisClass& cols) {
  if (!simd || rows.lo != 0 || rows.hi != s.k || cols.lo != 0 || cols.hi != s.k) return nullptr;
  if (cols.outs.size() < mr) return nullptr;
  return conv_f32_row_avx2(s.k, s.stride, s.cin, nr);
}

}  // namespace

ConvTileFn conv_f32_tile_scalar(size_t mr, size_t nr) {
  if (nr == 8) return scalar_for<8>(mr, std::make_index_sequence<12>());
  if (nr == 16) return scalar_for<16>(mr, std::make_index_sequence<6>());
  return scalar_for<32>(mr, std::make_index_sequence<3>());
}

ConvSegTileFn conv_f32_seg_tile_scalar(size_t mr, size_t nr) {
  if (nr == 8) return seg_scalar_for<8>(mr, std::make_index_sequence<12>());
  if (nr == 16) return seg_scalar_for<16>(mr, std::make_index_sequence<6>());
  return seg_scalar_for<32>(mr, std::make_index_sequence<3>());
}

void conv2d_nhwc_f32(const float* x, const float* packed, const float* bias, bool relu,
                     const ConvF32Shape& s, float* y) {
  const size_t nr = conv_f32_panel(s.cout), mr = conv_f32_rows(nr);
  const size_t panels = (s.cout + nr - 1) / nr;
  const bool pad_bias = bias && s.cout % nr != 0;  // the tiles read whole panels of bias
  std::vector<float> bias_padded(pad_bias ? panels * nr : 0, 0.0f);
  if (pad_bias) std::copy(bias, bias + s.cout, bias_padded.begin());
  ConvJob job{x, packed, pad_bias ? bias_padded.data() : bias, relu, s, nr, mr, panels,
              s.k * s.k * s.cin, {}, y};
  const bool simd = selected_isa() != Isa::scalar;
  for (size_t m = 1; m <= mr; ++m) {
    ConvSegTileFn tile = simd ? conv_f32_seg_tile_avx2(m, nr) : nullptr;
    job.tiles[m - 1] = tile ? tile : conv_f32_seg_tile_scalar(m, nr);
  }
  // pixels grouped by the taps their windows keep inside the image: the padding's taps are
  // never summed, and every tile of a group runs the same segments
  // (the group inside the image through the row kernel where there is one)
  const auto rows = axis_classes(s.h, s.oh, s), cols = axis_classes(s.w, s.ow, s);
  std::vector<PixelGroup> groups;
  size_t tiles = 0;
  for (const auto& a : rows)
    for (const auto& b : cols) {
      if (ConvRowFn row = interior_row_kernel(s, nr, mr, simd, a, b)) {
        run_interior(job, row, a, b);
        continue;
      }
      const size_t pixels = s.n * a.outs.size() * b.outs.size();
      groups.push_back({&a, &b, pixels, tiles});
      tiles += (pixels + mr - 1) / mr;
    }
  // ~2 * depth * mr * cout flops a tile: a worker for every ~0.25 Mflop (measured: at batch 1
  // the 16->32 and 32->32 convs of small_cnn take 0.7x and 0.85x the time on two threads)
  const size_t flops = 2 * job.depth * mr * s.cout + 1;
  parallel_for(tiles, std::max<size_t>(1, (size_t{1} << 18) / flops), [&](size_t lo, size_t hi) {
    PixelCursor cursor(groups, lo, mr);
    const float* pixels[12];
    float* ys[12];
    for (size_t t = lo; t < hi; ++t) {
      const size_t count = cursor.next(job, pixels, ys);
      run_tile(job, cursor.group(), pixels, ys, count);
    }
  });
}

#if !defined(NEEDLE_QC_X86)
ConvTileFn conv_f32_tile_avx2(size_t, size_t) { return nullptr; }
ConvRowFn conv_f32_row_avx2(size_t, size_t, size_t, size_t) { return nullptr; }
#endif

}  // namespace needle_qc
