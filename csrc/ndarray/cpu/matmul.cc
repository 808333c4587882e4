// matmul dispatch: fp32 -> sgemm, fp16/bf16 -> fp32 staging + sgemm, integers -> int32 GEMM.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "ndarray/cpu/convert.h"
#include "ndarray/cpu/matmul.h"
#include "ndarray/cpu/parallel.h"
#include "ndarray/cpu/sgemm.h"

namespace needle {
namespace cpu {

namespace {

constexpr int64_t kIntKBlock = 256;  // k rows of B kept hot in L2 across output rows

// out[i, :] = sum_k a[i, k] * b[k, :] in uint32, i.e. int32 two's-complement wrap-around.
// The k-block loop sits outside the row loop so a block of B rows is reused from L2.
template <typename T>
void int_gemm(const T* a, const T* b, int32_t* out, int64_t m, int64_t n, int64_t p) {
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, n * p));
  // uint32 aliases int32 legally; unsigned arithmetic makes the wrap-around defined.
  uint32_t* acc = reinterpret_cast<uint32_t*>(out);
  parallel_for(m, grain, 1, [&](int64_t lo, int64_t hi) {
    std::fill(acc + lo * p, acc + hi * p, 0u);
    for (int64_t k0 = 0; k0 < n; k0 += kIntKBlock) {
      const int64_t k1 = std::min(n, k0 + kIntKBlock);
      for (int64_t i = lo; i < hi; ++i) {
        uint32_t* __restrict row = acc + i * p;
        for (int64_t k = k0; k < k1; ++k) {
          const uint32_t av = static_cast<uint32_t>(static_cast<int32_t>(a[i * n + k]));
          const T* __restrict brow = b + k * p;
          for (int64_t j = 0; j < p; ++j) {
            row[j] += av * static_cast<uint32_t>(static_cast<int32_t>(brow[j]));
          }
        }
      }
    }
  });
}

// Converts rows x cols between row-major and the tiled layout [rows/T][cols/T][T][T].
void retile(const float* src, float* dst, int64_t rows, int64_t cols, bool to_tiled) {
  constexpr int64_t T = kTile;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t tiled = ((i / T) * (cols / T) + j / T) * T * T + (i % T) * T + j % T;
      const int64_t flat = i * cols + j;
      if (to_tiled) {
        dst[tiled] = src[flat];
      } else {
        dst[flat] = src[tiled];
      }
    }
  }
}

// Element offsets of one product inside a, b and out (a batch item; all zero for matmul).
struct Offsets {
  int64_t a = 0, b = 0, out = 0;
};

void half_matmul(const Array& a, const Array& b, Array& out, const Offsets& at, int64_t m,
                 int64_t n, int64_t p) {
  std::vector<float> af(static_cast<size_t>(m * n)), bf(static_cast<size_t>(n * p));
  std::vector<float> cf(static_cast<size_t>(m * p));
  load_as_float(a, at.a, m * n, af.data());
  load_as_float(b, at.b, n * p, bf.data());
  sgemm(m, p, n, af.data(), bf.data(), cf.data());
  store_from_float(cf.data(), out, at.out, m * p);
}

void matmul_at(const Array& a, const Array& b, Array& out, const Offsets& at, int64_t m,
               int64_t n, int64_t p) {
  switch (a.dtype) {
    case DType::kFloat32:
      return sgemm(m, p, n, a.as<float>() + at.a, b.as<float>() + at.b, out.as<float>() + at.out);
    case DType::kFloat16:
    case DType::kBFloat16: return half_matmul(a, b, out, at, m, n, p);
    case DType::kInt8:
      return int_gemm(a.as<int8_t>() + at.a, b.as<int8_t>() + at.b, out.as<int32_t>() + at.out, m,
                      n, p);
    case DType::kUInt8:
      return int_gemm(a.as<uint8_t>() + at.a, b.as<uint8_t>() + at.b,
                      out.as<int32_t>() + at.out, m, n, p);
    case DType::kInt32:
      return int_gemm(a.as<int32_t>() + at.a, b.as<int32_t>() + at.b,
                      out.as<int32_t>() + at.out, m, n, p);
  }
}

}  // namespace

void matmul(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p) {
  matmul_at(a, b, out, Offsets{}, m, n, p);
}

void matmul_batched(const Array& a, const Array& b, Array& out, int64_t count, int64_t m,
                    int64_t n, int64_t p) {
  for (int64_t i = 0; i < count; ++i)
    matmul_at(a, b, out, Offsets{i * m * n, i * n * p, i * m * p}, m, n, p);
}

void matmul_tiled(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p) {
  // Untile into row-major scratch, run the packed sgemm, tile the result: O(n^2) copies around an
  // O(n^3) product, so the course layout runs at sgemm speed.
  std::vector<float> ar(static_cast<size_t>(m * n)), br(static_cast<size_t>(n * p));
  std::vector<float> cr(static_cast<size_t>(m * p));
  retile(a.as<float>(), ar.data(), m, n, false);
  retile(b.as<float>(), br.data(), n, p, false);
  sgemm(m, p, n, ar.data(), br.data(), cr.data());
  retile(cr.data(), out.as<float>(), m, p, true);
}

}  // namespace cpu
}  // namespace needle
