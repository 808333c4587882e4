// Elementwise kernels: one float32 loop per op, fp16/bf16 through fp32 chunks, integer wrap-around.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "ndarray/cpu/convert.h"
#include "ndarray/cpu/ewise.h"
#include "ndarray/cpu/parallel.h"
#include "ndarray/cpu/vmath.h"
#include "ndarray/cpu/vmath_portable.h"

namespace needle {
namespace cpu {

namespace {

constexpr int64_t kGrain = 1 << 15;  // below this a thread costs more than it saves
constexpr int64_t kChunk = 1024;     // fp16/bf16 staging buffer (fits L1 three times over)

struct FAdd { float operator()(float x, float y) const { return x + y; } };
struct FMul { float operator()(float x, float y) const { return x * y; } };
struct FDiv { float operator()(float x, float y) const { return x / y; } };
// NaN-propagating maximum, as numpy.maximum (which returns y on ties: max(-0, +0) is +0).
struct FMax {
  float operator()(float x, float y) const { return (x > y || x != x) ? x : y; }
};
struct FEq { float operator()(float x, float y) const { return x == y ? 1.0f : 0.0f; } };
struct FGe { float operator()(float x, float y) const { return x >= y ? 1.0f : 0.0f; } };
struct FPow { float operator()(float x, float y) const { return std::pow(x, y); } };
struct FLog { float operator()(float x) const { return std::log(x); } };
struct FExp { float operator()(float x) const { return std::exp(x); } };
struct FTanh { float operator()(float x) const { return tanh_portable(x); } };

// Applies f over n elements; `b` is either an array or (b_stride 0) a single scalar.
template <typename F>
void float_binary_loop(F f, const Array& a, const float* b_scalar, const Array* b, Array& out) {
  const int64_t n = static_cast<int64_t>(out.size);
  if (out.dtype == DType::kFloat32) {
    const float* x = a.as<float>();
    float* o = out.as<float>();
    if (b_scalar != nullptr) {
      const float y = *b_scalar;
      parallel_for(n, kGrain, 16, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) o[i] = f(x[i], y);
      });
    } else {
      const float* y = b->as<float>();
      parallel_for(n, kGrain, 16, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) o[i] = f(x[i], y[i]);
      });
    }
    return;
  }
  parallel_for(n, kGrain, kChunk, [&](int64_t lo, int64_t hi) {
    float xa[kChunk], yb[kChunk];
    for (int64_t i = lo; i < hi; i += kChunk) {
      const int64_t m = std::min(kChunk, hi - i);
      load_as_float(a, i, m, xa);
      if (b_scalar != nullptr) {
        for (int64_t j = 0; j < m; ++j) xa[j] = f(xa[j], *b_scalar);
      } else {
        load_as_float(*b, i, m, yb);
        for (int64_t j = 0; j < m; ++j) xa[j] = f(xa[j], yb[j]);
      }
      store_from_float(xa, out, i, m);
    }
  });
}

// Runs bulk(x, y, count) over float32 runs of `a`, staging fp16/bf16 through float buffers.
template <typename Bulk>
void float_unary_bulk(Bulk bulk, const Array& a, Array& out) {
  const int64_t n = static_cast<int64_t>(out.size);
  parallel_for(n, kGrain / 4, kChunk, [&](int64_t lo, int64_t hi) {
    if (out.dtype == DType::kFloat32) {
      bulk(a.as<float>() + lo, out.as<float>() + lo, hi - lo);
      return;
    }
    float buf[kChunk];
    for (int64_t i = lo; i < hi; i += kChunk) {
      const int64_t m = std::min(kChunk, hi - i);
      load_as_float(a, i, m, buf);
      bulk(buf, buf, m);
      store_from_float(buf, out, i, m);
    }
  });
}

template <typename F>
void float_unary_loop(F f, const Array& a, Array& out) {
  float_unary_bulk(
      [f](const float* x, float* y, int64_t m) {
        for (int64_t i = 0; i < m; ++i) y[i] = f(x[i]);
      },
      a, out);
}

// x ** k for a small integer k: product in double, rounded once (what a correctly rounded pow
// gives, and unlike powf it vectorizes).
void int_power(int k, const Array& a, Array& out) {
  float_unary_bulk(
      [k](const float* x, float* y, int64_t m) {
        const int e = k < 0 ? -k : k;
        for (int64_t i = 0; i < m; ++i) {
          double base = x[i], acc = 1.0;
          for (int b = 0; b < e; ++b) acc *= base;
          y[i] = static_cast<float>(k < 0 ? 1.0 / acc : acc);
        }
      },
      a, out);
}

void float_binary(BinOp op, const Array& a, const float* s, const Array* b, Array& out) {
  switch (op) {
    case BinOp::kAdd: return float_binary_loop(FAdd{}, a, s, b, out);
    case BinOp::kMul: return float_binary_loop(FMul{}, a, s, b, out);
    case BinOp::kDiv: return float_binary_loop(FDiv{}, a, s, b, out);
    case BinOp::kMax: return float_binary_loop(FMax{}, a, s, b, out);
    case BinOp::kEq: return float_binary_loop(FEq{}, a, s, b, out);
    case BinOp::kGe: return float_binary_loop(FGe{}, a, s, b, out);
    case BinOp::kPow: return float_binary_loop(FPow{}, a, s, b, out);
  }
}

