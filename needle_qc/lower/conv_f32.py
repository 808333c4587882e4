"""The direct NHWC fp32 convolution of :mod:`needle_qc._quant_cpu` (no im2col copy), and the
packed fp32 GEMM on the same register tiles (K split as Needle's sgemm splits it)."""

import numpy as np

from needle_qc.frontend.compute import bundled_cpu_module, zero_copy
from needle_qc.lower.common import _kernels
from needle_qc.opset.activations import apply_to_array

DIRECT_CONV_F32 = "fp32 direct conv (C++, NHWC, AVX2 FMA)"


def in_backend_memory(packed):
    """``packed`` moved into the bundled NDArray backend's memory (a zero-copy view of it) when
    that backend is the one in use, so its allocator counts the weights a model keeps, as it
    does for the NDArray GEMM's; else ``packed`` as is."""
    mod = bundled_cpu_module()
    if mod is None or not zero_copy(mod):
        return packed
    owner = mod.Array(packed.size)
    mod.from_numpy(packed, owner)
    return mod.to_numpy(owner, (packed.size,), (1,), 0)


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
    packed = in_backend_memory(kernels.pack_conv_f32(np.ascontiguousarray(w, np.float32)))
    bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
    relu = activation == "relu"
    layer_cls = getattr(kernels, "ConvF32Layer", None)
    if layer_cls is not None:  # bound once: a call parses x alone
        layer = layer_cls(packed, k, w.shape[2], cout, bias, stride, padding, relu)

        def run(x):
            y = layer(np.asarray(x, np.float32))
            return y if relu or activation is None else apply_to_array(activation, y)
    else:
        def run(x):
            y = kernels.conv2d_nhwc_f32(np.asarray(x, np.float32), packed, k, cout, bias,
                                        stride, padding, relu)
            return y if relu or activation is None else apply_to_array(activation, y)

    run.kernel = DIRECT_CONV_F32
    return run, packed


def direct_gemm_f32(w2d):
    """``fn(a2d) -> a2d @ w2d`` on the packed fp32 GEMM (weight packed once into exactly
    ``w2d``'s K * N floats, numpy in and out: no copies into the NDArray backend), or None when
    the kernel is not built.

    Every output sums K in blocks of 256, each one FMA chain, the blocks added in order: the
    NDArray sgemm's bits for more than 4 rows (its 1-4 row path sums in another order; the
    direct kernel's rows do not depend on the batch).
    """
    kernels = _kernels()
    if kernels is None or not hasattr(kernels, "gemm_f32"):
        return None
    n = w2d.shape[1]
    packed = in_backend_memory(kernels.pack_gemm_f32(np.ascontiguousarray(w2d, np.float32)))

    def run(a2d):
        return kernels.gemm_f32(a2d, packed, n)

    run.nbytes = packed.nbytes
    run.bind = _gemm_layer_binder(kernels, packed, w2d.shape[0], n)
    return run


def _gemm_layer_binder(kernels, packed, k, n):
    """``bind(bias, relu)``: a GemmF32Layer on ``packed`` (the bias add and ReLU fused into its
    call, one argument parsed a call), or None where the built module has none."""
    layer_cls = getattr(kernels, "GemmF32Layer", None)
    if layer_cls is None:
        return lambda bias, relu: None
    return lambda bias, relu: layer_cls(packed, k, n, bias, relu)
