// compact / ewise_setitem / scalar_setitem / fill: dtype-blind copies of 1-, 2- or 4-byte words.
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "ndarray/cuda/ops.cuh"

namespace needle {
namespace cuda {

namespace {

/// A strided view passed to kernels by value (fixed size: no device allocation per call).
struct StridedView {
  int32_t ndim;
  int64_t shape[MAX_VEC_SIZE];
  int64_t strides[MAX_VEC_SIZE];
  int64_t offset;
};

__device__ inline int64_t strided_index(const StridedView& v, int64_t linear) {
  int64_t idx = v.offset;
  for (int d = v.ndim - 1; d >= 0; --d) {
    idx += (linear % v.shape[d]) * v.strides[d];
    linear /= v.shape[d];
  }
  return idx;
}

template <typename W>
__global__ void compact_kernel(const W* a, W* out, StridedView v, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    out[i] = a[strided_index(v, static_cast<int64_t>(i))];
  }
}

template <typename W>
__global__ void setitem_kernel(const W* a, W* out, StridedView v, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    out[strided_index(v, static_cast<int64_t>(i))] = a[i];
  }
}

template <typename W>
__global__ void scalar_setitem_kernel(W val, W* out, StridedView v, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    out[strided_index(v, static_cast<int64_t>(i))] = val;
  }
}

template <typename W>
__global__ void fill_kernel(W* out, W val, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    out[i] = val;
  }
}

/// Calls fn(W{}) with W the unsigned word as wide as one element of dt.
template <typename Fn>
void dispatch_word(DType dt, Fn&& fn) {
  switch (dtype_itemsize(dt)) {
    case 1: fn(uint8_t{}); return;
    case 2: fn(uint16_t{}); return;
    case 4: fn(uint32_t{}); return;
  }
  throw std::logic_error("ndarray_backend_cuda: unexpected itemsize");
}

std::string where(const char* fn) { return std::string("ndarray_backend_cuda.") + fn + ": "; }

/// Validates shape/strides and returns the view plus its element count.
StridedView make_view(const char* fn, const IntVec& shape, const IntVec& strides,
                      int64_t offset, size_t* numel) {
  if (shape.size() != strides.size()) {
    throw std::invalid_argument(where(fn) + "shape has " + std::to_string(shape.size()) +
                                " dims but strides has " + std::to_string(strides.size()));
  }
  if (shape.size() > MAX_VEC_SIZE) {
    throw std::invalid_argument(where(fn) + std::to_string(shape.size()) +
                                " dims; the CUDA backend supports at most 8");
  }
  StridedView v{};
  v.ndim = static_cast<int32_t>(shape.size());
  v.offset = offset;
  size_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) {
      throw std::invalid_argument(where(fn) + "negative extent in shape at dim " +
                                  std::to_string(d));
    }
    v.shape[d] = shape[d];
    v.strides[d] = strides[d];
    n *= static_cast<size_t>(shape[d]);
  }
  *numel = n;
  return v;
}

/// Converts a Python float to one element of dt, as raw bits, rounding once from the double:
/// floats to nearest even; integers ties to even, then saturate, NaN -> 0.
uint32_t scalar_bits(DType dt, double val) {
  return dispatch_dtype(dt, [&](auto tag) -> uint32_t {
    using T = decltype(tag);
    T t;
    if constexpr (IsFloatStorage<T>::value) {
      t = from_f64<T>(val);
    } else {
      double lo = static_cast<double>(std::numeric_limits<T>::min());
      double hi = static_cast<double>(std::numeric_limits<T>::max());
      double r = std::isnan(val) ? 0.0 : std::nearbyint(val);  // ties to even (default mode)
      t = static_cast<T>(r < lo ? lo : (r > hi ? hi : r));
    }
    uint32_t bits = 0;
    std::memcpy(&bits, &t, sizeof t);  // little-endian: the element sits in the low bytes
    return bits;
  });
}

}  // namespace

