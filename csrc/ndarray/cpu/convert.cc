// dtype conversions: float chunks for the fp16/bf16 math paths, astype, scalar stores.
#include <algorithm>
#include <cstring>

#include "ndarray/cpu/convert.h"
#include "ndarray/cpu/parallel.h"

namespace needle {
namespace cpu {

void load_as_float(const Array& src, int64_t offset, int64_t n, float* dst) {
  switch (src.dtype) {
    case DType::kFloat32:
      std::memcpy(dst, src.as<float>() + offset, n * sizeof(float));
      return;
    case DType::kFloat16: {
      const uint16_t* h = src.as<uint16_t>() + offset;
      if (f16c_supported()) {
        f16c_half_to_float(h, dst, n);
      } else {
        for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(h[i]);
      }
      return;
    }
    case DType::kBFloat16: {
      const uint16_t* b = src.as<uint16_t>() + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(b[i]);
      return;
    }
    default: {
      // Integer sources are exact in double; go through float with one rounding.
      for (int64_t i = 0; i < n; ++i) {
        int64_t v = src.dtype == DType::kInt8    ? src.as<int8_t>()[offset + i]
                    : src.dtype == DType::kUInt8 ? src.as<uint8_t>()[offset + i]
                                                 : src.as<int32_t>()[offset + i];
        dst[i] = static_cast<float>(v);
      }
    }
  }
}

void store_from_float(const float* src, Array& dst, int64_t offset, int64_t n) {
  switch (dst.dtype) {
    case DType::kFloat32:
      std::memcpy(dst.as<float>() + offset, src, n * sizeof(float));
      return;
    case DType::kFloat16: {
      uint16_t* h = dst.as<uint16_t>() + offset;
      if (f16c_supported()) {
        f16c_float_to_half(src, h, n);
      } else {
        for (int64_t i = 0; i < n; ++i) h[i] = float_to_half(src[i]);
      }
      return;
    }
    case DType::kBFloat16: {
      uint16_t* b = dst.as<uint16_t>() + offset;
      for (int64_t i = 0; i < n; ++i) b[i] = float_to_bf16(src[i]);
      return;
    }
    case DType::kInt8:
      for (int64_t i = 0; i < n; ++i) dst.as<int8_t>()[offset + i] = float_to_int_sat<int8_t>(src[i]);
      return;
    case DType::kUInt8:
      for (int64_t i = 0; i < n; ++i) {
        dst.as<uint8_t>()[offset + i] = float_to_int_sat<uint8_t>(src[i]);
      }
      return;
    case DType::kInt32:
      for (int64_t i = 0; i < n; ++i) {
        dst.as<int32_t>()[offset + i] = float_to_int_sat<int32_t>(src[i]);
      }
      return;
  }
}

namespace {

int64_t load_int(const Array& a, int64_t i) {
  switch (a.dtype) {
    case DType::kInt8: return a.as<int8_t>()[i];
    case DType::kUInt8: return a.as<uint8_t>()[i];
    default: return a.as<int32_t>()[i];
  }
}

// Integer source: exact or single-rounded conversion to every dtype; int -> int saturates.
void int_to_any(const Array& a, Array& out, int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; ++i) {
    const int64_t v = load_int(a, i);
    switch (out.dtype) {
      case DType::kFloat32: out.as<float>()[i] = static_cast<float>(v); break;
      case DType::kFloat16: out.as<uint16_t>()[i] = float_to_half(static_cast<float>(v)); break;
      case DType::kBFloat16: out.as<uint16_t>()[i] = int_to_bf16(static_cast<int32_t>(v)); break;
      case DType::kInt8: out.as<int8_t>()[i] = int_saturate<int8_t>(v); break;
      case DType::kUInt8: out.as<uint8_t>()[i] = int_saturate<uint8_t>(v); break;
      case DType::kInt32: out.as<int32_t>()[i] = static_cast<int32_t>(v); break;
    }
  }
}

constexpr int64_t kChunk = 1024;

void float_to_any(const Array& a, Array& out, int64_t lo, int64_t hi) {
  float buf[kChunk];
  for (int64_t i = lo; i < hi; i += kChunk) {
    const int64_t n = std::min(kChunk, hi - i);
    load_as_float(a, i, n, buf);
    store_from_float(buf, out, i, n);
  }
}

}  // namespace

void astype(const Array& a, Array& out) {
  const int64_t n = static_cast<int64_t>(std::min(a.size, out.size));
  if (a.dtype == out.dtype) {
    std::memcpy(out.data(), a.data(), n * a.itemsize());
    return;
  }
  parallel_for(n, 1 << 16, kChunk, [&](int64_t lo, int64_t hi) {
    if (dtype_is_float(a.dtype)) {
      float_to_any(a, out, lo, hi);
    } else {
      int_to_any(a, out, lo, hi);
    }
  });
}

uint32_t scalar_bits(double val, DType dt) {
  switch (dt) {
    case DType::kFloat32: return float_bits(static_cast<float>(val));
    case DType::kFloat16: return float_to_half(double_to_float_round_odd(val));
    case DType::kBFloat16: return float_to_bf16(double_to_float_round_odd(val));
    case DType::kInt8: return static_cast<uint8_t>(float_to_int_sat<int8_t>(val));
    case DType::kUInt8: return float_to_int_sat<uint8_t>(val);
    case DType::kInt32: return static_cast<uint32_t>(float_to_int_sat<int32_t>(val));
  }
  return 0;
}

}  // namespace cpu
}  // namespace needle
