// float_layers.h: fp32 layers of the language models that Needle evaluates with several ops:
// embedding row gather and layer norm in Needle's exact arithmetic order.
#pragma once

#include <cstddef>
#include <cstdint>

namespace needle_qc {

// numpy's pairwise sum of n floats (8 running sums over blocks of <= 128, halves split at a
// multiple of 8): the order Needle's reduce_sum (and numpy's float32 sum) uses.
float pairwise_sum_f32(const float* a, size_t n);

// out[i, :] = table[ids[i], :] for i < n; ids already checked to lie in [0, rows).
void embedding_rows_f32(const float* table, size_t dim, const int64_t* ids, size_t n,
                        float* out);

// Needle LayerNorm1d over rows of length dim, op for op:
//   mean = (0 + Σx) / dim; c = x - mean; var = (0 + Σc²) / dim;
//   y = c / sqrt(var + eps) * w + b   (every step rounded to float32, no FMA; Needle computes
//   x ** 0.5 as sqrt, like numpy).
void layer_norm_rows_f32(const float* x, size_t rows, size_t dim, const float* w,
                         const float* b, float eps, float* y);

}  // namespace needle_qc
