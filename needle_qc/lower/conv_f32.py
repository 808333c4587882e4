"""The direct NHWC fp32 convolution of :mod:`needle_qc._quant_cpu` (no im2col copy)."""

import numpy as np

from needle_qc.lower.common import _kernels
from needle_qc.opset.activations import apply_to_array

DIRECT_CONV_F32 = "fp32 direct conv (C++, NHWC, AVX2 FMA)"


def direct_conv_available():
    kernels = _kernels()
    return kernels is not None and hasattr(kernels, "conv2d_nhwc_f32")


def direct_conv_f32(w, bias, stride, padding, activation=None):
    """``(run, packed weight)``: ``run(x_nhwc)`` convolves with ``w`` ``[K, K, Cin, Cout]``,
    adds ``bias`` and applies ``activation`` (ReLU fused into the kernel's store).

    Each output is one FMA chain over (kh, kw, c): the same bits on any thread count.
    """
    kernels = _kernels()
    k, cout = w.shape[0], w.shape[3]
    packed = kernels.pack_conv_f32(np.ascontiguousarray(w, np.float32))
    bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
    relu = activation == "relu"

    def run(x):
        y = kernels.conv2d_nhwc_f32(np.asarray(x, np.float32), packed, k, cout, bias, stride,
                                    padding, relu)
        return y if relu or activation is None else apply_to_array(activation, y)

    run.kernel = DIRECT_CONV_F32
    return run, packed