void check_view(const char* fn, const CudaArray& a, const IntVec& shape, const IntVec& strides,
                int64_t offset) {
  size_t n = 0;
  make_view(fn, shape, strides, offset, &n);
  if (n == 0) return;
  int64_t lo = offset, hi = offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    int64_t span = (shape[d] - 1) * strides[d];
    (span < 0 ? lo : hi) += span;
  }
  if (lo < 0 || hi >= static_cast<int64_t>(a.size())) {
    throw std::invalid_argument(where(fn) + "view reaches elements [" + std::to_string(lo) +
                                ", " + std::to_string(hi) + "] of a buffer of " +
                                std::to_string(a.size()));
  }
}

static void check_same_dtype(const char* fn, const CudaArray& a, const CudaArray& out) {
  if (a.dtype() != out.dtype()) {
    throw std::invalid_argument(where(fn) + "dtype mismatch: " + dtype_name(a.dtype()) + " vs " +
                                dtype_name(out.dtype()));
  }
}

void compact(const CudaArray& a, CudaArray& out, const IntVec& shape, const IntVec& strides,
             int64_t offset) {
  check_same_dtype("compact", a, out);
  check_view("compact", a, shape, strides, offset);
  size_t n = 0;
  StridedView v = make_view("compact", shape, strides, offset, &n);
  if (n != out.size()) {
    throw std::invalid_argument(where("compact") + "out has " + std::to_string(out.size()) +
                                " elements, the view " + std::to_string(n));
  }
  if (n == 0) return;
  dispatch_word(a.dtype(), [&](auto w) {
    using W = decltype(w);
    compact_kernel<W><<<grid_for(n), BASE_THREAD_NUM>>>(a.data<W>(), out.data<W>(), v, n);
  });
  check_launch("compact_kernel");
}

void ewise_setitem(const CudaArray& a, CudaArray& out, const IntVec& shape,
                   const IntVec& strides, int64_t offset) {
  check_same_dtype("ewise_setitem", a, out);
  check_view("ewise_setitem", out, shape, strides, offset);
  size_t n = 0;
  StridedView v = make_view("ewise_setitem", shape, strides, offset, &n);
  if (a.size() < n) {
    throw std::invalid_argument(where("ewise_setitem") + "source has " +
                                std::to_string(a.size()) + " elements, the view needs " +
                                std::to_string(n));
  }
  if (n == 0) return;
  dispatch_word(a.dtype(), [&](auto w) {
    using W = decltype(w);
    setitem_kernel<W><<<grid_for(n), BASE_THREAD_NUM>>>(a.data<W>(), out.data<W>(), v, n);
  });
  check_launch("setitem_kernel");
}

void scalar_setitem(int64_t size, double val, CudaArray& out, const IntVec& shape,
                    const IntVec& strides, int64_t offset) {
  check_view("scalar_setitem", out, shape, strides, offset);
  size_t n = 0;
  StridedView v = make_view("scalar_setitem", shape, strides, offset, &n);
  if (size < 0 || static_cast<size_t>(size) != n) {
    throw std::invalid_argument(where("scalar_setitem") + "size " + std::to_string(size) +
                                " differs from the view's " + std::to_string(n) + " elements");
  }
  if (n == 0) return;
  uint32_t bits = scalar_bits(out.dtype(), val);
  dispatch_word(out.dtype(), [&](auto w) {
    using W = decltype(w);
    scalar_setitem_kernel<W><<<grid_for(n), BASE_THREAD_NUM>>>(static_cast<W>(bits),
                                                               out.data<W>(), v, n);
  });
  check_launch("scalar_setitem_kernel");
}

void fill(CudaArray& out, double val) {
  size_t n = out.size();
  if (n == 0) return;
  uint32_t bits = scalar_bits(out.dtype(), val);
  dispatch_word(out.dtype(), [&](auto w) {
    using W = decltype(w);
    fill_kernel<W><<<grid_for(n), BASE_THREAD_NUM>>>(out.data<W>(), static_cast<W>(bits), n);
  });
  check_launch("fill_kernel");
}

}  // namespace cuda
}  // namespace needle
