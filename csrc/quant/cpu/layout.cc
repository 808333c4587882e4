// layout.cc: blocked NCHW <-> NHWC copies. numpy's strided copy of a (N, C, H, W) -> (N, H, W, C)
// uint8 view walks the source with a stride of H*W bytes per element (resnet9's 64x3x32x32
// input: 328 us); here each block of kBlock pixels reads C contiguous runs and writes one
// contiguous run of kBlock*C elements, both in cache.
#include "quant/cpu/layout.h"

#include <algorithm>
#include <cstdint>

#include "quant/cpu/parallel.h"

namespace needle_qc {

namespace {

constexpr size_t kBlock = 64;  // pixels per block: C runs of 64 elements in, 64*C out

// to_nhwc: in [C, plane] -> out [plane, C]; else the reverse. One image, pixels [p0, p1).
template <class T, bool to_nhwc>
void copy_block(const T* in, T* out, size_t channels, size_t plane, size_t p0, size_t p1) {
  for (size_t c = 0; c < channels; ++c) {
    if (to_nhwc) {
      const T* src = in + c * plane;
      for (size_t p = p0; p < p1; ++p) out[p * channels + c] = src[p];
    } else {
      T* dst = out + c * plane;
      for (size_t p = p0; p < p1; ++p) dst[p] = in[p * channels + c];
    }
  }
}

// The same for a channel count known at compile time (the 1-4 channel inputs of image models):
// pixel-major, so each pixel's C elements are written together and the compiler unrolls C.
template <class T, bool to_nhwc, size_t C>
void copy_block_c(const T* in, T* out, size_t plane, size_t p0, size_t p1) {
  for (size_t p = p0; p < p1; ++p)
    for (size_t c = 0; c < C; ++c) {
      if (to_nhwc)
        out[p * C + c] = in[c * plane + p];
      else
        out[c * plane + p] = in[p * C + c];
    }
}

template <class T, bool to_nhwc>
void copy_any(const T* in, T* out, size_t channels, size_t plane, size_t p0, size_t p1) {
  switch (channels) {
    case 1: return copy_block_c<T, to_nhwc, 1>(in, out, plane, p0, p1);
    case 2: return copy_block_c<T, to_nhwc, 2>(in, out, plane, p0, p1);
    case 3: return copy_block_c<T, to_nhwc, 3>(in, out, plane, p0, p1);
    case 4: return copy_block_c<T, to_nhwc, 4>(in, out, plane, p0, p1);
    default: return copy_block<T, to_nhwc>(in, out, channels, plane, p0, p1);
  }
}

template <class T, bool to_nhwc>
void transpose_all(const void* in, void* out, size_t batch, size_t channels, size_t plane) {
  const size_t blocks_per_image = (plane + kBlock - 1) / kBlock;
  const size_t image = channels * plane;
  const size_t min_blocks = std::max<size_t>(1, (size_t{1} << 16) / (kBlock * channels * sizeof(T)));
  parallel_for(batch * blocks_per_image, min_blocks, [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) {
      const size_t n = b / blocks_per_image, p0 = (b % blocks_per_image) * kBlock;
      const size_t p1 = std::min(plane, p0 + kBlock);
      copy_any<T, to_nhwc>(static_cast<const T*>(in) + n * image,
                           static_cast<T*>(out) + n * image, channels, plane, p0, p1);
    }
  });
}

template <bool to_nhwc>
void dispatch(const void* in, void* out, size_t batch, size_t channels, size_t plane,
              size_t itemsize) {
  switch (itemsize) {
    case 1: return transpose_all<uint8_t, to_nhwc>(in, out, batch, channels, plane);
    case 2: return transpose_all<uint16_t, to_nhwc>(in, out, batch, channels, plane);
    case 4: return transpose_all<uint32_t, to_nhwc>(in, out, batch, channels, plane);
    default: return transpose_all<uint64_t, to_nhwc>(in, out, batch, channels, plane);
  }
}

}  // namespace

void nchw_to_nhwc(const void* in, void* out, size_t batch, size_t channels, size_t plane,
                  size_t itemsize) {
  dispatch<true>(in, out, batch, channels, plane, itemsize);
}

void nhwc_to_nchw(const void* in, void* out, size_t batch, size_t channels, size_t plane,
                  size_t itemsize) {
  dispatch<false>(in, out, batch, channels, plane, itemsize);
}

}  // namespace needle_qc
