// sgemm driver: BLIS-style loops (NC -> KC -> MC -> NR -> MR), packing, threads, edge tiles;
// templated on the microkernel's MR x NR (6x16 AVX2/portable, 12x32 AVX-512).
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "ndarray/cpu/parallel.h"
#include "ndarray/cpu/sgemm.h"
#include "ndarray/cpu/sgemm_small_m.h"

namespace needle {
namespace cpu {

namespace {

// k-depth of a packed panel: a 16-wide B micro-panel is 16 KiB, a 32-wide one 32 KiB (L1).
constexpr int64_t kKC = 256;
// Rows of the packed A block, a multiple of 6 and of 12: 144 x 256 floats = 144 KiB (L2).
constexpr int64_t kMC = 144;
constexpr int64_t kNC = 3072;  // columns of the packed B block: 3 MiB (L3)
constexpr int64_t kSmallM = 4;           // m at or below this uses the streaming kernel
constexpr int64_t kDirectBMaxM = 96;     // m at or below this reads B in place (no B packing)
constexpr int64_t kWideMinM = 48;        // m at or above this may use the 12x32 AVX-512 kernel

void portable_kernel(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                     int64_t ldc, bool acc) {
  constexpr int MR = kSgemmMR, NR = kSgemmNR;
  float t[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i) {
      const float av = a[p * MR + i];
      for (int j = 0; j < NR; ++j) t[i][j] += av * b[p * ldb + j];
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = acc ? c[i * ldc + j] + t[i][j] : t[i][j];
  }
}

void portable_small_m(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                      const float* b, int64_t ldb, float* c, int64_t ldc) {
  small_m_gemm(m, n, k, a, lda, b, ldb, c, ldc);
}

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, AlignedFree>;

// Scratch buffers are not Arrays: they are not part of memory_stats().
Buffer make_buffer(int64_t floats) {
  const size_t bytes = ((static_cast<size_t>(floats) * sizeof(float) + 63) / 64 + 1) * 64;
  return Buffer(static_cast<float*>(std::aligned_alloc(64, bytes)));
}

// Packs A[0:mc, 0:kc] (row stride lda) into MR-row panels, k-major, zero-padding the last panel.
template <int64_t MR>
void pack_a(int64_t mc, int64_t kc, const float* a, int64_t lda, float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int64_t rows = std::min(MR, mc - ir);
    for (int64_t p = 0; p < kc; ++p) {
      for (int64_t i = 0; i < MR; ++i) dst[p * MR + i] = i < rows ? a[(ir + i) * lda + p] : 0.0f;
    }
    dst += kc * MR;
  }
}

// Packs one NR-column panel B[0:kc, 0:cols] into kc x NR, zero-padding missing columns.
template <int64_t NR>
void pack_b_panel(int64_t kc, int64_t cols, const float* b, int64_t ldb, float* dst) {
  for (int64_t p = 0; p < kc; ++p) {
    const float* src = b + p * ldb;
    for (int64_t j = 0; j < NR; ++j) dst[p * NR + j] = j < cols ? src[j] : 0.0f;
  }
}

// Packs B[0:kc, 0:nc] into consecutive NR-column panels. Full panels are copied row by row of B so
// the source is read as one sequential stream (reading one narrow panel at a time walks B with a
// large, often power-of-two stride that defeats the prefetcher and aliases in L1).
template <int64_t NR>
void pack_b_block(int64_t kc, int64_t nc, const float* b, int64_t ldb, float* dst) {
  const int64_t full = nc / NR * NR;
  for (int64_t p = 0; p < kc; ++p) {
    const float* src = b + p * ldb;
    float* out = dst + p * NR;
    for (int64_t jr = 0; jr < full; jr += NR) {
      for (int64_t j = 0; j < NR; ++j) out[jr * kc + j] = src[jr + j];
    }
  }
  if (full < nc) pack_b_panel<NR>(kc, nc - full, b + full, ldb, dst + full * kc);
}

// The microkernels for this CPU: the driver is instantiated once per register-block shape.
struct Kernels {
  SgemmMicroKernel micro;     // kSgemmMR x kSgemmNR
  SgemmMicroKernel wide;      // kSgemm512MR x kSgemm512NR, or nullptr without AVX-512
  SgemmSmallMKernel small_m;
};

Kernels pick_kernels() {
  if (sgemm_avx2_supported()) {
    const SgemmMicroKernel wide = sgemm_avx512_supported() ? sgemm_kernel_avx512 : nullptr;
    return {sgemm_kernel_avx2, wide, sgemm_small_m_avx2};
  }
  return {portable_kernel, nullptr, portable_small_m};
}

// Runs the microkernel on one tile; partial tiles go through a local MR x NR buffer.
template <int64_t MR, int64_t NR>
void run_tile(SgemmMicroKernel micro, int64_t kc, const float* ap, const float* bp, int64_t ldb,
              float* c, int64_t ldc, int64_t rows, int64_t cols, bool acc) {
  if (rows == MR && cols == NR) {
    micro(kc, ap, bp, ldb, c, ldc, acc);
    return;
  }
  alignas(64) float t[MR * NR];
  micro(kc, ap, bp, ldb, t, NR, false);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      c[i * ldc + j] = acc ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
    }
  }
}

