// Shared pieces of the CUDA NDArray backend: dtypes, error checks, launch shapes, conversions.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "common/cuda_device.h"
#include "common/dtype.h"
#include "common/float_bits.h"

namespace needle {
namespace cuda {

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Throws std::runtime_error (Python RuntimeError) naming the failed call and CUDA's message.
inline void check_cuda(cudaError_t err, const char* what) {
  common::throw_on_cuda_error(err, "ndarray_backend_cuda", what);
}

/// An op the dtype does not support (div/pow/log on integers); the module raises TypeError.
struct DTypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

#define NEEDLE_CUDA_CHECK(call) ::needle::cuda::check_cuda((call), #call)

/// Checks the most recent kernel launch (bad configuration, missing image for this GPU, ...).
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

// ---------------------------------------------------------------------------------------------
// Dtypes
// ---------------------------------------------------------------------------------------------

using common::DType;
using common::dtype_is_float;
using common::dtype_itemsize;
using common::dtype_name;

/// bfloat16 storage: the top 16 bits of a float32. A struct (not uint16_t) so templates can
/// tell it apart from a 16-bit integer.
struct BF16 {
  uint16_t bits;
};

DType dtype_from_name(const std::string& name);  // std::invalid_argument on unknown names

/// Calls fn(T{}) with T the storage type of dt, so one generic lambda serves all six dtypes.
template <typename Fn>
auto dispatch_dtype(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::kFloat32: return fn(float{});
    case DType::kFloat16: return fn(__half{});
    case DType::kBFloat16: return fn(BF16{});
    case DType::kInt8: return fn(int8_t{});
    case DType::kUInt8: return fn(uint8_t{});
    case DType::kInt32: return fn(int32_t{});
  }
  throw std::logic_error("ndarray_backend_cuda: corrupt dtype tag");
}

template <typename T>
struct IsFloatStorage {
  static constexpr bool value = false;
};
template <>
struct IsFloatStorage<float> {
  static constexpr bool value = true;
};
template <>
struct IsFloatStorage<__half> {
  static constexpr bool value = true;
};
template <>
struct IsFloatStorage<BF16> {
  static constexpr bool value = true;
};

// ---------------------------------------------------------------------------------------------
// Launch shapes
// ---------------------------------------------------------------------------------------------

constexpr int BASE_THREAD_NUM = 256;
constexpr size_t MAX_VEC_SIZE = 8;  // most dims compact/setitem accept

/// Grid for a grid-stride loop over n elements (n > 0); capped so huge n stays a legal launch.
inline unsigned int grid_for(size_t n) {
  size_t blocks = (n + BASE_THREAD_NUM - 1) / BASE_THREAD_NUM;
  const size_t cap = size_t(1) << 20;
  return static_cast<unsigned int>(blocks < cap ? blocks : cap);
}

// ---------------------------------------------------------------------------------------------
// Conversions (host and device: the host uses them for scalars, kernels for arrays)
// ---------------------------------------------------------------------------------------------

__host__ __device__ inline float bits_to_f32(uint32_t u) { return common::bits_float(u); }
__host__ __device__ inline uint32_t f32_to_bits(float f) { return common::float_bits(f); }
__host__ __device__ inline BF16 f32_to_bf16(float f) { return BF16{common::float_to_bf16(f)}; }

/// float32 -> int32: NaN -> 0, round half to even, saturate (what __float2int_rn does).
__host__ __device__ inline int32_t f32_to_i32_rne_sat(float v) {
  if (v != v) return 0;
  float r = rintf(v);  // ties to even in the default rounding mode, host and device alike
  if (r >= 2147483648.0f) return INT32_MAX;
  if (r < -2147483648.0f) return INT32_MIN;
  return static_cast<int32_t>(r);
}

__host__ __device__ inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

template <typename T>
__host__ __device__ inline float to_f32(T v) {
  return static_cast<float>(v);  // int8/uint8 exact; int32 rounds to nearest even
}
template <>
__host__ __device__ inline float to_f32<__half>(__half v) {
  return __half2float(v);
}
template <>
__host__ __device__ inline float to_f32<BF16>(BF16 v) {
  return bits_to_f32(static_cast<uint32_t>(v.bits) << 16);
}

/// float32 -> storage type with the astype rules of docs/backend-contract.md.
template <typename T>
__host__ __device__ inline T from_f32(float v);
template <>
__host__ __device__ inline float from_f32<float>(float v) {
  return v;
}
template <>
__host__ __device__ inline __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__host__ __device__ inline BF16 from_f32<BF16>(float v) {
  return f32_to_bf16(v);
}
template <>
__host__ __device__ inline int32_t from_f32<int32_t>(float v) {
  return f32_to_i32_rne_sat(v);
}
template <>
__host__ __device__ inline int8_t from_f32<int8_t>(float v) {
  return static_cast<int8_t>(clamp_i32(f32_to_i32_rne_sat(v), -128, 127));
}
template <>
__host__ __device__ inline uint8_t from_f32<uint8_t>(float v) {
  return static_cast<uint8_t>(clamp_i32(f32_to_i32_rne_sat(v), 0, 255));
}

__host__ __device__ inline float f64_to_f32_round_odd(double d) {
  return common::double_to_float_round_odd(d);
}

/// float64 -> float storage, one correct rounding (ties to even) straight from the double.
template <typename T>
__host__ __device__ inline T from_f64(double d) {
  if constexpr (std::is_same<T, float>::value) {
    return static_cast<float>(d);
  } else {
    return from_f32<T>(f64_to_f32_round_odd(d));
  }
}

/// Integer storage <-> int64.
template <typename T>
__host__ __device__ inline int64_t to_i64(T v) {
  return static_cast<int64_t>(v);
}
/// Two's-complement wrap (numpy's semantics for integer add/mul results).
template <typename T>
__host__ __device__ inline T wrap_from_i64(int64_t v) {
  return static_cast<T>(static_cast<uint64_t>(v));  // keeps the low bits
}
/// Saturation (the astype rule for int -> int).
template <typename T>
__host__ __device__ inline T saturate_from_i64(int64_t v) {
  constexpr int64_t lo = std::numeric_limits<T>::min(), hi = std::numeric_limits<T>::max();
  return static_cast<T>(v < lo ? lo : (v > hi ? hi : v));
}

/// Any dtype -> any dtype with the astype rules: int -> int saturates; int -> float rounds once
/// from the exact value; float -> anything goes through its exact float32 value.
template <typename Tin, typename Tout>
__host__ __device__ inline Tout convert(Tin v) {
  if constexpr (!IsFloatStorage<Tin>::value && !IsFloatStorage<Tout>::value) {
    return saturate_from_i64<Tout>(to_i64(v));
  } else if constexpr (!IsFloatStorage<Tin>::value) {
    return from_f64<Tout>(static_cast<double>(v));  // int32 -> bfloat16 must not round twice
  } else {
    return from_f32<Tout>(to_f32(v));
  }
}

}  // namespace cuda
}  // namespace needle
