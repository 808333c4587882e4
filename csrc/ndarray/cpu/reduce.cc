// reduce_sum / reduce_max for every dtype; float sums replicate numpy's pairwise summation.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ndarray/cpu/convert.h"
#include "ndarray/cpu/parallel.h"
#include "ndarray/cpu/reduce.h"
#include "ndarray/cpu/vmath.h"

namespace needle {
namespace cpu {

namespace {

constexpr int64_t kBlock = 128;  // numpy's pairwise block size

// numpy's pairwise sum: 8 running sums over blocks of <= 128, halves split at a multiple of 8.
float pairwise_sum(const float* a, int64_t n) {
  if (n < 8) {
    float res = 0.0f;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= kBlock) {
    float r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// Same order as pairwise_sum, but the top `depth` splits run on separate threads.
float pairwise_sum_parallel(const float* a, int64_t n, int depth) {
  if (depth <= 0 || n <= (1 << 16)) return pairwise_sum(a, n);
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  float left = 0.0f;
  std::thread worker([&] { left = pairwise_sum_parallel(a, n2, depth - 1); });
  const float right = pairwise_sum_parallel(a + n2, n - n2, depth - 1);
  worker.join();
  return left + right;
}

// NaN-propagating max of a block; 8 independent lanes (a maxps pattern) so the loop vectorizes.
float block_max(const float* a, int64_t n) {
  float r[8];
  int32_t nan[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const float lowest = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < 8; ++j) r[j] = lowest;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const float x = a[i + j];
      nan[j] |= x != x;
      r[j] = r[j] > x ? r[j] : x;
    }
  }
  float m = lowest;
  bool any_nan = false;
  for (int j = 0; j < 8; ++j) {
    m = m > r[j] ? m : r[j];
    any_nan |= nan[j] != 0;
  }
  for (; i < n; ++i) {
    any_nan |= a[i] != a[i];
    m = m > a[i] ? m : a[i];
  }
  return any_nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

// Runs row_fn(row, values) over output rows, staging fp16/bf16 rows through float32.
template <typename RowFn>
void float_rows(const Array& a, Array& out, int64_t rs, RowFn row_fn) {
  const int64_t rows = static_cast<int64_t>(out.size);
  parallel_for(rows, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(rs, 1)), 1,
               [&](int64_t lo, int64_t hi) {
                 std::vector<float> buf(a.dtype == DType::kFloat32 ? 0 : rs);
                 for (int64_t r = lo; r < hi; ++r) {
                   const float* row = a.as<float>() + r * rs;
                   if (a.dtype != DType::kFloat32) {
                     load_as_float(a, r * rs, rs, buf.data());
                     row = buf.data();
                   }
                   const float v = row_fn(row);
                   store_from_float(&v, out, r, 1);
                 }
               });
}

template <typename T>
void int_sum(const Array& a, Array& out, int64_t rs) {
  const T* x = a.as<T>();
  int32_t* o = out.as<int32_t>();
  parallel_for(static_cast<int64_t>(out.size), 64, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      uint32_t acc = 0;  // unsigned: wrap-around is defined
      for (int64_t i = 0; i < rs; ++i) acc += static_cast<uint32_t>(x[r * rs + i]);
      o[r] = static_cast<int32_t>(acc);
    }
  });
}

template <typename T>
void int_max(const Array& a, Array& out, int64_t rs) {
  const T* x = a.as<T>();
  T* o = out.as<T>();
  parallel_for(static_cast<int64_t>(out.size), 64, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) o[r] = *std::max_element(x + r * rs, x + (r + 1) * rs);
  });
}

int split_depth() {
  int depth = 0;
  for (int t = num_threads(); t > 1; t /= 2) ++depth;
  return depth;
}

}  // namespace

void reduce_sum(const Array& a, Array& out, int64_t rs) {
  if (dtype_is_float(a.dtype)) {
    if (out.size == 1 && a.dtype == DType::kFloat32) {
      // One long row: keep numpy's order but run the top pairwise splits on separate threads.
      const float v = 0.0f + pairwise_sum_parallel(a.as<float>(), rs, split_depth());
      out.as<float>()[0] = v;
      return;
    }
    float_rows(a, out, rs, [rs](const float* row) { return 0.0f + pairwise_sum(row, rs); });
    return;
  }
  switch (a.dtype) {
    case DType::kInt8: return int_sum<int8_t>(a, out, rs);
    case DType::kUInt8: return int_sum<uint8_t>(a, out, rs);
    default: return int_sum<int32_t>(a, out, rs);
  }
}

void reduce_max(const Array& a, Array& out, int64_t rs) {
  if (rs <= 0) throw std::invalid_argument("reduce_max: reduce_size must be >= 1");
  if (dtype_is_float(a.dtype)) {
    if (vmath_avx2_supported()) {
      float_rows(a, out, rs, [rs](const float* row) { return max_avx2(row, rs); });
    } else {
      float_rows(a, out, rs, [rs](const float* row) { return block_max(row, rs); });
    }
    return;
  }
  switch (a.dtype) {
    case DType::kInt8: return int_max<int8_t>(a, out, rs);
    case DType::kUInt8: return int_max<uint8_t>(a, out, rs);
    default: return int_max<int32_t>(a, out, rs);
  }
}

}  // namespace cpu
}  // namespace needle
