// attention_f32_head_avx2.cc: one (batch, head) of the fused attention in AVX2 (entered only where
// attention_f32_matches_needle(): the CPU has AVX2+FMA). The head's logits live in one scratch
// block whose rows are padded to whole vectors, so both products and every softmax step run on
// full vectors; elementwise float operations give the same bits at any width, each product
// output stays one FMA chain in Needle's order, nothing is reassociated (fp-contract off).
#include <immintrin.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "ndarray/cpu/vmath.h"
#include "quant/cpu/attention_f32.h"
#include "quant/cpu/float_layers.h"

namespace needle_qc {

namespace {

constexpr size_t kNeedleSmallM = 4;  // at or below this many rows Needle's sgemm streams
constexpr size_t kNeedleKC = 256;    // Needle sgemm's K block (m > 4)

size_t whole_vectors(size_t n) { return (n + 7) / 8 * 8; }

// Lanes [0, count) of a vector set, count clamped to [0, 8].
__m256 first_lanes(size_t count) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int n = static_cast<int>(std::min<size_t>(count, 8));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx));
}

// ---- products: c = a @ b for b, c with 8 NV columns, each output Needle sgemm's chains (m > 4):
// each K block of 256 one FMA chain from +0 in k order; later blocks as block + c.

template <int R, int NV>
void chain_tile(size_t k, const float* a, size_t lda, const float* b, size_t ldb, float* c,
                size_t ldc) {
  for (size_t k0 = 0; k0 < k; k0 += kNeedleKC) {
    const size_t k1 = std::min(k, k0 + kNeedleKC);
    __m256 acc[R][NV];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
    for (size_t p = k0; p < k1; ++p) {
      __m256 bv[NV];
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + p * ldb + 8 * v);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256 av = _mm256_broadcast_ss(a + r * lda + p);
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) {
        float* out = c + r * ldc + 8 * v;
        // Needle's sgemm: the new block plus what c holds
        _mm256_storeu_ps(out, k0 == 0 ? acc[r][v] : _mm256_add_ps(acc[r][v], _mm256_loadu_ps(out)));
      }
  }
}

template <int NV>
void chain_rows(size_t m, size_t k, const float* a, size_t lda, const float* b, size_t ldb,
                float* c, size_t ldc) {
  size_t i = 0;
  for (; i + 4 <= m; i += 4) chain_tile<4, NV>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
  a += i * lda;
  c += i * ldc;
  switch (m - i) {
    case 3: return chain_tile<3, NV>(k, a, lda, b, ldb, c, ldc);
    case 2: return chain_tile<2, NV>(k, a, lda, b, ldb, c, ldc);
    case 1: return chain_tile<1, NV>(k, a, lda, b, ldb, c, ldc);
    default: return;
  }
}

// c[m, 8 nv] = a[m, k] @ b[k, 8 nv]: column tiles of 2 or 3 vectors (8 or 12 accumulators for
// 4 rows, enough independent chains to hide the FMA latency), 1 only when nv is 1.
void chain_product(size_t m, size_t nv, size_t k, const float* a, size_t lda, const float* b,
                   size_t ldb, float* c, size_t ldc) {
  size_t v = 0;
  if (nv == 1) {
    chain_rows<1>(m, k, a, lda, b, ldb, c, ldc);
    v = 1;
  } else if (nv % 2 == 1) {
    chain_rows<3>(m, k, a, lda, b, ldb, c, ldc);
    v = 3;
  }
  for (; v < nv; v += 2) chain_rows<2>(m, k, a, lda, b + 8 * v, ldb, c + 8 * v, ldc);
}

// c[m, n] = a @ b as Needle's sgemm computes it on one thread for this m, for b and c with
// whole-vector rows (ldb, ldc and n_padded multiples of 8; columns past n are scratch).
void needle_product(size_t m, size_t n, size_t n_padded, size_t k, const float* a, size_t lda,
                    const float* b, size_t ldb, float* c, size_t ldc) {
  if (m <= kNeedleSmallM) return needle_small_m_gemm_f32(m, n, k, a, lda, b, ldb, c, ldc);
  chain_product(m, n_padded / 8, k, a, lda, b, ldb, c, ldc);
}

// ---- K transpose: kt[p, j] = k[j, p], rows of kt padded with zeros to ldt columns.

// always_inline: called out of line the 8 vectors go through memory (measured ~7% of a head).
__attribute__((always_inline)) inline void transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

