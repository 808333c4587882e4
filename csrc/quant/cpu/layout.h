// layout.h: NCHW <-> NHWC copies (the layout boundaries of the int8 / fp32 conv chains).
#pragma once

#include <cstddef>

namespace needle_qc {

// out[n, p, c] = in[n, c, p] for p < plane (= H*W), c < channels; elements of `itemsize` bytes
// (1, 2, 4 or 8). nhwc_to_nchw is the inverse. Pure copies: any thread split, same bytes.
void nchw_to_nhwc(const void* in, void* out, size_t batch, size_t channels, size_t plane,
                  size_t itemsize);
void nhwc_to_nchw(const void* in, void* out, size_t batch, size_t channels, size_t plane,
                  size_t itemsize);

}  // namespace needle_qc
