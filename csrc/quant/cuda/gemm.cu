// gemm.cu: dp4a int8 GEMM with shared-memory tiles and the fused output stage, plus the
// small kernels that prepare its left operand (row packing, row sums, NHWC im2col).
//
// Block: 256 threads (16 x 16) own a 64 x 64 output tile, 4 x 4 accumulators per thread, rows
// ty + 16 i and columns tx + 16 j (so a warp's stores are 16 consecutive columns). Each step
// stages 8 k-quads (32 bytes of depth) of A and W in shared memory as int32 words; one __dp4a
// multiplies the 4 signed bytes of a word pair and adds them to the int32 accumulator.
#include <stdexcept>
#include <string>

#include "quant/cuda/epilogue.cuh"

namespace needle_qc {
namespace cuda {

namespace {

constexpr int kThreads = 256, kTX = 16, kTY = 16;
constexpr int kTM = kGemmTileM / kTY, kTN = kGemmTileN / kTX;
// +4 words of padding: the loader writes A transposed, and (4 q + r) % 32 then hits distinct banks.
constexpr int kAPad = 4;

__global__ void __launch_bounds__(kThreads)
    gemm_s8_dp4a_kernel(const int32_t* __restrict__ a_words, int64_t M, int64_t KQ,
                        const int32_t* __restrict__ w_words, int64_t N, Epilogue e, void* out) {
  __shared__ int32_t a_tile[kGemmTileKQ][kGemmTileM + kAPad];
  __shared__ int32_t w_tile[kGemmTileKQ][kGemmTileN];
  const int tid = threadIdx.x, tx = tid % kTX, ty = tid / kTX;
  const int64_t m0 = int64_t(blockIdx.x) * kGemmTileM, n0 = int64_t(blockIdx.y) * kGemmTileN;
  int32_t acc[kTM][kTN] = {};
  for (int64_t kq0 = 0; kq0 < KQ; kq0 += kGemmTileKQ) {
    for (int i = tid; i < kGemmTileM * kGemmTileKQ; i += kThreads) {
      const int r = i / kGemmTileKQ, q = i % kGemmTileKQ;  // consecutive threads: one row
      const int64_t m = m0 + r, kq = kq0 + q;
      a_tile[q][r] = (m < M && kq < KQ) ? a_words[m * KQ + kq] : 0;
    }
    for (int i = tid; i < kGemmTileKQ * kGemmTileN; i += kThreads) {
      const int q = i / kGemmTileN, c = i % kGemmTileN;  // consecutive threads: one k-quad row
      const int64_t n = n0 + c, kq = kq0 + q;
      w_tile[q][c] = (n < N && kq < KQ) ? w_words[kq * N + n] : 0;
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < kGemmTileKQ; ++q) {
      int32_t av[kTM], wv[kTN];
#pragma unroll
      for (int i = 0; i < kTM; ++i) av[i] = a_tile[q][ty + kTY * i];
#pragma unroll
      for (int j = 0; j < kTN; ++j) wv[j] = w_tile[q][tx + kTX * j];
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int j = 0; j < kTN; ++j) acc[i][j] = __dp4a(av[i], wv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    const int64_t m = m0 + ty + kTY * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      const int64_t n = n0 + tx + kTX * j;
      if (n < N) store_output(acc[i][j], e, m, n, N, out);
    }
  }
}

__global__ void pack_rows_kernel(const uint8_t* __restrict__ src, int64_t M, int64_t K,
                                 int64_t K4, uint8_t flip, int8_t* __restrict__ dst) {
  const int64_t total = M * K4;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / K4, k = i % K4;
    dst[i] = k < K ? static_cast<int8_t>(src[m * K + k] ^ flip) : int8_t(0);
  }
}

// One block per row (grid-stride over rows), uint32 sums so long rows wrap like the CPU's.
__global__ void rowsum_kernel(const int8_t* __restrict__ a, int64_t M, int64_t K4,
                              int32_t* __restrict__ rowsum) {
  __shared__ uint32_t partial[kThreads];
  for (int64_t m = blockIdx.x; m < M; m += gridDim.x) {
    uint32_t s = 0;
    for (int64_t k = threadIdx.x; k < K4; k += blockDim.x)
      s += static_cast<uint32_t>(static_cast<int32_t>(a[m * K4 + k]));
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step /= 2) {
      if (threadIdx.x < step) partial[threadIdx.x] += partial[threadIdx.x + step];
      __syncthreads();
    }
    if (threadIdx.x == 0) rowsum[m] = static_cast<int32_t>(partial[0]);
    __syncthreads();  // partial[0] is read before the next row overwrites it
  }
}

// Row = output pixel (b, oh, ow); column k = (kh * KW + kw) * C + c, the row of the weight
// [KH, KW, Cin, Cout] viewed as [KH*KW*Cin, Cout].
__global__ void im2col_kernel(const uint8_t* __restrict__ x, ConvShape s, uint8_t x_zp,
                              int64_t K4, int8_t* __restrict__ dst) {
  const int64_t K = s.KH * s.KW * s.C, pixels = s.OH * s.OW;
  const int64_t total = s.batch * pixels * K4;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / K4, k = i % K4;
    if (k >= K) {
      dst[i] = 0;
      continue;
    }
    const int64_t b = row / pixels, p = row % pixels, oh = p / s.OW, ow = p % s.OW;
    const int64_t c = k % s.C, tap = k / s.C, kw = tap % s.KW, kh = tap / s.KW;
    const int64_t ih = oh * s.sh + kh - s.ph, iw = ow * s.sw + kw - s.pw;
    const bool inside = ih >= 0 && iw >= 0 && ih < s.H && iw < s.W;
    const uint8_t v = inside ? x[((b * s.H + ih) * s.W + iw) * s.C + c] : x_zp;
    dst[i] = static_cast<int8_t>(v ^ 0x80u);
  }
}

unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < (int64_t(1) << 20) ? blocks : (int64_t(1) << 20));
}

}  // namespace

void launch_gemm_s8(const int8_t* a, size_t M, const PackedWeightS8& w, const Epilogue& e,
                    void* out) {
  if (M == 0 || w.N == 0) return;
  const size_t m_blocks = (M + kGemmTileM - 1) / kGemmTileM;
  const size_t n_blocks = (w.N + kGemmTileN - 1) / kGemmTileN;
  if (n_blocks > 65535)
    throw std::invalid_argument("w: N = " + std::to_string(w.N) + " exceeds the CUDA GEMM's " +
                                "limit of 65535 * 64 columns");
  if (m_blocks > 0x7fffffffu)
    throw std::invalid_argument("a: M = " + std::to_string(M) + " rows is too many");
  dim3 grid(static_cast<unsigned int>(m_blocks), static_cast<unsigned int>(n_blocks));
  gemm_s8_dp4a_kernel<<<grid, kThreads>>>(reinterpret_cast<const int32_t*>(a), int64_t(M),
                                          int64_t(w.K4 / 4), w.words.as<int32_t>(),
                                          int64_t(w.N), e, out);
  check_launch("gemm_s8_dp4a_kernel");
}

void launch_pack_rows(const uint8_t* src, size_t M, size_t K, size_t K4, bool flip,
                      int8_t* dst) {
  const int64_t total = int64_t(M) * int64_t(K4);
  if (total == 0) return;
  pack_rows_kernel<<<grid_for(total), kThreads>>>(src, int64_t(M), int64_t(K), int64_t(K4),
                                                  flip ? uint8_t(0x80) : uint8_t(0), dst);
  check_launch("pack_rows_kernel");
}

void launch_rowsums(const int8_t* a, size_t M, size_t K4, int32_t* rowsum) {
  if (M == 0) return;
  const unsigned int blocks = static_cast<unsigned int>(M < (1u << 20) ? M : (1u << 20));
  rowsum_kernel<<<blocks, kThreads>>>(a, int64_t(M), int64_t(K4), rowsum);
  check_launch("rowsum_kernel");
}

void launch_im2col(const uint8_t* x, const ConvShape& s, uint8_t x_zp, size_t K4, int8_t* dst) {
  const int64_t total = s.batch * s.OH * s.OW * int64_t(K4);
  if (total == 0) return;
  im2col_kernel<<<grid_for(total), kThreads>>>(x, s, x_zp, int64_t(K4), dst);
  check_launch("im2col_kernel");
}

}  // namespace cuda
}  // namespace needle_qc