void transpose_k(const float* k, size_t kst, size_t tk, size_t d, float* kt, size_t ldt) {
  const size_t d8 = d / 8 * 8;
  for (size_t j0 = 0; j0 < ldt; j0 += 8) {
    for (size_t p0 = 0; p0 < d8; p0 += 8) {
      __m256 r[8];
      for (size_t x = 0; x < 8; ++x)
        r[x] = j0 + x < tk ? _mm256_loadu_ps(k + (j0 + x) * kst + p0) : _mm256_setzero_ps();
      transpose8x8(r);
      for (size_t x = 0; x < 8; ++x) _mm256_storeu_ps(kt + (p0 + x) * ldt + j0, r[x]);
    }
    for (size_t p = d8; p < d; ++p)
      for (size_t j = j0; j < j0 + 8; ++j) kt[p * ldt + j] = j < tk ? k[j * kst + p] : 0.0f;
  }
}

// ---- softmax over a head's logits block, row by row in Needle's order: x / scale, + mask,
// - max, exp, / (0 + sum). Each step runs over the whole block before the next (no calls or
// reductions between a row's steps and the next row's, so rows overlap in the CPU).

// Needle's exp clamps its argument at -104 before anything else (exp8_full in vmath_avx2.cc),
// so every x <= -104 gives exp(-104), which rounds to +0: masked logits need no exp.
constexpr float kExpFloor = -104.0f;

float exp_at_floor() {
  static const float v = [] {
    float x = kExpFloor, y = 0.0f;
    needle::cpu::exp_avx2(&x, &y, 1);
    return y;
  }();
  return v;
}

// x / scale and + mask over one row (n live columns of ld), in place; returns the lane-wise
// largest live entries (-inf in lanes past n) and ORs NaN lanes into *nan. The mask adds
// -FLT_MAX from column masked_from on; Needle adds -0.0 to the others, which leaves every float
// as it is.
__m256 scale_mask_row(float* x, size_t n, size_t ld, float scale, size_t masked_from,
                      __m256* nan) {
  const __m256 vscale = _mm256_set1_ps(scale), lowest = _mm256_set1_ps(-INFINITY);
  __m256 m = lowest;
  for (size_t j = 0; j < ld; j += 8) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + j), vscale);
    if (j + 8 > masked_from) {
      const __m256 unmasked = first_lanes(masked_from > j ? masked_from - j : 0);
      v = _mm256_add_ps(v, _mm256_blendv_ps(_mm256_set1_ps(-FLT_MAX), _mm256_set1_ps(-0.0f),
                                            unmasked));
    }
    _mm256_storeu_ps(x + j, v);
    v = _mm256_blendv_ps(lowest, v, first_lanes(n - j));
    *nan = _mm256_or_ps(*nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    m = _mm256_max_ps(m, v);
  }
  return m;
}

// Lane r: the largest of m[r]'s lanes (NaN-free input). Order is free for a max; which of +-0
// comes back does not matter either: x - (+-0) then differs only for x = +-0, whose exp is 1
// either way.
__m256 max_of_each(__m256 m[8]) {
  transpose8x8(m);
  return _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])),
                       _mm256_max_ps(_mm256_max_ps(m[4], m[5]), _mm256_max_ps(m[6], m[7])));
}

// x - m over one row in place; returns how many leading columns need an exp: masked_from when
// every masked column is then <= kExpFloor (its exp is exp_at_floor()), else n. Columns from
// there to ld become 0, so the vectors holding them take exp's lean path (its lanes are
// independent: no bits change elsewhere).
size_t subtract_max(float* x, size_t n, size_t ld, float m, size_t masked_from) {
  const __m256 vm = _mm256_set1_ps(m), floor = _mm256_set1_ps(kExpFloor);
  bool at_floor = true;
  for (size_t j = 0; j < ld; j += 8) {
    const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + j), vm);
    _mm256_storeu_ps(x + j, v);
    if (j + 8 > masked_from && j < n) {
      const __m256 masked = _mm256_xor_ps(first_lanes(masked_from > j ? masked_from - j : 0),
                                          first_lanes(n - j));  // lanes in [masked_from, n)
      const __m256 above = _mm256_andnot_ps(_mm256_cmp_ps(v, floor, _CMP_LE_OQ), masked);
      at_floor = at_floor && _mm256_movemask_ps(above) == 0;
    }
  }
  const size_t len = masked_from < n && at_floor ? masked_from : n;
  for (size_t j = len / 8 * 8; j < ld; j += 8) {
    const __m256 keep = first_lanes(len > j ? len - j : 0);
    _mm256_storeu_ps(x + j, _mm256_and_ps(_mm256_loadu_ps(x + j), keep));
  }
  return len;
}

