// quantize.cu: quantize / dequantize / dynamic (per-tensor and per-row) quantization kernels.
//
// q = clamp(rint(x / s) + z, qmin, qmax): one true fp32 division (__fdiv_rn, never x * (1/s)),
// ties to even (__float2int_rn), zero point added after rounding; as on the CPU, x / s is
// clamped to [qmin - z, qmax - z] before rounding, which gives the same integer.
#include <cmath>

#include "quant/cuda/quant.cuh"

namespace needle_qc {
namespace cuda {

namespace {

constexpr int kThreads = 256;

unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < (int64_t(1) << 20) ? blocks : (int64_t(1) << 20));
}

__device__ inline int32_t quantize_one(float x, float s, int32_t z, int qmin, int qmax,
                                       int* nan_flag) {
  float t = __fdiv_rn(x, s);
  if (isnan(t)) *nan_flag = 1;  // every writer stores 1: the race is benign
  t = fminf(fmaxf(t, static_cast<float>(qmin - z)), static_cast<float>(qmax - z));
  return __float2int_rn(t) + z;
}

__device__ inline void store_q(void* q, int64_t i, int32_t v, bool out_s8) {
  if (out_s8)
    static_cast<int8_t*>(q)[i] = static_cast<int8_t>(v);
  else
    static_cast<uint8_t*>(q)[i] = static_cast<uint8_t>(v);
}

__global__ void quantize_kernel(const float* __restrict__ x, int64_t n, int64_t channels,
                                int64_t inner, const float* __restrict__ s,
                                const int32_t* __restrict__ z, int qmin, int qmax, bool out_s8,
                                void* q, int* nan_flag) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / inner) % channels;
    store_q(q, i, quantize_one(x[i], s[c], z[c], qmin, qmax, nan_flag), out_s8);
  }
}

template <class Q>
__global__ void dequantize_kernel(const Q* __restrict__ q, int64_t n, int64_t channels,
                                  int64_t inner, const float* __restrict__ s,
                                  const int32_t* __restrict__ z, float* __restrict__ y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / inner) % channels;
    // (q - z) in wrapping int32 as the CPU computes it, one rounding to fp32, one fp32 multiply.
    const uint32_t d = static_cast<uint32_t>(static_cast<int32_t>(q[i])) -
                       static_cast<uint32_t>(z[c]);
    y[i] = __fmul_rn(__int2float_rn(static_cast<int32_t>(d)), s[c]);
  }
}

// Block-wide min and max of finite values; *bad = 1 when a value is NaN or +-inf.
__device__ inline void block_min_max(const float* x, int64_t begin, int64_t end, int64_t stride,
                                     float& mn, float& mx, int* bad) {
  __shared__ float smin[kThreads], smax[kThreads];
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = begin; i < end; i += stride) {
    const float v = x[i];
    if (!isfinite(v)) *bad = 1;
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  smin[threadIdx.x] = lo;
  smax[threadIdx.x] = hi;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) {
      smin[threadIdx.x] = fminf(smin[threadIdx.x], smin[threadIdx.x + step]);
      smax[threadIdx.x] = fmaxf(smax[threadIdx.x], smax[threadIdx.x + step]);
    }
    __syncthreads();
  }
  mn = smin[0];
  mx = smax[0];
  __syncthreads();  // smin[0] / smax[0] are read before a next call overwrites them
}

__global__ void minmax_blocks_kernel(const float* __restrict__ x, int64_t n, float* block_min,
                                     float* block_max, int* bad) {
  float mn, mx;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  block_min_max(x, int64_t(blockIdx.x) * blockDim.x + threadIdx.x, n, stride, mn, mx, bad);
  if (threadIdx.x == 0) {
    block_min[blockIdx.x] = mn;
    block_max[blockIdx.x] = mx;
  }
}

// ONNX DynamicQuantizeLinear parameters (the CPU's dynamic_params_u8, op for op).
__device__ inline void dynamic_params_u8(float mn, float mx, float& scale, int32_t& zp) {
  mn = fminf(mn, 0.0f);
  mx = fmaxf(mx, 0.0f);
  scale = __fdiv_rn(__fsub_rn(mx, mn), 255.0f);
  if (scale == 0.0f) {
    scale = 1.0f;
    zp = 0;
    return;
  }
  const float izp = fminf(fmaxf(__fsub_rn(0.0f, __fdiv_rn(mn, scale)), 0.0f), 255.0f);
  zp = __float2int_rn(izp);
}