// Integer ops in 64-bit (unsigned for add/mul so overflow is defined), then wrapped to T.
template <typename T>
T int_apply(BinOp op, int64_t x, int64_t y) {
  switch (op) {
    case BinOp::kAdd: return int_wrap<T>(static_cast<int64_t>(uint64_t(x) + uint64_t(y)));
    case BinOp::kMul: return int_wrap<T>(static_cast<int64_t>(uint64_t(x) * uint64_t(y)));
    case BinOp::kMax: return int_wrap<T>(std::max(x, y));
    case BinOp::kEq: return x == y ? 1 : 0;
    case BinOp::kGe: return x >= y ? 1 : 0;
    default: return 0;  // rejected before the loop
  }
}

template <typename T>
void int_binary_typed(BinOp op, const Array& a, const int64_t* s, const Array* b, Array& out) {
  const T* x = a.as<T>();
  const T* y = b != nullptr ? b->as<T>() : nullptr;
  T* o = out.as<T>();
  parallel_for(static_cast<int64_t>(out.size), kGrain, 64, [&](int64_t lo, int64_t hi) {
    if (s != nullptr) {
      const int64_t v = *s;
      for (int64_t i = lo; i < hi; ++i) o[i] = int_apply<T>(op, x[i], v);
    } else {
      for (int64_t i = lo; i < hi; ++i) o[i] = int_apply<T>(op, x[i], y[i]);
    }
  });
}

void int_binary(BinOp op, const char* name, const Array& a, const int64_t* s, const Array* b,
                Array& out) {
  if (op == BinOp::kDiv || op == BinOp::kPow) {
    throw std::invalid_argument(std::string(name) + " is not defined for integer dtype " +
                                dtype_name(a.dtype));
  }
  switch (a.dtype) {
    case DType::kInt8: return int_binary_typed<int8_t>(op, a, s, b, out);
    case DType::kUInt8: return int_binary_typed<uint8_t>(op, a, s, b, out);
    default: return int_binary_typed<int32_t>(op, a, s, b, out);
  }
}

}  // namespace

void ewise_binary(BinOp op, const char* name, const Array& a, const Array& b, Array& out) {
  if (dtype_is_float(a.dtype)) {
    float_binary(op, a, nullptr, &b, out);
  } else {
    int_binary(op, name, a, nullptr, &b, out);
  }
}

void scalar_binary(BinOp op, const char* name, const Array& a, double val, Array& out) {
  if (dtype_is_float(a.dtype)) {
    const float v = static_cast<float>(val);
    // numpy's `x ** c` shortcuts these exponents (square, sqrt, reciprocal, identity); match it.
    if (op == BinOp::kPow && v == 2.0f) return float_binary(BinOp::kMul, a, nullptr, &a, out);
    if (op == BinOp::kPow && v == 1.0f) return float_binary(BinOp::kMul, a, &v, nullptr, out);
    if (op == BinOp::kPow && v == 0.5f) {
      return float_unary_loop([](float x) { return std::sqrt(x); }, a, out);
    }
    if (op == BinOp::kPow && v == -1.0f) {
      return float_unary_loop([](float x) { return 1.0f / x; }, a, out);
    }
    if (op == BinOp::kPow && v == std::trunc(v) && std::fabs(v) <= 8.0f && v != 0.0f) {
      return int_power(static_cast<int>(v), a, out);
    }
    float_binary(op, a, &v, nullptr, out);
    return;
  }
  // Python passes integral values; anything else is truncated like int(val), as the numpy backend.
  if (!std::isfinite(val) || std::fabs(val) > 9.2e18) {
    throw std::invalid_argument(std::string(name) + ": integer arrays need a finite integer scalar");
  }
  const int64_t v = static_cast<int64_t>(std::trunc(val));
  int_binary(op, name, a, &v, nullptr, out);
}

void ewise_unary(UnOp op, const char* name, const Array& a, Array& out) {
  if (!dtype_is_float(a.dtype)) {
    throw std::invalid_argument(std::string(name) + " is not defined for integer dtype " +
                                dtype_name(a.dtype));
  }
  if (vmath_avx2_supported()) {
    switch (op) {
      case UnOp::kLog: return float_unary_bulk(log_avx2, a, out);
      case UnOp::kExp: return float_unary_bulk(exp_avx2, a, out);
      case UnOp::kTanh: return float_unary_bulk(tanh_avx2, a, out);
    }
  }
  switch (op) {
    case UnOp::kLog: return float_unary_loop(FLog{}, a, out);
    case UnOp::kExp: return float_unary_loop(FExp{}, a, out);
    case UnOp::kTanh: return float_unary_loop(FTanh{}, a, out);
  }
}

void fill(Array& out, double val) {
  const uint32_t bits = scalar_bits(val, out.dtype);
  const int64_t n = static_cast<int64_t>(out.size);
  switch (out.itemsize()) {
    case 1: std::fill_n(out.as<uint8_t>(), n, static_cast<uint8_t>(bits)); break;
    case 2: std::fill_n(out.as<uint16_t>(), n, static_cast<uint16_t>(bits)); break;
    default: std::fill_n(out.as<uint32_t>(), n, bits); break;
  }
}

}  // namespace cpu
}  // namespace needle
