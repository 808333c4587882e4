// gemm_f32.h: y = a @ w with w packed once for the direct conv's register tiles (conv_f32.h):
// full NR-column panels, then the last n % NR columns as one compact panel, so the packed weight
// holds exactly k * n floats. K is split at 256 as Needle's sgemm splits it: every output is one
// FMA chain from +0 per block of 256, later blocks added in order: its bits for more than 4 rows.
#pragma once

#include <cstddef>

namespace needle_qc {

constexpr size_t kGemmF32KBlock = 256;  // Needle sgemm's K block (ndarray/cpu/sgemm.cc)

// w [k, n] -> [n / NR][k][NR] panels + [k][n % NR]; NR = conv_f32_panel(n).
void pack_gemm_f32(const float* w, size_t k, size_t n, float* packed);

// y [m, n] = a [m, k] (contiguous rows) @ the packed w [+ bias[j]] [then ReLU]; panels or row
// tiles split evenly across threads. Later K blocks are added onto y inside the tile (block + y),
// the bias add (after the whole sum) and ReLU (NaN and -0 kept, as np.maximum(v, 0)) with the
// last: the same bits as the chain sum, then numpy's add and maximum on the product.
void gemm_f32_packed(const float* a, size_t m, size_t k, const float* packed, size_t n, float* y,
                     const float* bias = nullptr, bool relu = false);

}  // namespace needle_qc
