// ukernel_panels.h: multi-panel microkernels (several adjacent 16-column panels per call).
#pragma once

#include "quant/cpu/quant.h"

namespace needle_qc {

constexpr size_t kMaxPanelsPerTile = 4;
// Stride between the per-panel tiles of a multi-panel result: c[p * kTileStride + r * 16 + j].
constexpr size_t kTileStride = kMaxMR * kPanelWidth;

// Raw int32 tiles for np <= kMaxPanelsPerTile adjacent panels starting at w (panel_stride bytes
// apart); exact for every input, the same sums as the scalar kernel panel by panel.
// accumulate: add to the sums already in c (a later depth block; int32 sums wrap, so splitting
// the depth changes no bit).
void ukernel_u8s8_avx512vnni_panels(size_t mr, size_t np, size_t K4, const uint8_t* a,
                                    size_t lda, const int8_t* w, size_t panel_stride,
                                    int32_t* c, bool accumulate = false);

}  // namespace needle_qc
