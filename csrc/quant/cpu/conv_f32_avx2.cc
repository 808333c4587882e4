// conv_f32_avx2.cc: the AVX2+FMA register tile of the direct NHWC fp32 conv: MR pixels x NV
// ymm columns, one broadcast of x and NV weight loads per (tap, channel); and the small-Cin
// 3x3 row kernel over the same tile.
#include <immintrin.h>

#include <utility>

#include "quant/cpu/conv_f32.h"

namespace needle_qc {

namespace {

// One row of a tile's accumulators onto NV * 8 floats at y: + y if add_y, + bias, ReLU, store.
template <size_t NV>
inline void finish_row(__m256* c, const ConvTileOut& out, float* y) {
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (size_t v = 0; v < NV; ++v) {
    if (out.add_y) c[v] = _mm256_add_ps(c[v], _mm256_loadu_ps(y + v * 8));  // block + y
    if (out.bias) c[v] = _mm256_add_ps(c[v], _mm256_loadu_ps(out.bias + v * 8));
    // max(0, v) returns v when v is NaN or -0, as std::max(v, 0.0f) does
    if (out.relu) c[v] = _mm256_max_ps(zero, c[v]);
    _mm256_storeu_ps(y + v * 8, c[v]);
  }
}

// The tile's FMA chains into c over panel rows of ldw floats; MASKED: only the first cols < NR
// of a row are read.
template <size_t MR, size_t NV, bool MASKED>
__attribute__((always_inline)) inline void tile_chains(__m256 (&c)[MR][NV],
                                                       const float* const* rows, size_t taps,
                                                       size_t cin, const float* panel,
                                                       size_t ldw, size_t cols) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i mask[NV];  // lanes of vector v below cols
#pragma GCC unroll 4
  for (size_t v = 0; v < NV; ++v) {
    const int left = MASKED ? static_cast<int>(cols) - static_cast<int>(v * 8) : 8;
    mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
  }
  for (size_t t = 0; t < taps; ++t) {
    const float* src[MR];
#pragma GCC unroll 12
    for (size_t r = 0; r < MR; ++r) src[r] = rows[r * taps + t];
    const float* wk = panel + t * cin * ldw;
    for (size_t ch = 0; ch < cin; ++ch, wk += ldw) {
      __m256 w[NV];
#pragma GCC unroll 4
      for (size_t v = 0; v < NV; ++v)
        w[v] = MASKED ? _mm256_maskload_ps(wk + v * 8, mask[v]) : _mm256_loadu_ps(wk + v * 8);
#pragma GCC unroll 12
      for (size_t r = 0; r < MR; ++r) {
        const __m256 a = _mm256_broadcast_ss(src[r] + ch);
#pragma GCC unroll 4
        for (size_t v = 0; v < NV; ++v) c[r][v] = _mm256_fmadd_ps(a, w[v], c[r][v]);
      }
    }
  }
}

template <size_t MR, size_t NV>
void tile_avx2(const float* const* rows, size_t taps, size_t cin, const float* panel,
               const ConvTileOut& out) {
  constexpr size_t NR = NV * 8;
  __m256 c[MR][NV];
#pragma GCC unroll 12
  for (size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (size_t v = 0; v < NV; ++v) c[r][v] = _mm256_setzero_ps();
  if (out.cols < NR)
    tile_chains<MR, NV, true>(c, rows, taps, cin, panel, out.ldw, out.cols);
  else
    tile_chains<MR, NV, false>(c, rows, taps, cin, panel, out.ldw, NR);
  if (out.cols == NR) {
#pragma GCC unroll 12
    for (size_t r = 0; r < MR; ++r) finish_row<NV>(c[r], out, out.y + r * out.ldy);
    return;
  }
  // last panel, cols < NR: through a buffer (unrolled: a runtime index into c would keep the
  // accumulators in memory for the whole k loop)
  alignas(32) float tail[MR * NR] = {};
  for (size_t r = 0; r < MR && out.add_y; ++r)
    for (size_t j = 0; j < out.cols; ++j) tail[r * NR + j] = out.y[r * out.ldy + j];
#pragma GCC unroll 12
  for (size_t r = 0; r < MR; ++r) finish_row<NV>(c[r], out, tail + r * NR);
  for (size_t r = 0; r < MR; ++r)
    for (size_t j = 0; j < out.cols; ++j) out.y[r * out.ldy + j] = tail[r * NR + j];
}

// bias, ReLU and the store of one row of a tile's accumulators (cols < NR through a buffer)
template <size_t NV>
inline void store_row(__m256* c, const float* bias, bool relu, float* y, size_t cols) {
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (size_t v = 0; v < NV; ++v) {
    if (bias) c[v] = _mm256_add_ps(c[v], _mm256_loadu_ps(bias + v * 8));
    // max(0, v) returns v when v is NaN or -0, as std::max(v, 0.0f) does
    if (relu) c[v] = _mm256_max_ps(zero, c[v]);
  }
  if (cols == NV * 8) {
#pragma GCC unroll 4
    for (size_t v = 0; v < NV; ++v) _mm256_storeu_ps(y + v * 8, c[v]);
    return;
  }
  alignas(32) float tail[NV * 8];
#pragma GCC unroll 4
  for (size_t v = 0; v < NV; ++v) _mm256_store_ps(tail + v * 8, c[v]);
  for (size_t j = 0; j < cols; ++j) y[j] = tail[j];
}

template <size_t MR, size_t NV>
void seg_tile_avx2(const ConvSegIn& in, const ConvSegOut& out) {
  constexpr size_t NR = NV * 8;
  __m256 c[MR][NV];
#pragma GCC unroll 12
  for (size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (size_t v = 0; v < NV; ++v) c[r][v] = _mm256_setzero_ps();
  const float* wseg = in.w0;
  for (size_t s = 0; s < in.segs; ++s, wseg += in.wstride) {
    const float* src[MR];
#pragma GCC unroll 12
    for (size_t r = 0; r < MR; ++r) src[r] = in.pixels[r] + s * in.xstride;
    const float* wk = wseg;
    for (size_t i = 0; i < in.len; ++i, wk += NR) {
      __m256 w[NV];
#pragma GCC unroll 4
      for (size_t v = 0; v < NV; ++v) w[v] = _mm256_loadu_ps(wk + v * 8);
#pragma GCC unroll 12
      for (size_t r = 0; r < MR; ++r) {
        const __m256 a = _mm256_broadcast_ss(src[r] + i);
#pragma GCC unroll 4
        for (size_t v = 0; v < NV; ++v) c[r][v] = _mm256_fmadd_ps(a, w[v], c[r][v]);
      }
    }
  }
#pragma GCC unroll 12
  for (size_t r = 0; r < MR; ++r)
    store_row<NV>(c[r], out.bias, out.relu, out.ys[r] + out.col0, out.cols);
}

// MR pixels x NV ymm columns of a 3x3, stride-1 conv whose windows lie inside the image, CIN
// compile-time: every tap's offset is an immediate, so a tile costs its FMAs and stores only.
template <size_t CIN, size_t NV, size_t MR>
inline void row_tile(const ConvRowIn& in, const float* x, float* y) {
  constexpr size_t NR = NV * 8;
  __m256 c[MR][NV];
#pragma GCC unroll 12
  for (size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (size_t v = 0; v < NV; ++v) c[r][v] = _mm256_setzero_ps();
  // rolled loops: unrolled, GCC hoists the loads of later taps and spills the accumulators
#pragma GCC unroll 1
  for (size_t kh = 0; kh < 3; ++kh) {
    const float* xk = x + kh * in.xrow;
#pragma GCC unroll 1
    for (size_t t = 0; t < 3 * CIN; ++t) {  // (kw, c) of this kernel row: adjacent in NHWC
      const float* wk = in.w + (kh * 3 * CIN + t) * NR;
      __m256 w[NV];
#pragma GCC unroll 4
      for (size_t v = 0; v < NV; ++v) w[v] = _mm256_loadu_ps(wk + v * 8);
#pragma GCC unroll 12
      for (size_t r = 0; r < MR; ++r) {
        const __m256 a = _mm256_broadcast_ss(xk + r * CIN + t);
#pragma GCC unroll 4
        for (size_t v = 0; v < NV; ++v) c[r][v] = _mm256_fmadd_ps(a, w[v], c[r][v]);
      }
    }
  }
#pragma GCC unroll 12
  for (size_t r = 0; r < MR; ++r) store_row<NV>(c[r], in.bias, in.relu, y + r * in.ldy, in.cols);
}

// a run of count >= MR pixels: whole tiles, then one last tile ending on the run's last pixel
// (it recomputes a few pixels of the tile before it, to the same bits)
template <size_t CIN, size_t NV>
void row_avx2(const ConvRowIn& in) {
  constexpr size_t MR = NV == 1 ? 12 : NV == 2 ? 6 : 3;
  size_t p = 0;
  for (; p + MR <= in.count; p += MR) row_tile<CIN, NV, MR>(in, in.x + p * CIN, in.y + p * in.ldy);
  if (p < in.count) {
    p = in.count - MR;
    row_tile<CIN, NV, MR>(in, in.x + p * CIN, in.y + p * in.ldy);
  }
}

template <size_t NV>
ConvRowFn row_for(size_t cin) {
  switch (cin) {
    case 1: return row_avx2<1, NV>;
    case 2: return row_avx2<2, NV>;
    case 3: return row_avx2<3, NV>;
    case 4: return row_avx2<4, NV>;
    default: return nullptr;
  }
}

template <size_t NV, size_t... M>
ConvSegTileFn seg_tile_for(size_t mr, std::index_sequence<M...>) {
  static constexpr ConvSegTileFn tiles[] = {seg_tile_avx2<M + 1, NV>...};
  return mr >= 1 && mr <= sizeof...(M) ? tiles[mr - 1] : nullptr;
}

template <size_t NV, size_t... M>
ConvTileFn tile_for(size_t mr, std::index_sequence<M...>) {
  static constexpr ConvTileFn tiles[] = {tile_avx2<M + 1, NV>...};
  return mr >= 1 && mr <= sizeof...(M) ? tiles[mr - 1] : nullptr;
}

}  // namespace

ConvSegTileFn conv_f32_seg_tile_avx2(size_t mr, size_t nr) {
  if (nr == 8) return seg_tile_for<1>(mr, std::make_index_sequence<12>());
  if (nr == 16) return seg_tile_for<2>(mr, std::make_index_sequence<6>());
  if (nr == 32) return seg_tile_for<4>(mr, std::make_index_sequence<3>());
  return nullptr;
}

ConvRowFn conv_f32_row_avx2(size_t k, size_t stride, size_t cin, size_t nr) {
  if (k != 3 || stride != 1) return nullptr;
  return nr == 8 ? row_for<1>(cin) : nr == 16 ? row_for<2>(cin) : nr == 32 ? row_for<4>(cin)
                                                                          : nullptr;
}

ConvTileFn conv_f32_tile_avx2(size_t mr, size_t nr) {
  if (nr == 8) return tile_for<1>(mr, std::make_index_sequence<12>());
  if (nr == 16) return tile_for<2>(mr, std::make_index_sequence<6>());
  if (nr == 32) return tile_for<4>(mr, std::make_index_sequence<3>());
  return nullptr;
}

}  // namespace needle_qc
