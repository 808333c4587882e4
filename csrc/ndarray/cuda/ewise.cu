// Elementwise kernels: one template per kind (binary, scalar, unary, astype), the op a run-time
// argument, so each kernel is instantiated once per dtype instead of once per (op, dtype).
#include <cmath>
#include <stdexcept>
#include <string>

#include "ndarray/cuda/ops.cuh"

namespace needle {
namespace cuda {

namespace {

/// numpy's maximum: NaN in either operand propagates; otherwise the larger, and on ties
/// (+0 vs -0) the second operand, as numpy's SIMD loops do.
__device__ inline float max_f32(float x, float y) { return (x > y || isnan(x)) ? x : y; }

/// Exponents 2, 0.5 and -1 use the correctly rounded square / sqrt / reciprocal (the libm powf
/// the numpy backend calls is that accurate there; CUDA's powf may be a few ulp off). sqrt only
/// for finite x > 0: pow(-0, 0.5) = +0 and pow(-inf, 0.5) = +inf, unlike sqrt.
__device__ inline float pow_f32(float x, float y) {
  if (y == 2.0f) return x * x;
  if (y == 0.5f && x > 0.0f && x < INFINITY) return sqrtf(x);
  if (y == -1.0f) return 1.0f / x;
  return powf(x, y);
}

__device__ inline float float_op(BinaryOp op, float x, float y) {
  switch (op) {
    case BinaryOp::kAdd: return x + y;
    case BinaryOp::kMul: return x * y;
    case BinaryOp::kDiv: return x / y;
    case BinaryOp::kPow: return pow_f32(x, y);
    case BinaryOp::kMax: return max_f32(x, y);
    case BinaryOp::kEq: return x == y ? 1.0f : 0.0f;
    case BinaryOp::kGe: return x >= y ? 1.0f : 0.0f;
  }
  return 0.0f;
}

/// Integer ops in int64; the caller wraps to the storage type (two's complement, like numpy).
__device__ inline int64_t int_op(BinaryOp op, int64_t x, int64_t y) {
  switch (op) {
    case BinaryOp::kAdd: return x + y;
    case BinaryOp::kMul:  // unsigned so the wrap-around is defined behaviour
      return static_cast<int64_t>(static_cast<uint64_t>(x) * static_cast<uint64_t>(y));
    case BinaryOp::kMax: return x >= y ? x : y;
    case BinaryOp::kEq: return x == y ? 1 : 0;
    case BinaryOp::kGe: return x >= y ? 1 : 0;
    default: return 0;  // div/pow on integers are rejected on the host
  }
}

template <typename T>
__device__ inline T apply_binary(BinaryOp op, T x, T y) {
  if constexpr (IsFloatStorage<T>::value) {
    return from_f32<T>(float_op(op, to_f32(x), to_f32(y)));
  } else {
    return wrap_from_i64<T>(int_op(op, to_i64(x), to_i64(y)));
  }
}

template <typename T>
__global__ void ewise_binary_kernel(const T* a, const T* b, T* out, BinaryOp op, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    out[i] = apply_binary<T>(op, a[i], b[i]);
  }
}

/// The scalar arrives as float32 (float dtypes) and as int64 (integer dtypes, never wrapped
/// before the op so eq/ge compare the exact value).
template <typename T>
__global__ void scalar_binary_kernel(const T* a, float fv, int64_t iv, T* out, BinaryOp op,
                                     size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    if constexpr (IsFloatStorage<T>::value) {
      out[i] = from_f32<T>(float_op(op, to_f32(a[i]), fv));
    } else {
      out[i] = wrap_from_i64<T>(int_op(op, to_i64(a[i]), iv));
    }
  }
}

__device__ inline float unary_op(UnaryOp op, float x) {
  switch (op) {
    case UnaryOp::kLog: return logf(x);
    case UnaryOp::kExp: return expf(x);
    case UnaryOp::kTanh: return tanhf(x);
  }
  return 0.0f;
}

template <typename T>
__global__ void ewise_unary_kernel(const T* a, T* out, UnaryOp op, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    out[i] = from_f32<T>(unary_op(op, to_f32(a[i])));
  }
}