// Lane r: 0 + pairwise_sum_f32 (numpy's order) of row r of x[rows, ld] over n columns, for
// 8 <= n <= 128, where that sum is 8 running lanes, a fixed tree of them, then the last n % 8
// columns one by one: the same additions for 8 rows at once, one row per lane.
__m256 sums_of_rows(const float* x, size_t ld, size_t n, size_t rows) {
  const size_t n8 = n / 8 * 8;
  __m256 lanes[8], tails[8];
  for (size_t r = 0; r < 8; ++r) {
    const float* row = x + std::min(r, rows - 1) * ld;  // rows past `rows`: a copy, unused
    lanes[r] = _mm256_loadu_ps(row);
    for (size_t j = 8; j < n8; j += 8) lanes[r] = _mm256_add_ps(lanes[r], _mm256_loadu_ps(row + j));
    tails[r] = n8 < n ? _mm256_loadu_ps(row + n8) : _mm256_setzero_ps();
  }
  transpose8x8(lanes);
  transpose8x8(tails);
  __m256 sum = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(lanes[0], lanes[1]), _mm256_add_ps(lanes[2], lanes[3])),
      _mm256_add_ps(_mm256_add_ps(lanes[4], lanes[5]), _mm256_add_ps(lanes[6], lanes[7])));
  for (size_t t = 0; t < n - n8; ++t) sum = _mm256_add_ps(sum, tails[t]);
  return _mm256_add_ps(_mm256_setzero_ps(), sum);  // Needle's reduce_sum adds its sum to 0
}

// x / sum from the padded row x into the unpadded row p.
void divide_row(const float* x, size_t n, float sum, float* p) {
  const __m256 vsum = _mm256_set1_ps(sum);
  size_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(p + j, _mm256_div_ps(_mm256_loadu_ps(x + j), vsum));
  if (j == n) return;
  alignas(32) float tail[8];
  _mm256_store_ps(tail, _mm256_div_ps(_mm256_loadu_ps(x + j), vsum));
  for (size_t t = 0; j + t < n; ++t) p[j + t] = tail[t];
}

// First column Needle's causal mask hides in row i: -FLT_MAX where j - i >= Tk - Tq + 1.
size_t first_masked(size_t i, const AttnShape& s, bool causal) {
  if (!causal) return s.tk;
  const long first = static_cast<long>(i + s.tk) - static_cast<long>(s.tq) + 1;
  return std::min(s.tk, static_cast<size_t>(std::max(0L, first)));
}

// Rows [i0, i0 + rows) (rows <= 8) of the logits block x [tq, ld] up to the exp: scaled,
// masked, less their max; exp_len[i]: see subtract_max. False when a row holds a NaN.
bool logits_to_exp_args(float* x, size_t ld, size_t i0, size_t rows, const AttnShape& s,
                        bool causal, float scale, size_t* exp_len) {
  __m256 m[8], nan = _mm256_setzero_ps();
  for (size_t r = 0; r < 8; ++r)
    m[r] = r < rows ? scale_mask_row(x + (i0 + r) * ld, s.tk, ld, scale,
                                     first_masked(i0 + r, s, causal), &nan)
                    : _mm256_setzero_ps();
  if (_mm256_movemask_ps(nan) != 0) return false;
  alignas(32) float max[8];
  _mm256_store_ps(max, max_of_each(m));
  for (size_t r = 0; r < rows; ++r)
    exp_len[i0 + r] = subtract_max(x + (i0 + r) * ld, s.tk, ld, max[r],
                                   first_masked(i0 + r, s, causal));
  return true;
}

// Rows [i0, i0 + rows) (rows <= 8) of the exp'd block x into probs [tq, tk]: the masked
// columns' exp filled in, then each row divided by its sum.
void exps_to_probs(float* x, size_t ld, size_t i0, size_t rows, const AttnShape& s,
                   const size_t* exp_len, float* probs) {
  const float floor = exp_at_floor();
  for (size_t r = 0; r < rows; ++r)
    std::fill(x + (i0 + r) * ld + exp_len[i0 + r], x + (i0 + r) * ld + s.tk, floor);
  alignas(32) float sum[8];
  if (s.tk >= 8 && s.tk <= 128) {
    _mm256_store_ps(sum, sums_of_rows(x + i0 * ld, ld, s.tk, rows));
  } else {
    for (size_t r = 0; r < rows; ++r) sum[r] = 0.0f + pairwise_sum_f32(x + (i0 + r) * ld, s.tk);
  }
  for (size_t r = 0; r < rows; ++r)
    divide_row(x + (i0 + r) * ld, s.tk, sum[r], probs + (i0 + r) * s.tk);
}

