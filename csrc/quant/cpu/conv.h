// conv.h: convolution geometry and the im2col packer (NHWC activations, [KH,KW,Cin,Cout] weights).
#pragma once

#include "quant/cpu/quant.h"

namespace needle_qc {

struct ConvGeometry {
  size_t H, W, C, KH, KW, sh, sw, ph, pw, OH, OW;
  ConvGeometry(size_t H, size_t W, size_t C, size_t KH, size_t KW, size_t sh, size_t sw,
               size_t ph, size_t pw);
  bool is_pointwise() const;  // 1x1, stride 1, no padding: the input already is the LHS
};

struct PackedConvWeight {
  PackedWeightS8 gemm;  // the weight viewed as [KH*KW*Cin, Cout]
  size_t KH = 0, KW = 0, Cin = 0, Cout = 0;
};

// Packed LHS of one image x[H, W, C]: row = output pixel, padded taps = x_zp.
PackedA im2col_pack(const uint8_t* x, const ConvGeometry& g, uint8_t x_zp,
                    const PackANeeds& needs);

// The whole batch x[batch, H, W, C] -> out [batch, OH, OW, Cout] (out_itemsize bytes each) as one
// GEMM over batch * OH * OW rows: threads take runs of L2-sized row blocks, each im2col-packed
// right before it is multiplied. Few rows and many channels split the columns instead. Results
// are identical either way.
void conv2d_u8s8_batch(const uint8_t* x, size_t batch, const ConvGeometry& g, uint8_t x_zp,
                       const PackedConvWeight& w, Isa isa, OutputKind kind,
                       const OutputParams& p, void* out, size_t out_itemsize);

}  // namespace needle_qc