// C[0:m, 0:n] (row stride ldc) = A[0:m, 0:k] (lda) @ B[0:k, 0:n] (ldb), single-threaded.
template <int64_t MR, int64_t NR>
void sgemm_block(SgemmMicroKernel micro, int64_t m, int64_t n, int64_t k, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  const bool direct_b = m <= kDirectBMaxM;
  Buffer apack = make_buffer(kMC * kKC + MR * kKC);
  Buffer bpack = make_buffer(direct_b ? NR * kKC : (kNC + NR) * kKC);
  for (int64_t jc = 0; jc < n; jc += kNC) {
    const int64_t nc = std::min(kNC, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKC) {
      const int64_t kc = std::min(kKC, k - pc);
      const float* bblk = b + pc * ldb + jc;
      if (!direct_b) {
        pack_b_block<NR>(kc, nc, bblk, ldb, bpack.get());
      }
      for (int64_t ic = 0; ic < m; ic += kMC) {
        const int64_t mc = std::min(kMC, m - ic);
        pack_a<MR>(mc, kc, a + ic * lda + pc, lda, apack.get());
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t cols = std::min(NR, nc - jr);
          const float* bp = bpack.get() + jr * kc;
          int64_t bstride = NR;
          if (direct_b && cols == NR) {
            bp = bblk + jr;
            bstride = ldb;
          } else if (direct_b) {
            pack_b_panel<NR>(kc, cols, bblk + jr, ldb, bpack.get());
            bp = bpack.get();
          }
          for (int64_t ir = 0; ir < mc; ir += MR) {
            run_tile<MR, NR>(micro, kc, apack.get() + ir * kc, bp, bstride,
                             c + (ic + ir) * ldc + jc + jr, ldc, std::min(MR, mc - ir), cols,
                             pc > 0);
          }
        }
      }
    }
  }
}

// m <= kSmallM is bound by streaming B from memory: give each thread a contiguous band of B's
// rows (one sequential stream, partial sums in a private buffer), then add the partials.
void small_m_split_k(const Kernels& kern, int nt, int64_t m, int64_t n, int64_t k,
                     const float* a, const float* b, float* c) {
  const int64_t chunk = (k + nt - 1) / nt;
  std::vector<Buffer> partial(nt);
  for (int t = 1; t < nt; ++t) partial[t] = make_buffer(m * n);
  parallel_run(nt, [&](int t, int) {
    const int64_t k0 = std::min(k, t * chunk), k1 = std::min(k, k0 + chunk);
    float* dst = t == 0 ? c : partial[t].get();
    kern.small_m(m, n, k1 - k0, a + k0, k, b + k0 * n, n, dst, n);
  });
  for (int t = 1; t < nt; ++t) {
    const float* src = partial[t].get();
    for (int64_t i = 0; i < m * n; ++i) c[i] += src[i];
  }
}

// Splits C over nt threads (columns when there are enough of them, else rows) and runs the
// blocked kernel on each part.
template <int64_t MR, int64_t NR>
void sgemm_threaded(const Kernels& kern, SgemmMicroKernel micro, int nt, int64_t m, int64_t n,
                    int64_t k, const float* a, const float* b, float* c) {
  // Split columns when there are enough of them (A is small to re-pack per thread), else rows.
  const bool split_n = n >= nt * 4 * NR || m < nt * MR;
  const int64_t extent = split_n ? n : m;
  const int64_t align = split_n ? NR : MR;
  const int64_t chunk = ((extent + nt - 1) / nt + align - 1) / align * align;
  parallel_run(nt, [&](int t, int) {
    const int64_t lo = std::min(extent, t * chunk), hi = std::min(extent, lo + chunk);
    if (lo >= hi) return;
    if (split_n) {
      if (m <= kSmallM) {
        kern.small_m(m, hi - lo, k, a, k, b + lo, n, c + lo, n);
      } else {
        sgemm_block<MR, NR>(micro, m, hi - lo, k, a, k, b + lo, n, c + lo, n);
      }
    } else if (hi - lo <= kSmallM) {
      kern.small_m(hi - lo, n, k, a + lo * k, k, b, n, c + lo * n, n);
    } else {
      sgemm_block<MR, NR>(micro, hi - lo, n, k, a + lo * k, k, b, n, c + lo * n, n);
    }
  });
}

}  // namespace

void sgemm(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill_n(c, m * n, 0.0f);
    return;
  }
  const Kernels kern = pick_kernels();
  const double flops = 2.0 * m * n * k;
  const int nt = flops < 2e6 ? 1 : num_threads();
  if (m <= kSmallM && nt > 1 && k >= 64 * nt) {
    small_m_split_k(kern, nt, m, n, k, a, b, c);
    return;
  }
  // Short A blocks would leave much of a 12-row tile as padding: they keep the 6x16 kernel.
  if (kern.wide != nullptr && m >= kWideMinM) {
    sgemm_threaded<kSgemm512MR, kSgemm512NR>(kern, kern.wide, nt, m, n, k, a, b, c);
  } else {
    sgemm_threaded<kSgemmMR, kSgemmNR>(kern, kern.micro, nt, m, n, k, a, b, c);
  }
}

}  // namespace cpu
}  // namespace needle
