// weight_only.cu: fp16 / bf16 / int4 weight-only GEMM (fp32 activations and accumulation).
//
// Weights stay compressed in device memory and are decoded while a 16 x 64 tile is staged in
// shared memory, so no fp32 copy of W exists. The fp32 sums are not bit-identical to the CPU's
// (a different summation order), only close; the decode itself is exact.
#include <cuda_fp16.h>

#include <cmath>
#include <stdexcept>

#include "common/float_bits.h"
#include "quant/cuda/quant.cuh"

namespace needle_qc {
namespace cuda {

namespace {

constexpr int kThreads = 256, kTX = 16, kTY = 16, kBM = 64, kBN = 64, kBK = 16;
constexpr int kTM = kBM / kTY, kTN = kBN / kTX;

unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < (int64_t(1) << 20) ? blocks : (int64_t(1) << 20));
}

// float -> float16 bits, IEEE round to nearest even; NaN -> sign | 0x7E00 like the CPU.
__device__ inline uint16_t f32_to_f16_bits(float v) {
  const uint32_t b = __float_as_uint(v);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u)
    return static_cast<uint16_t>(((b >> 16) & 0x8000u) | 0x7E00u);
  return __half_as_ushort(__float2half_rn(v));
}

__global__ void to_half_kernel(const float* __restrict__ w, int64_t n, bool bf16,
                               uint16_t* __restrict__ out, unsigned long long* counts) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = w[i];
    if (bf16) {
      out[i] = needle::common::float_to_bf16(v);  // the CPU's rounding code
      continue;
    }
    const uint16_t h = f32_to_f16_bits(v);
    out[i] = h;
    if (isfinite(v)) {  // the f16 cast report (contract §2.10.7)
      if ((h & 0x7C00u) == 0x7C00u) atomicAdd(&counts[0], 1ull);
      if (v != 0.0f && (h & 0x7C00u) == 0) atomicAdd(&counts[1], 1ull);  // subnormal or zero
    }
  }
}

struct LowBitView {
  int format;  // LowBit as int
  int64_t K, N, group_size;
  const void* data;
  const float* scales;
};

__device__ inline float decode(const LowBitView& w, int64_t k, int64_t n) {
  if (w.format == int(LowBit::f16))
    return __half2float(__ushort_as_half(static_cast<const uint16_t*>(w.data)[k * w.N + n]));
  if (w.format == int(LowBit::bf16))
    return __uint_as_float(uint32_t(static_cast<const uint16_t*>(w.data)[k * w.N + n]) << 16);
  const uint8_t byte = static_cast<const uint8_t*>(w.data)[k * ((w.N + 1) / 2) + n / 2];
  const int nib = (n % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
  return __fmul_rn(float((nib ^ 8) - 8), w.scales[(k / w.group_size) * w.N + n]);
}

__global__ void __launch_bounds__(kThreads)
    gemm_lowbit_kernel(const float* __restrict__ x, int64_t M, LowBitView w,
                       const float* __restrict__ bias, float* __restrict__ y) {
  __shared__ float x_tile[kBK][kBM + 4];
  __shared__ float w_tile[kBK][kBN];
  const int tid = threadIdx.x, tx = tid % kTX, ty = tid / kTX;
  const int64_t m0 = int64_t(blockIdx.x) * kBM, n0 = int64_t(blockIdx.y) * kBN;
  float acc[kTM][kTN] = {};
  for (int64_t k0 = 0; k0 < w.K; k0 += kBK) {
    for (int i = tid; i < kBM * kBK; i += kThreads) {
      const int r = i / kBK, kk = i % kBK;
      const int64_t m = m0 + r, k = k0 + kk;
      x_tile[kk][r] = (m < M && k < w.K) ? x[m * w.K + k] : 0.0f;
    }
    for (int i = tid; i < kBK * kBN; i += kThreads) {
      const int kk = i / kBN, c = i % kBN;
      const int64_t n = n0 + c, k = k0 + kk;
      w_tile[kk][c] = (n < w.N && k < w.K) ? decode(w, k, n) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int j = 0; j < kTN; ++j)
          acc[i][j] = fmaf(x_tile[kk][ty + kTY * i], w_tile[kk][tx + kTX * j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < kTM; ++i) {
    const int64_t m = m0 + ty + kTY * i;
    if (m >= M) continue;
    for (int j = 0; j < kTN; ++j) {
      const int64_t n = n0 + tx + kTX * j;
      if (n < w.N) y[m * w.N + n] = __fadd_rn(acc[i][j], bias ? bias[n] : 0.0f);
    }
  }
}

}  // namespace

void launch_to_half(const float* w, size_t n, LowBit format, uint16_t* out,
                    unsigned long long* counts) {
  if (n == 0) return;
  to_half_kernel<<<grid_for(int64_t(n)), kThreads>>>(w, int64_t(n), format == LowBit::bf16, out,
                                                     counts);
  check_launch("to_half_kernel");
}

void launch_gemm_lowbit(const float* x, size_t M, const PackedWeightLowBit& w, const float* bias,
                        float* y) {
  if (M == 0 || w.N == 0) return;
  const size_t m_blocks = (M + kBM - 1) / kBM, n_blocks = (w.N + kBN - 1) / kBN;
  if (n_blocks > 65535) throw std::invalid_argument("packed: N is too large for the CUDA GEMM");
  LowBitView v{int(w.format), int64_t(w.K), int64_t(w.N),
               int64_t(w.group_size > 0 ? w.group_size : 1), w.data.as<void>(),
               w.scales.as<float>()};
  dim3 grid(static_cast<unsigned int>(m_blocks), static_cast<unsigned int>(n_blocks));
  gemm_lowbit_kernel<<<grid, kThreads>>>(x, int64_t(M), v, bias, y);
  check_launch("gemm_lowbit_kernel");
}

}  // namespace cuda
}  // namespace needle_qc
