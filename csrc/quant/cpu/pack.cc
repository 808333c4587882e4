// pack.cc: packs int8 weights into k-quad panels (with column sums) and activations into rows.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "quant/cpu/quant.h"

namespace needle_qc {

size_t PackedWeightS8::nbytes() const {
  return data.size() + 4 * (colsum.size() + zero_point.size()) + 8 * col_abs.size();
}

static void pack_panel_s8(const int8_t* w, size_t K, size_t N, size_t n0, size_t K4,
                          int8_t* dst) {
  // dst[kq][n][k % 4]; columns past N and depths past K stay zero.
  for (size_t k = 0; k < K; ++k) {
    for (size_t j = 0; j < kPanelWidth && n0 + j < N; ++j) {
      dst[(k / 4) * 4 * kPanelWidth + j * 4 + (k % 4)] = w[k * N + n0 + j];
    }
  }
  (void)K4;
}

static void column_statistics(const int8_t* w, size_t K, size_t N, PackedWeightS8& p) {
  p.colsum.assign(N, 0);
  p.col_abs.assign(N, 0);
  p.max_pair_abs = 0;
  for (size_t k = 0; k < K; ++k) {
    for (size_t n = 0; n < N; ++n) {
      int v = w[k * N + n];
      p.colsum[n] += v;
      p.col_abs[n] += std::abs(v - p.zero_point[n]);
    }
  }
  // vpmaddubsw adds the products of depths (2k, 2k+1); a missing odd depth is a zero.
  for (size_t k = 0; k < K; k += 2) {
    for (size_t n = 0; n < N; ++n) {
      int pair = std::abs(int(w[k * N + n])) + (k + 1 < K ? std::abs(int(w[(k + 1) * N + n])) : 0);
      p.max_pair_abs = std::max(p.max_pair_abs, pair);
    }
  }
}

PackedWeightS8 pack_weight_s8(const int8_t* w, size_t K, size_t N, const int32_t* w_zp,
                              size_t n_zp) {
  PackedWeightS8 p;
  p.K = K;
  p.N = N;
  p.K4 = (K + 3) / 4 * 4;
  p.panels = (N + kPanelWidth - 1) / kPanelWidth;
  p.data.assign(p.panels * p.K4 * kPanelWidth, 0);
  p.zero_point.resize(N);
  for (size_t n = 0; n < N; ++n) p.zero_point[n] = w_zp[n_zp == 1 ? 0 : n];
  p.zero_point_is_zero =
      std::all_of(p.zero_point.begin(), p.zero_point.end(), [](int32_t z) { return z == 0; });
  for (size_t pi = 0; pi < p.panels; ++pi) {
    pack_panel_s8(w, K, N, pi * kPanelWidth, p.K4, p.data.data() + pi * p.K4 * kPanelWidth);
  }
  column_statistics(w, K, N, p);
  return p;
}

static void row_sums(PackedA& p) {
  p.rowsum.assign(p.M, 0);
  for (size_t m = 0; m < p.M; ++m) {
    const uint8_t* row = p.u8 + m * p.K4;
    uint32_t s = 0;  // wraps like the accumulators, never UB
    for (size_t k = 0; k < p.K; ++k) s += row[k];
    p.rowsum[m] = static_cast<int32_t>(s);
  }
}

PackedA pack_a(const void* a, bool a_is_s8, size_t M, size_t K, const PackANeeds& needs) {
  PackedA p;
  p.M = M;
  p.K = K;
  p.K4 = (K + 3) / 4 * 4;
  const uint8_t* src = static_cast<const uint8_t*>(a);
  if (!a_is_s8 && p.K4 == K) {
    p.u8 = src;  // already [M][K4] u8: the kernels read the caller's array in place
  } else {
    p.u8_storage.resize(M * p.K4);
    // s8 -> u8 by flipping the sign bit: (uint8)(a + 128) == a ^ 0x80.
    const uint8_t flip = a_is_s8 ? 0x80 : 0x00;
    for (size_t m = 0; m < M; ++m) {
      uint8_t* dst = p.u8_storage.data() + m * p.K4;
      for (size_t k = 0; k < K; ++k) dst[k] = src[m * K + k] ^ flip;
      for (size_t k = K; k < p.K4; ++k) dst[k] = 0;  // a zero depth adds nothing
    }
    p.u8 = p.u8_storage.data();
  }
  complete_packed_a(p, needs);
  return p;
}

void complete_packed_a(PackedA& p, const PackANeeds& needs) {
  const size_t n = p.M * p.K4;
  if (needs.max_value) {
    uint8_t mx = 0;
    for (size_t i = 0; i < n; ++i) mx = std::max(mx, p.u8[i]);
    p.max_value = mx;
  }
  if (needs.widen_i16) p.i16.assign(p.u8, p.u8 + n);
  if (needs.rowsums) row_sums(p);
}

}  // namespace needle_qc
