// matmul for every dtype and the course's tiled float32 matmul.
#pragma once

#include <cstdint>

#include "ndarray/cpu/array.h"

namespace needle {
namespace cpu {

constexpr int64_t kTile = 8;  // __tile_size__ of matmul_tiled

// out = a (m x n) @ b (n x p). Floats accumulate in fp32; int8/uint8/int32 give int32 (wraps).
void matmul(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p);
// count products a[i] (m x n) @ b[i] (n x p) -> out[i], all three compact [count, ., .].
void matmul_batched(const Array& a, const Array& b, Array& out, int64_t count, int64_t m,
                    int64_t n, int64_t p);
// Tiled layout [m/T][n/T][T][T] @ [n/T][p/T][T][T] -> [m/T][p/T][T][T], float32.
void matmul_tiled(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p);

}  // namespace cpu
}  // namespace needle