// One block per row (grid-stride over rows): min / max, parameters, then the row's quantization.
__global__ void dynamic_rows_kernel(const float* __restrict__ x, int64_t M, int64_t K,
                                    bool out_s8, void* q, float* scales, int32_t* zps,
                                    int* bad) {
  __shared__ float s_scale;
  __shared__ int32_t s_zp;
  __shared__ int nan_unused;
  for (int64_t m = blockIdx.x; m < M; m += gridDim.x) {
    const float* row = x + m * K;
    float mn, mx;
    block_min_max(row, threadIdx.x, K, blockDim.x, mn, mx, bad);
    if (threadIdx.x == 0) {
      if (K == 0) mn = mx = 0.0f;
      float s;
      int32_t z = 0;
      if (out_s8) {  // symmetric [-127, 127], zero point 0 (LLM.int8 absmax per token)
        s = __fdiv_rn(fmaxf(-mn, mx), 127.0f);
        if (s == 0.0f) s = 1.0f;
      } else {
        dynamic_params_u8(mn, mx, s, z);
      }
      s_scale = s;
      s_zp = z;
      scales[m] = s;
      zps[m] = z;
    }
    __syncthreads();
    const float s = s_scale;
    const int32_t z = s_zp;
    const int qmin = out_s8 ? -127 : 0, qmax = out_s8 ? 127 : 255;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
      store_q(q, m * K + k, quantize_one(row[k], s, z, qmin, qmax, &nan_unused), out_s8);
    __syncthreads();  // s_scale / s_zp are read before the next row overwrites them
  }
}

}  // namespace

void launch_quantize(const float* x, size_t n, size_t channels, size_t inner, const float* s,
                     const int32_t* z, int qmin, int qmax, bool out_s8, void* q, int* nan_flag) {
  if (n == 0) return;
  quantize_kernel<<<grid_for(int64_t(n)), kThreads>>>(x, int64_t(n), int64_t(channels),
                                                      int64_t(inner), s, z, qmin, qmax, out_s8,
                                                      q, nan_flag);
  check_launch("quantize_kernel");
}

void launch_dequantize(const void* q, int q_kind, size_t n, size_t channels, size_t inner,
                       const float* s, const int32_t* z, float* y) {
  if (n == 0) return;
  const unsigned int grid = grid_for(int64_t(n));
  const int64_t nn = int64_t(n), ch = int64_t(channels), in = int64_t(inner);
  if (q_kind == 0) {
    dequantize_kernel<uint8_t>
        <<<grid, kThreads>>>(static_cast<const uint8_t*>(q), nn, ch, in, s, z, y);
  } else if (q_kind == 1) {
    dequantize_kernel<int8_t>
        <<<grid, kThreads>>>(static_cast<const int8_t*>(q), nn, ch, in, s, z, y);
  } else {
    dequantize_kernel<int32_t>
        <<<grid, kThreads>>>(static_cast<const int32_t*>(q), nn, ch, in, s, z, y);
  }
  check_launch("dequantize_kernel");
}

size_t launch_minmax_blocks(const float* x, size_t n, float* block_min, float* block_max,
                            int* bad_flag) {
  if (n == 0) return 0;
  unsigned int blocks = grid_for(int64_t(n));
  if (blocks > 1024) blocks = 1024;  // the callers' block_min / block_max hold 1024 entries
  minmax_blocks_kernel<<<blocks, kThreads>>>(x, int64_t(n), block_min, block_max, bad_flag);
  check_launch("minmax_blocks_kernel");
  return blocks;
}

void launch_dynamic_rows(const float* x, size_t M, size_t K, bool out_s8, void* q, float* scales,
                         int32_t* zps, int* bad_flag) {
  if (M == 0) return;
  const unsigned int blocks = static_cast<unsigned int>(M < (1u << 20) ? M : (1u << 20));
  dynamic_rows_kernel<<<blocks, kThreads>>>(x, int64_t(M), int64_t(K), out_s8, q, scales, zps,
                                            bad_flag);
  check_launch("dynamic_rows_kernel");
}

}  // namespace cuda
}  // namespace needle_qc
