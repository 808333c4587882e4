// quant.h: shared glossary, packed-weight types and kernel entry points of needle_qc._quant_cpu.
//
// Glossary (gemmlowp's words):
//   LHS / A   activations, u8[M, K] (s8 activations are shifted by +128 into u8 while packing,
//             with the zero point shifted the same way, so Σ(a - z_a)(w - z_w) is unchanged).
//   RHS / W   weights, s8[K, N] in Needle layout (reduction axis first).
//   depth K   the reduction axis; padded to K4 = roundup(K, 4) with zeros (a zero adds nothing).
//   panel     16 consecutive output columns of W, packed "k-quad major":
//
//       panel p (columns 16p .. 16p+15), kq = k / 4:
//       [kq=0: n0:k0 k1 k2 k3 | n1:k0..k3 | ... | n15:k0..k3][kq=1: ...] ... (K4 * 16 bytes)
//
//     One 64-byte k-quad row is exactly a zmm for VNNI `vpdpbusd`, two ymm for AVX2
//     `vpmaddubsw`, and four 16-byte loads widened to i16 for the exact AVX2 `vpmaddwd` path.
//   tile      MR rows x 16 columns of int32 accumulators produced by one microkernel call.
//
// Stages: pack (pack.cc) -> microkernel (ukernel_*.cc) -> output stage (output_stage.cc),
// driven by gemm.cc. Every microkernel computes the *raw* sum Σ_k a[m,k] * w[k,n]; all zero-point
// terms are applied by the output stage in wrapping 32-bit arithmetic, which is exact whenever the
// true result fits in int32 (two's-complement sums are exact modulo 2^32).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "common/float_bits.h"

namespace needle_qc {

// 64-byte aligned storage for packed operands: a k-quad row of a panel is exactly one cache line,
// so a zmm load never straddles two lines (malloc alone only guarantees 16 bytes).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

constexpr int kPanelWidth = 16;  // output columns per packed panel

enum class Isa { scalar, avx2, avx512vnni };

const char* isa_name(Isa isa);
bool cpu_has(Isa isa);
Isa best_isa();
// The ISA the kernels use now: NEEDLE_QC_ISA if set (validated), else the best one.
Isa selected_isa();
// Worker threads: NEEDLE_NUM_THREADS if set (>= 1), else 2.
int num_threads();

// Runs body(begin, end) over [0, n) split into contiguous chunks, one per worker thread.
template <class Body>
void parallel_for(size_t n, size_t min_chunk, Body body);

// --- packed int8 weights -----------------------------------------------------------------------

struct PackedWeightS8 {
  size_t K = 0, N = 0, K4 = 0, panels = 0;
  AlignedVector<int8_t> data;       // panels * K4 * 16 bytes, layout in the glossary
  std::vector<int32_t> colsum;      // Σ_k w[k, n] (raw, zero point not subtracted)
  std::vector<int32_t> zero_point;  // w_zp per column (broadcast from [1])
  std::vector<int64_t> col_abs;     // Σ_k |w[k, n] - w_zp[n]|, for accumulator_bound
  int32_t max_pair_abs = 0;         // max over n, k-pairs of |w[2k,n]| + |w[2k+1,n]|
  bool zero_point_is_zero = true;

  const int8_t* panel(size_t p) const { return data.data() + p * K4 * kPanelWidth; }
  size_t nbytes() const;
};

PackedWeightS8 pack_weight_s8(const int8_t* w, size_t K, size_t N, const int32_t* w_zp,
                              size_t n_zp);

// --- packed activations (LHS) ------------------------------------------------------------------

// Rows [M][K4] of u8 activations: a view of the caller's array when it already has that layout
// (u8, K % 4 == 0), else a copy in `u8_storage`. Move-only, so `u8` never dangles.
struct PackedA {
  size_t M = 0, K = 0, K4 = 0;
  const uint8_t* u8 = nullptr;  // [M][K4] for VNNI / vpmaddubsw / scalar
  std::vector<int16_t> i16;     // [M][K4] widened copy for the exact AVX2 vpmaddwd path
  std::vector<int32_t> rowsum;  // Σ_k a[m, k] (after the s8 -> u8 shift); empty when not needed
  int max_value = -1;           // largest packed byte (fast-path proof); -1 when not computed
  AlignedVector<uint8_t> u8_storage;

