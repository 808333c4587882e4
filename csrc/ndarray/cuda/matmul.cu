// Shared-memory tiled matmul: float dtypes accumulate in fp32, integer dtypes in int32 (wrapping).
#include <stdexcept>
#include <string>

#include "ndarray/cuda/ops.cuh"

namespace needle {
namespace cuda {

namespace {

constexpr int MM_TILE = 16;

/// Accumulator traits: what a tile holds, how an element enters it, how a sum leaves it.
template <typename T>
struct MatmulAcc {  // float16 / bfloat16 / float32
  using Acc = float;
  using Out = T;
  __device__ static Acc load(T v) { return to_f32(v); }
  __device__ static Acc mac(Acc acc, Acc x, Acc y) { return acc + x * y; }
  __device__ static Out store(Acc acc) { return from_f32<T>(acc); }
};

template <typename T>
struct IntMatmulAcc {
  // uint32 so the int32 wrap-around of long sums is defined behaviour.
  using Acc = uint32_t;
  using Out = int32_t;
  __device__ static Acc load(T v) { return static_cast<Acc>(static_cast<int32_t>(v)); }
  __device__ static Acc mac(Acc acc, Acc x, Acc y) { return acc + x * y; }
  __device__ static Out store(Acc acc) { return static_cast<int32_t>(acc); }
};
template <>
struct MatmulAcc<int8_t> : IntMatmulAcc<int8_t> {};
template <>
struct MatmulAcc<uint8_t> : IntMatmulAcc<uint8_t> {};
template <>
struct MatmulAcc<int32_t> : IntMatmulAcc<int32_t> {};

/// One 16x16 block computes a 16x16 tile of out; grid.x walks rows, grid.y columns.
template <typename T>
__global__ void matmul_kernel(const T* a, const T* b, typename MatmulAcc<T>::Out* out,
                              int64_t m, int64_t n, int64_t p) {
  using Traits = MatmulAcc<T>;
  using Acc = typename Traits::Acc;
  __shared__ Acc a_tile[MM_TILE][MM_TILE];
  __shared__ Acc b_tile[MM_TILE][MM_TILE];
  const int tr = threadIdx.y, tc = threadIdx.x;
  const int64_t row = int64_t(blockIdx.x) * MM_TILE + tr;
  const int64_t col = int64_t(blockIdx.y) * MM_TILE + tc;
  Acc acc = Acc(0);
  for (int64_t k0 = 0; k0 < n; k0 += MM_TILE) {
    const int64_t ka = k0 + tc, kb = k0 + tr;
    a_tile[tr][tc] = (row < m && ka < n) ? Traits::load(a[row * n + ka]) : Acc(0);
    b_tile[tr][tc] = (kb < n && col < p) ? Traits::load(b[kb * p + col]) : Acc(0);
    __syncthreads();
    for (int k = 0; k < MM_TILE; ++k) acc = Traits::mac(acc, a_tile[tr][k], b_tile[k][tc]);
    __syncthreads();
  }
  if (row < m && col < p) out[row * p + col] = Traits::store(acc);
}

std::string where() { return "ndarray_backend_cuda.matmul: "; }

void check_size(const char* name, const CudaArray& x, int64_t want) {
  if (static_cast<int64_t>(x.size()) != want) {
    throw std::invalid_argument(where() + name + " has " + std::to_string(x.size()) +
                                " elements, expected " + std::to_string(want));
  }
}

void check_matmul_args(const CudaArray& a, const CudaArray& b, const CudaArray& out, int64_t m,
                       int64_t n, int64_t p) {
  if (m < 0 || n < 0 || p < 0) throw std::invalid_argument(where() + "negative dimension");
  if (a.dtype() != b.dtype()) {
    throw std::invalid_argument(where() + "a is " + dtype_name(a.dtype()) + " but b is " +
                                dtype_name(b.dtype()));
  }
  DType want_out = dtype_is_float(a.dtype()) ? a.dtype() : DType::kInt32;
  if (out.dtype() != want_out) {
    throw std::invalid_argument(where() + "out must be " + dtype_name(want_out) + " for " +
                                dtype_name(a.dtype()) + " inputs, got " +
                                dtype_name(out.dtype()));
  }
  check_size("a", a, m * n);
  check_size("b", b, n * p);
  check_size("out", out, m * p);
  if ((p + MM_TILE - 1) / MM_TILE > 65535) {
    throw std::invalid_argument(where() + "p = " + std::to_string(p) + " exceeds the grid limit");
  }
}

}  // namespace

void matmul(const CudaArray& a, const CudaArray& b, CudaArray& out, int64_t m, int64_t n,
            int64_t p) {
  check_matmul_args(a, b, out, m, n, p);
  if (m == 0 || p == 0) return;
  dim3 block(MM_TILE, MM_TILE);
  dim3 grid(static_cast<unsigned>((m + MM_TILE - 1) / MM_TILE),
            static_cast<unsigned>((p + MM_TILE - 1) / MM_TILE));
  dispatch_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using Out = typename MatmulAcc<T>::Out;
    matmul_kernel<T><<<grid, block>>>(a.data<T>(), b.data<T>(), out.data<Out>(), m, n, p);
  });
  check_launch("matmul_kernel");
}

}  // namespace cuda
}  // namespace needle
