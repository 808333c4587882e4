// reduce_sum / reduce_max over contiguous rows of reduce_size elements: one block per row.
#include <stdexcept>
#include <string>

#include "ndarray/cuda/ops.cuh"

namespace needle {
namespace cuda {

namespace {

constexpr int REDUCE_THREADS = 256;  // most threads per row; always a power of two

/// Sum: fp32 accumulation for floats (same dtype out), int32 wrapping for integers (int32 out).
template <typename T>
struct SumOp {
  using Acc = float;
  using Out = T;
  __device__ static Acc load(T v) { return to_f32(v); }
  __device__ static Acc init(const T*) { return 0.0f; }
  __device__ static Acc combine(Acc x, Acc y) { return x + y; }
  __device__ static Out store(Acc acc) { return from_f32<T>(acc); }
};

template <typename T>
struct IntSumOp {
  using Acc = uint32_t;  // unsigned: wrap-around is defined behaviour
  using Out = int32_t;
  __device__ static Acc load(T v) { return static_cast<Acc>(static_cast<int32_t>(v)); }
  __device__ static Acc init(const T*) { return 0u; }
  __device__ static Acc combine(Acc x, Acc y) { return x + y; }
  __device__ static Out store(Acc acc) { return static_cast<int32_t>(acc); }
};
template <>
struct SumOp<int8_t> : IntSumOp<int8_t> {};
template <>
struct SumOp<uint8_t> : IntSumOp<uint8_t> {};
template <>
struct SumOp<int32_t> : IntSumOp<int32_t> {};

/// Max in the same dtype; floats compare in fp32 (exact) and propagate NaN like numpy.
template <typename T>
struct MaxOp {
  using Acc = float;
  using Out = T;
  __device__ static Acc load(T v) { return to_f32(v); }
  // Seeding every thread with the row's first element is harmless: max is idempotent.
  __device__ static Acc init(const T* row) { return to_f32(row[0]); }
  // Ties keep the later operand (numpy's rule); only +0 vs -0 can tell the difference.
  __device__ static Acc combine(Acc x, Acc y) { return (x > y || isnan(x)) ? x : y; }
  __device__ static Out store(Acc acc) { return from_f32<T>(acc); }
};

template <typename T>
struct IntMaxOp {
  using Acc = int32_t;
  using Out = T;
  __device__ static Acc load(T v) { return static_cast<Acc>(v); }
  __device__ static Acc init(const T* row) { return static_cast<Acc>(row[0]); }
  __device__ static Acc combine(Acc x, Acc y) { return x >= y ? x : y; }
  __device__ static Out store(Acc acc) { return static_cast<T>(acc); }
};
template <>
struct MaxOp<int8_t> : IntMaxOp<int8_t> {};
template <>
struct MaxOp<uint8_t> : IntMaxOp<uint8_t> {};
template <>
struct MaxOp<int32_t> : IntMaxOp<int32_t> {};

/// Each thread folds a strided slice of the row, then a fixed-shape tree in shared memory:
/// the order depends only on blockDim, so results are deterministic run to run.
template <typename Op, typename T>
__global__ void reduce_kernel(const T* a, typename Op::Out* out, size_t rows, size_t rs) {
  using Acc = typename Op::Acc;
  __shared__ Acc buf[REDUCE_THREADS];
  const unsigned tid = threadIdx.x;
  for (size_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = a + r * rs;
    Acc acc = Op::init(row);
    for (size_t i = tid; i < rs; i += blockDim.x) acc = Op::combine(acc, Op::load(row[i]));
    buf[tid] = acc;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
      if (tid < s) buf[tid] = Op::combine(buf[tid], buf[tid + s]);
      __syncthreads();
    }
    if (tid == 0) out[r] = Op::store(buf[0]);
    __syncthreads();  // buf is reused by the next row
  }
}

/// Threads per row: a warp for short rows, up to REDUCE_THREADS for long ones.
unsigned threads_for(size_t rs) {
  unsigned t = 32;
  while (t < REDUCE_THREADS && t < rs) t *= 2;
  return t;
}

std::string where(const char* fn) { return std::string("ndarray_backend_cuda.") + fn + ": "; }

template <template <typename> class OpT>
void launch_reduce(const char* fn, const CudaArray& a, CudaArray& out, int64_t reduce_size,
                   bool is_sum) {
  if (reduce_size < 0) throw std::invalid_argument(where(fn) + "negative reduce_size");
  const size_t rs = static_cast<size_t>(reduce_size), rows = out.size();
  DType want = (is_sum && !dtype_is_float(a.dtype())) ? DType::kInt32 : a.dtype();
  if (out.dtype() != want) {
    throw std::invalid_argument(where(fn) + "out must be " + dtype_name(want) + " for " +
                                dtype_name(a.dtype()) + " input, got " +
                                dtype_name(out.dtype()));
  }
  if (rows * rs != a.size()) {
    throw std::invalid_argument(where(fn) + "a has " + std::to_string(a.size()) +
                                " elements, not out.size * reduce_size = " +
                                std::to_string(rows) + " * " + std::to_string(rs));
  }
  if (rows == 0) return;
  if (rs == 0 && !is_sum) {
    throw std::invalid_argument(where(fn) + "max over zero elements");
  }
  const unsigned grid = grid_for(rows * BASE_THREAD_NUM);  // one block per row, capped
  dispatch_dtype(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using Op = OpT<T>;
    reduce_kernel<Op, T><<<grid, threads_for(rs)>>>(a.data<T>(),
                                                    out.data<typename Op::Out>(), rows, rs);
  });
  check_launch(fn);
}

}  // namespace

void reduce_sum(const CudaArray& a, CudaArray& out, int64_t reduce_size) {
  launch_reduce<SumOp>("reduce_sum", a, out, reduce_size, true);
}

void reduce_max(const CudaArray& a, CudaArray& out, int64_t reduce_size) {
  launch_reduce<MaxOp>("reduce_max", a, out, reduce_size, false);
}

}  // namespace cuda
}  // namespace needle