// probs [tq, tk] from the logits block x [tq, ld] (overwritten); exp_len: tq entries of
// scratch. False (unfinished) when a row holds a NaN: see attention_f32.
bool softmax_block(float* x, size_t ld, const AttnShape& s, bool causal, float scale,
                   size_t* exp_len, float* probs) {
  for (size_t i0 = 0; i0 < s.tq; i0 += 8)
    if (!logits_to_exp_args(x, ld, i0, std::min<size_t>(8, s.tq - i0), s, causal, scale,
                            exp_len))
      return false;
  needle::cpu::exp_avx2(x, x, static_cast<int64_t>(s.tq * ld));
  for (size_t i0 = 0; i0 < s.tq; i0 += 8)
    exps_to_probs(x, ld, i0, std::min<size_t>(8, s.tq - i0), s, exp_len, probs);
  return true;
}

bool has_nan(const float* x, size_t rows, size_t cols, size_t stride) {
  __m256 nan = _mm256_setzero_ps();
  int tail = 0;
  const size_t cols8 = cols / 8 * 8;
  for (size_t i = 0; i < rows; ++i) {
    const float* row = x + i * stride;
    for (size_t j = 0; j < cols8; j += 8) {
      const __m256 v = _mm256_loadu_ps(row + j);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    for (size_t j = cols8; j < cols; ++j) tail |= row[j] != row[j];
  }
  return _mm256_movemask_ps(nan) != 0 || tail != 0;
}

// rows x cols floats from a (row stride lda) to b (row stride ldb).
void copy_rows(const float* a, size_t lda, size_t rows, size_t cols, float* b, size_t ldb) {
  for (size_t i = 0; i < rows; ++i) std::memcpy(b + i * ldb, a + i * lda, cols * sizeof(float));
}

}  // namespace

size_t attention_head_scratch(const AttnShape& s) {
  const size_t tk8 = whole_vectors(s.tk), d8 = whole_vectors(s.d);
  const size_t padded_v_result = s.d % 8 ? (s.tk + s.tq) * d8 : 0;
  return s.d * tk8 + s.tq * tk8 + padded_v_result;
}

// One (batch, head): probs = softmax(q kᵀ / scale + mask), result = probs v. scratch:
// attention_head_scratch(s) floats, row_scratch: tq. False when a NaN shows up in the logits or
// in v (see attention_f32).
bool attention_head_avx2(const float* q, size_t qst, const float* k, size_t kst, const float* v,
                         size_t vst, const AttnShape& s, bool causal, float scale, float* scratch,
                         size_t* row_scratch, float* result, float* probs) {
  if (has_nan(v, s.tk, s.d, vst)) return false;
  const size_t tk8 = whole_vectors(s.tk), d8 = whole_vectors(s.d);
  float* kt = scratch;             // [d, tk8]
  float* logits = kt + s.d * tk8;  // [tq, tk8]
  transpose_k(k, kst, s.tk, s.d, kt, tk8);
  needle_product(s.tq, s.tk, tk8, s.d, q, qst, kt, tk8, logits, tk8);
  if (!softmax_block(logits, tk8, s, causal, scale, row_scratch, probs)) return false;
  if (s.d % 8 == 0 || s.tq <= kNeedleSmallM) {
    needle_product(s.tq, s.d, s.d, s.tk, probs, s.tk, v, vst, result, s.d);
    return true;
  }
  // D not whole vectors: v and the result through rows padded to d8
  float* vp = logits + s.tq * tk8;  // [tk, d8]
  float* rp = vp + s.tk * d8;       // [tq, d8]
  for (size_t j = 0; j < s.tk; ++j) {
    std::memcpy(vp + j * d8, v + j * vst, s.d * sizeof(float));
    std::fill(vp + j * d8 + s.d, vp + (j + 1) * d8, 0.0f);
  }
  chain_product(s.tq, d8 / 8, s.tk, probs, s.tk, vp, d8, rp, d8);
  copy_rows(rp, d8, s.tq, s.d, result, s.d);
  return true;
}

}  // namespace needle_qc
