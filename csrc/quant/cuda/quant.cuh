// quant.cuh: host-side glossary of needle_qc._quant_cuda, shared by the nvcc kernel files and
// the g++-compiled bindings (so it holds no device code).
//
// Domain trick: the GPU works on *signed* activations. dp4a has s8 x s8 (and u8 x u8) forms but
// no u8 x s8, so uint8 activations are stored as a' = a - 128 (= a ^ 0x80) with the zero point
// moved the same way (za' = za - 128); then (a' - za') = (a - za) and every output of the CPU's
// formula Σ (a - za)(w - zw) is unchanged. The GEMM computes the raw Σ a'w with dp4a and the
// fused output stage applies the zero-point terms in wrapping 32-bit arithmetic, like the CPU's.
//
// Device layouts:
//   activations  int8 [M][K4], K4 = roundup(K, 4), zero padded (a zero adds nothing)
//   weights      int32 words [K4/4][N], word (kq, n) = bytes w[4kq .. 4kq+3, n], k = 4kq + byte
//   fp16/bf16    uint16 [K][N];  int4: bytes [K][ceil(N/2)], column 2j low nibble, 2j+1 high
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace needle_qc {
namespace cuda {

// --- device, errors, memory -------------------------------------------------------------------

// Number of visible CUDA devices; 0 (never an exception) without a GPU or driver.
int device_count();
// Throws std::runtime_error (Python RuntimeError) unless a CUDA device is usable.
void require_gpu();
// Throws std::runtime_error naming `what` and CUDA's error name and string.
void check_cuda(cudaError_t err, const char* what);
#define NQC_CUDA_CHECK(call) ::needle_qc::cuda::check_cuda((call), #call)
// Checks the last kernel launch, then waits for it so asynchronous faults surface here.
void check_launch(const char* kernel);

// Owning device allocation (cudaFree on destruction, never throws there).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();

  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  void upload(const void* host, size_t bytes);    // host -> device, bytes <= capacity
  void download(void* host, size_t bytes) const;  // device -> host (synchronises)
  void zero();

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A device copy of `bytes` host bytes.
DeviceBuffer to_device(const void* host, size_t bytes);

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0, sm_count = 0;
  size_t total_memory = 0;
};
DeviceInfo device_info();

// --- int8 GEMM -------------------------------------------------------------------------------

constexpr int kGemmTileM = 64, kGemmTileN = 64, kGemmTileKQ = 8;  // KQ: k-quads (4 bytes) per step

// Weights packed on the device, plus the host copies the Python object reports.
struct PackedWeightS8 {
  size_t K = 0, N = 0, K4 = 0;
  DeviceBuffer words;       // int32 [K4/4][N]
  DeviceBuffer colsum;      // int32 [N], Σ_k w[k, n] (raw)
  DeviceBuffer zero_point;  // int32 [N]
  std::shared_ptr<int32_t> host_colsum, host_zero_point;  // [N] each
  int32_t max_pair_abs = 0;
  bool zero_point_is_zero = true;
  size_t nbytes() const { return words.bytes() + colsum.bytes() + zero_point.bytes(); }
};

enum class OutKind : int { s32 = 0, requant = 1, f32 = 2 };

// Output stage parameters; pointers are device pointers, arrays of length 1 broadcast.
struct Epilogue {
  OutKind kind = OutKind::s32;
  int32_t K = 0;
  const int32_t* a_zp = nullptr;  // signed domain (see top), per row or [1]
  int a_zp_per_row = 0;
  const int32_t* rowsum = nullptr;  // Σ_k a'[m, k], nullptr when every w zero point is 0
  const int32_t* colsum = nullptr;
  const int32_t* w_zp = nullptr;
  const int32_t* bias_i32 = nullptr;
  const float* multiplier = nullptr;
  int multiplier_per_col = 0;
  int32_t y_zp = 0, qmin = 0, qmax = 255;
  int out_s8 = 0;
  const float* scale = nullptr;
  int scale_per_col = 0;
  const float* row_scale = nullptr;
  const float* bias_f32 = nullptr;
  int relu = 0;
};

// a (device, int8 [M][K4]) x w -> out (device [M][N] of u8/s8, int32 or float32).
void launch_gemm_s8(const int8_t* a, size_t M, const PackedWeightS8& w, const Epilogue& e,
                    void* out);
// Raw host bytes [M][K] (u8 when flip, else s8) -> signed device rows [M][K4], zero padded.
void launch_pack_rows(const uint8_t* src, size_t M, size_t K, size_t K4, bool flip, int8_t* dst);
// rowsum[m] = Σ_k a[m][k] over the K4 packed bytes (padding is zero).
void launch_rowsums(const int8_t* a, size_t M, size_t K4, int32_t* rowsum);

struct ConvShape {
  int64_t batch, H, W, C, KH, KW, sh, sw, ph, pw, OH, OW;
};
// NHWC uint8 images -> signed im2col rows [batch*OH*OW][K4]; out-of-image taps read x_zp.
void launch_im2col(const uint8_t* x, const ConvShape& s, uint8_t x_zp, size_t K4, int8_t* dst);

// --- quantize / dequantize ---------------------------------------------------------------------

// q[i] = clamp(rint(x[i] / s[c]) + z[c], qmin, qmax), c = (i / inner) % channels.
// Sets *nan_flag (device int) to 1 when some x / s is NaN.
void launch_quantize(const float* x, size_t n, size_t channels, size_t inner, const float* s,
                     const int32_t* z, int qmin, int qmax, bool out_s8, void* q, int* nan_flag);
// y[i] = float(int32(q[i]) - z[c]) * s[c]; q_kind 0 = uint8, 1 = int8, 2 = int32.
void launch_dequantize(const void* q, int q_kind, size_t n, size_t channels, size_t inner,
                       const float* s, const int32_t* z, float* y);
// Per-block min / max of finite x (blocks = returned count); *bad_flag = 1 on NaN / Inf.
size_t launch_minmax_blocks(const float* x, size_t n, float* block_min, float* block_max,
                            int* bad_flag);
// Per-row dynamic quantization (uint8 asymmetric or int8 symmetric [-127, 127]).
void launch_dynamic_rows(const float* x, size_t M, size_t K, bool out_s8, void* q, float* scales,
                         int32_t* zps, int* bad_flag);

// --- weight-only -------------------------------------------------------------------------------

enum class LowBit : int { f16 = 0, bf16 = 1, int4 = 2 };

struct PackedWeightLowBit {
  LowBit format = LowBit::f16;
  size_t K = 0, N = 0, group_size = 0, groups = 0;
  DeviceBuffer data;    // uint16 [K][N] or int4 bytes [K][ceil(N/2)]
  DeviceBuffer scales;  // int4: float [groups][N]
  unsigned long long n_overflow = 0, n_subnormal = 0;
  size_t nbytes() const { return data.bytes() + scales.bytes(); }
};

// w f32 [K*N] (device) -> halves (device); counts[0] += overflows, counts[1] += subnormals
// (f16 only; counts is a device array of two unsigned long long).
void launch_to_half(const float* w, size_t n, LowBit format, uint16_t* out,
                    unsigned long long* counts);
// y[M][N] = x[M][K] @ dec(W) + bias (fp32 accumulation); bias may be nullptr.
void launch_gemm_lowbit(const float* x, size_t M, const PackedWeightLowBit& w, const float* bias,
                        float* y);

}  // namespace cuda
}  // namespace needle_qc
