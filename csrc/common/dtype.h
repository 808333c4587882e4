// dtype.h: the six NDArray dtypes, their names and item sizes, shared by the CPU and CUDA backends.
#pragma once

#include <cstddef>
#include <string>

namespace needle {
namespace common {

enum class DType : int { kFloat32, kFloat16, kBFloat16, kInt8, kUInt8, kInt32 };

inline bool dtype_is_float(DType dt) {
  return dt == DType::kFloat32 || dt == DType::kFloat16 || dt == DType::kBFloat16;
}

inline const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
  }
  return "?";
}

inline size_t dtype_itemsize(DType dt) {
  switch (dt) {
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kInt8:
    case DType::kUInt8: return 1;
  }
  return 0;
}

// Sets *out and returns true when `name` is one of the six; each backend words its own error.
inline bool dtype_lookup(const std::string& name, DType* out) {
  for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt8,
                   DType::kUInt8, DType::kInt32}) {
    if (name == dtype_name(dt)) {
      *out = dt;
      return true;
    }
  }
  return false;
}

}  // namespace common
}  // namespace needle
