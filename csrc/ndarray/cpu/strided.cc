// compact / ewise_setitem / scalar_setitem: an odometer over all but the innermost dimension.
#include <cstring>
#include <stdexcept>
#include <string>

#include "ndarray/cpu/convert.h"
#include "ndarray/cpu/strided.h"

namespace needle {
namespace cpu {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void check_view(const char* op, const Array& a, const Shape& shape, const Shape& strides,
                int64_t offset) {
  if (shape.size() != strides.size()) {
    throw std::invalid_argument(std::string(op) + ": shape has " + std::to_string(shape.size()) +
                                " dims but strides has " + std::to_string(strides.size()));
  }
  int64_t lo = offset, hi = offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) throw std::invalid_argument(std::string(op) + ": negative dimension");
    if (shape[d] == 0) return;  // empty view touches nothing
    const int64_t span = (shape[d] - 1) * strides[d];
    (span < 0 ? lo : hi) += span;
  }
  if (lo < 0 || hi >= static_cast<int64_t>(a.size)) {
    throw std::out_of_range(std::string(op) + ": view reaches elements [" + std::to_string(lo) +
                            ", " + std::to_string(hi) + "] of an array of size " +
                            std::to_string(a.size));
  }
}

namespace {

// Merges neighbouring dimensions that are contiguous with each other, so the innermost run is
// as long as possible (a compact view collapses to one run).
void collapse(Shape& shape, Shape& strides) {
  Shape sh, st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;  // size-1 dims never move the index
    if (!sh.empty() && st.back() == strides[d] * shape[d]) {
      sh.back() *= shape[d];
      st.back() = strides[d];
    } else {
      sh.push_back(shape[d]);
      st.push_back(strides[d]);
    }
  }
  shape.swap(sh);
  strides.swap(st);
}

// Calls run(strided_start, compact_start, length, stride) for each innermost run, row-major.
template <typename Run>
void walk_runs(Shape shape, Shape strides, int64_t offset, Run run) {
  if (shape_numel(shape) == 0) return;
  collapse(shape, strides);
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (nd == 0) {
    run(offset, 0, 1, 1);
    return;
  }
  const int64_t inner = shape[nd - 1], inner_stride = strides[nd - 1];
  std::vector<int64_t> idx(nd, 0);
  int64_t base = offset, cnt = 0;
  while (true) {
    run(base, cnt, inner, inner_stride);
    cnt += inner;
    int64_t d = nd - 2;
    for (; d >= 0; --d) {  // advance the odometer
      base += strides[d];
      if (++idx[d] < shape[d]) break;
      base -= strides[d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

template <typename T>
void compact_typed(const Array& a, Array& out, const Shape& sh, const Shape& st, int64_t off) {
  const T* src = a.as<T>();
  T* dst = out.as<T>();
  walk_runs(sh, st, off, [&](int64_t s, int64_t c, int64_t len, int64_t stride) {
    if (stride == 1) {
      std::memcpy(dst + c, src + s, len * sizeof(T));
    } else {
      for (int64_t j = 0; j < len; ++j) dst[c + j] = src[s + j * stride];
    }
  });
}

template <typename T>
void setitem_typed(const Array& a, Array& out, const Shape& sh, const Shape& st, int64_t off) {
  const T* src = a.as<T>();
  T* dst = out.as<T>();
  walk_runs(sh, st, off, [&](int64_t s, int64_t c, int64_t len, int64_t stride) {
    if (stride == 1) {
      std::memmove(dst + s, src + c, len * sizeof(T));
    } else {
      for (int64_t j = 0; j < len; ++j) dst[s + j * stride] = src[c + j];
    }
  });
}

template <typename T>
void fill_typed(T val, Array& out, const Shape& sh, const Shape& st, int64_t off) {
  T* dst = out.as<T>();
  walk_runs(sh, st, off, [&](int64_t s, int64_t, int64_t len, int64_t stride) {
    for (int64_t j = 0; j < len; ++j) dst[s + j * stride] = val;
  });
}

}  // namespace

void compact(const Array& a, Array& out, const Shape& shape, const Shape& strides,
             int64_t offset) {
  check_view("compact", a, shape, strides, offset);
  switch (a.itemsize()) {
    case 1: compact_typed<uint8_t>(a, out, shape, strides, offset); break;
    case 2: compact_typed<uint16_t>(a, out, shape, strides, offset); break;
    default: compact_typed<uint32_t>(a, out, shape, strides, offset); break;
  }
}

void ewise_setitem(const Array& a, Array& out, const Shape& shape, const Shape& strides,
                   int64_t offset) {
  check_view("ewise_setitem", out, shape, strides, offset);
  switch (out.itemsize()) {
    case 1: setitem_typed<uint8_t>(a, out, shape, strides, offset); break;
    case 2: setitem_typed<uint16_t>(a, out, shape, strides, offset); break;
    default: setitem_typed<uint32_t>(a, out, shape, strides, offset); break;
  }
}

void scalar_setitem(int64_t, double val, Array& out, const Shape& shape, const Shape& strides,
                    int64_t offset) {
  check_view("scalar_setitem", out, shape, strides, offset);
  const uint32_t bits = scalar_bits(val, out.dtype);
  switch (out.itemsize()) {
    case 1: fill_typed<uint8_t>(static_cast<uint8_t>(bits), out, shape, strides, offset); break;
    case 2: fill_typed<uint16_t>(static_cast<uint16_t>(bits), out, shape, strides, offset); break;
    default: fill_typed<uint32_t>(bits, out, shape, strides, offset); break;
  }
}

}  // namespace cpu
}  // namespace needle
