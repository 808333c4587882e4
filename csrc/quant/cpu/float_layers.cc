// float_layers.cc: embedding gather and layer norm (fp32), row-parallel on the shared pool.
#include "quant/cpu/float_layers.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "quant/cpu/parallel.h"

namespace needle_qc {

float pairwise_sum_f32(const float* a, size_t n) {
  constexpr size_t kBlock = 128;
  if (n < 8) {
    float res = 0.0f;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= kBlock) {
    float r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t half = n / 2;
  half -= half % 8;
  return pairwise_sum_f32(a, half) + pairwise_sum_f32(a + half, n - half);
}

void embedding_rows_f32(const float* table, size_t dim, const int64_t* ids, size_t n,
                        float* out) {
  // a row is a few hundred bytes: split only when there are enough rows to pay for a wake-up
  parallel_for(n, 2048, [&](size_t lo, size_t hi) {
    for (size_t i = lo; i < hi; ++i)
      std::memcpy(out + i * dim, table + static_cast<size_t>(ids[i]) * dim,
                  dim * sizeof(float));
  });
}

namespace {

void layer_norm_row(const float* x, size_t dim, const float* w, const float* b, float eps,
                    float* c /* dim scratch */, float* y) {
  const float n = static_cast<float>(dim);
  const float mean = (0.0f + pairwise_sum_f32(x, dim)) / n;
  for (size_t j = 0; j < dim; ++j) c[j] = x[j] - mean;
  for (size_t j = 0; j < dim; ++j) y[j] = c[j] * c[j];  // y holds c² until the end
  const float var = (0.0f + pairwise_sum_f32(y, dim)) / n;
  const float den = std::sqrt(var + eps);  // Needle's x ** 0.5 is sqrt (numpy's shortcut)
  for (size_t j = 0; j < dim; ++j) {
    const float scaled = (c[j] / den) * w[j];
    y[j] = scaled + b[j];
  }
}

}  // namespace

void layer_norm_rows_f32(const float* x, size_t rows, size_t dim, const float* w,
                         const float* b, float eps, float* y) {
  // ~50 ns a row of 32: split only above ~50 us of work, a wake-up costs more under load
  const size_t min_rows = dim >= 32768 ? 1 : 32768 / dim;
  parallel_for(rows, min_rows, [&](size_t lo, size_t hi) {
    std::vector<float> c(dim);
    for (size_t r = lo; r < hi; ++r)
      layer_norm_row(x + r * dim, dim, w, b, eps, c.data(), y + r * dim);
  });
}

}  // namespace needle_qc