template <typename Tin, typename Tout>
__global__ void astype_kernel(const Tin* a, Tout* out, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    out[i] = convert<Tin, Tout>(a[i]);
  }
}

std::string where(const char* fn) { return std::string("ndarray_backend_cuda.") + fn + ": "; }

void check_pair(const char* fn, const char* name, const CudaArray& x, const CudaArray& out) {
  if (x.dtype() != out.dtype()) {
    throw std::invalid_argument(where(fn) + name + " is " + dtype_name(x.dtype()) +
                                " but out is " + dtype_name(out.dtype()));
  }
  if (x.size() != out.size()) {
    throw std::invalid_argument(where(fn) + name + " has " + std::to_string(x.size()) +
                                " elements but out has " + std::to_string(out.size()));
  }
}

void check_op_dtype(const char* fn, BinaryOp op, DType dt) {
  bool float_only = op == BinaryOp::kDiv || op == BinaryOp::kPow;
  if (float_only && !dtype_is_float(dt)) {
    throw DTypeError(where(fn) + "not defined for integer dtype " + dtype_name(dt));
  }
}

}  // namespace

void ewise_binary(const char* fn, BinaryOp op, const CudaArray& a, const CudaArray& b,
                  CudaArray& out) {
  check_pair(fn, "a", a, out);
  check_pair(fn, "b", b, out);
  check_op_dtype(fn, op, out.dtype());
  size_t n = out.size();
  if (n == 0) return;
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    ewise_binary_kernel<T><<<grid_for(n), BASE_THREAD_NUM>>>(a.data<T>(), b.data<T>(),
                                                             out.data<T>(), op, n);
  });
  check_launch(fn);
}

void scalar_binary(const char* fn, BinaryOp op, const CudaArray& a, double val, CudaArray& out) {
  check_pair(fn, "a", a, out);
  check_op_dtype(fn, op, out.dtype());
  int64_t iv = 0;
  if (!dtype_is_float(out.dtype())) {
    // Integer dtypes take integral scalars only; the int64 range keeps the cast defined.
    if (!(std::nearbyint(val) == val) || std::fabs(val) > 9.0e18) {
      throw std::invalid_argument(where(fn) + "integer dtype " + dtype_name(out.dtype()) +
                                  " needs an integral scalar, got " + std::to_string(val));
    }
    iv = static_cast<int64_t>(val);
  }
  size_t n = out.size();
  if (n == 0) return;
  float fv = static_cast<float>(val);
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    scalar_binary_kernel<T><<<grid_for(n), BASE_THREAD_NUM>>>(a.data<T>(), fv, iv,
                                                              out.data<T>(), op, n);
  });
  check_launch(fn);
}

void ewise_unary(const char* fn, UnaryOp op, const CudaArray& a, CudaArray& out) {
  check_pair(fn, "a", a, out);
  if (!dtype_is_float(out.dtype())) {
    throw DTypeError(where(fn) + "not defined for integer dtype " +
                            dtype_name(out.dtype()));
  }
  size_t n = out.size();
  if (n == 0) return;
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (IsFloatStorage<T>::value) {
      ewise_unary_kernel<T><<<grid_for(n), BASE_THREAD_NUM>>>(a.data<T>(), out.data<T>(), op,
                                                              n);
    }
  });
  check_launch(fn);
}

void astype(const CudaArray& a, CudaArray& out) {
  if (a.size() != out.size()) {
    throw std::invalid_argument(where("astype") + "a has " + std::to_string(a.size()) +
                                " elements but out has " + std::to_string(out.size()));
  }
  size_t n = out.size();
  if (n == 0) return;
  dispatch_dtype(a.dtype(), [&](auto in_tag) {
    using Tin = decltype(in_tag);
    dispatch_dtype(out.dtype(), [&](auto out_tag) {
      using Tout = decltype(out_tag);
      astype_kernel<Tin, Tout><<<grid_for(n), BASE_THREAD_NUM>>>(a.data<Tin>(),
                                                                 out.data<Tout>(), n);
    });
  });
  check_launch("astype");
}

}  // namespace cuda
}  // namespace needle