  PackedA() = default;
  PackedA(PackedA&&) = default;
  PackedA& operator=(PackedA&&) = default;
  PackedA(const PackedA&) = delete;
  PackedA& operator=(const PackedA&) = delete;
};

// What the chosen kernel path needs besides the u8 rows.
struct PackANeeds {
  bool widen_i16 = false;  // exact AVX2 path
  bool rowsums = false;    // weights with a zero point
  bool max_value = false;  // AVX2 fast-path claim to check
};

// a_is_s8: a holds int8 values, shifted by +128 into u8 while packing (always a copy).
PackedA pack_a(const void* a, bool a_is_s8, size_t M, size_t K, const PackANeeds& needs);
// Adds what `needs` asks for to rows already in p.u8 (used by pack_a and im2col).
void complete_packed_a(PackedA& p, const PackANeeds& needs);

// --- microkernels: raw int32 tile c[mr][16] = Σ_k a[m, k] * w_panel[k, n] ----------------

constexpr size_t kMaxMR = 8;
size_t ukernel_mr(Isa isa, bool fast);
void ukernel_u8s8_scalar(size_t mr, size_t K4, const uint8_t* a, size_t lda, const int8_t* w,
                         int32_t* c);
void ukernel_i16_avx2_exact(size_t mr, size_t K4, const int16_t* a, size_t lda, const int8_t* w,
                            int32_t* c);
// accumulate: add to the sums already in c (a later depth block of the same tile).
void ukernel_u8s8_avx2_maddubs(size_t mr, size_t K4, const uint8_t* a, size_t lda,
                               const int8_t* w, int32_t* c, bool accumulate = false);

// --- output stages -----------------------------------------------------------------------------

// Per-call parameters shared by every output stage; arrays of length 1 broadcast.
struct OutputParams {
  const int32_t* a_zp = nullptr;  // per row (length M) or [1], already shifted for s8
  bool a_zp_per_row = false;
  const int32_t* bias_i32 = nullptr;  // [N] or nullptr
  // requantize: y = clamp(rint((float)acc * M[n]) + y_zp, qmin, qmax)
  const float* multiplier = nullptr;
  bool multiplier_per_col = false;
  int32_t y_zp = 0, qmin = 0, qmax = 255;
  bool out_s8 = false;
  // float: y = (float)acc * (row_scale[m] * scale[n]) + bias[n], optional ReLU
  const float* scale = nullptr;
  bool scale_per_col = false;
  const float* row_scale = nullptr;  // [M] or nullptr
  const float* bias_f32 = nullptr;   // [N] or nullptr
  bool relu = false;
};

enum class OutputKind { s32, requant, f32 };

// Exact int32 Σ_k (a - z_a)(w - z_w) [+ bias] for one tile, wrapping arithmetic.
void correct_tile(const int32_t* c, size_t mr, size_t m0, size_t n0, size_t nc,
                  const PackedWeightS8& w, const PackedA& a, const OutputParams& p,
                  int32_t* acc);
void output_tile(OutputKind kind, const int32_t* acc, size_t mr, size_t m0, size_t n0, size_t nc,
                 const OutputParams& p, void* out, size_t N);
// correct_tile + output_tile fused for a full 16-column tile (AVX2; bit-identical results).
void output_tile16_avx2(OutputKind kind, const int32_t* c, size_t mr, size_t m0, size_t n0,
                        const PackedWeightS8& w, const PackedA& a, const OutputParams& p,
                        void* out, size_t N);
void output_tile16_avx512(OutputKind kind, const int32_t* c, size_t mr, size_t m0, size_t n0,
                          const PackedWeightS8& w, const PackedA& a, const OutputParams& p,
                          void* out, size_t N);

// --- GEMM driver -------------------------------------------------------------------------------

struct GemmOptions {
  bool allow_fast = false;  // vpmaddubsw path (caller proved no int16 saturation)
};
void gemm_u8s8(const PackedA& a, const PackedWeightS8& w, Isa isa, const GemmOptions& opt,
               OutputKind kind, const OutputParams& p, void* out);
// The same GEMM entirely on the calling thread (for callers that split the rows themselves).
void gemm_u8s8_on_caller(const PackedA& a, const PackedWeightS8& w, Isa isa,
                         const GemmOptions& opt, OutputKind kind, const OutputParams& p,
                         void* out);

// --- quantize / dequantize ---------------------------------------------------------------------

// q[i] = clamp(rint(x[i] / s[i*s_step]) + z[i*s_step], qmin, qmax); returns false on NaN.
bool quantize_span_scalar(const float* x, size_t n, const float* s, const int32_t* z,
                          size_t s_step, int qmin, int qmax, bool out_s8, void* q);
bool quantize_span_avx2(const float* x, size_t n, const float* s, const int32_t* z,
                        size_t s_step, int qmin, int qmax, bool out_s8, void* q);
bool quantize_span_avx512(const float* x, size_t n, const float* s, const int32_t* z,
                          size_t s_step, int qmin, int qmax, bool out_s8, void* q);
// y[i] = (q[i] - z) * s with one rounding each to fp32 and of the product (ONNX
// DequantizeLinear); in an -O3 file, since the bindings are built at -O1.
void dequantize_span(const uint8_t* q, size_t n, float s, int32_t z, float* y);
void dequantize_span(const int8_t* q, size_t n, float s, int32_t z, float* y);
void dequantize_span(const int32_t* q, size_t n, float s, int32_t z, float* y);
// mn/mx of x[0..n) (0/0 for n == 0), for dynamic quantization; false on NaN or +-inf.
bool min_max_f32(const float* x, size_t n, float& mn, float& mx);

// --- weight-only (fp32 activations, compressed weights converted inside the microkernel) --------

enum class WeightFormat { f16, bf16, int4 };

struct PackedWeightLowBit {
  WeightFormat format = WeightFormat::f16;
  size_t K = 0, N = 0, panels = 0, group_size = 0, groups = 0;
  std::vector<uint16_t> half;    // f16/bf16: [panel][K][16]
  std::vector<uint8_t> nibbles;  // int4: [panel][K][8] (column 2j low nibble, 2j+1 high)
  std::vector<float> scales;     // int4: [panel][groups][16]
  size_t n_overflow = 0, n_subnormal = 0;  // f16 cast report (contract §2.10.7)
  size_t nbytes() const;
};

// Weight casts: the shared rounding code (common/float_bits.h), NaN -> one canonical quiet NaN.
inline uint16_t f32_to_f16_rne(float x) { return needle::common::float_to_half_canonical_nan(x); }
inline float f16_to_f32(uint16_t h) { return needle::common::half_to_float(h); }
inline uint16_t f32_to_bf16_rne(float x) { return needle::common::float_to_bf16(x); }
inline float bf16_to_f32(uint16_t h) { return needle::common::bf16_to_float(h); }

PackedWeightLowBit pack_weight_half(const float* w, size_t K, size_t N, WeightFormat format);
PackedWeightLowBit pack_weight_int4(const int8_t* q, size_t K, size_t N, const float* scales,
                                    size_t group_size);
void gemm_f32_lowbit(const float* x, size_t M, const PackedWeightLowBit& w, const float* bias,
                     Isa isa, float* y);
// Panel kernels: y[mr][16] = x[mr, :] @ W_panel (fp32 accumulation, bias excluded).
void lowbit_panel_scalar(size_t mr, const float* x, size_t ldx, const PackedWeightLowBit& w,
                         size_t panel, float* y);
void lowbit_panel_avx2(size_t mr, const float* x, size_t ldx, const PackedWeightLowBit& w,
                       size_t panel, float* y);
// k-rows [k0, k0 + kc) of one panel decoded into tile[kc][16] (the panel kernel's decode).
void lowbit_decode_block_avx2(const PackedWeightLowBit& w, size_t panel, size_t k0, size_t kc,
                              float* tile);
// acc[r][0..16) (row stride ld) = (first ? 0 : acc) + Σ_k x[k * kFmaRows + r] * tile[k][0..16),
// one FMA per k in order: the same per-element sequence as the panel kernels, so the same bits.
constexpr size_t kFmaRows = 6;
void fma_rows_x16_avx2(size_t mr, const float* x, const float* tile, size_t kc, float* acc,
                       size_t ld, bool first);

}  // namespace needle_qc

#include "quant/cpu/parallel.h"
