"""Builders of weight-only ops: f16/bf16/int4 kernels, else an fp32 weight made at load."""

import numpy as np

from .lowering_common import _kernels, _weight_record
from .lowering_float import F32Matmul, _conv_f32_nhwc, _linear_f32
from .lowering_program import Impl
from .quantize.lowbit import bf16_to_float32, unpack_int4

# ----------------------------------------------------------------------------- builders

def _weight_only_arrays(ctx, node):
    arrays = [ctx.const(i) for i in node.inputs[1:]]
    if any(a is None for a in arrays):
        return None, None
    if node.attrs["has_bias"]:
        return arrays[:-1], arrays[-1].astype(np.float32)
    return arrays, None


def dequantized_weight(parts, attrs, k, red_axis):
    """fp32 weight of a weight-only op (same formula as the interpreter)."""
    from .quantize.qeval import dequantize_weight

    return np.asarray(dequantize_weight(parts, attrs, k, red_axis), np.float32)


def build_linear_weight_only(ctx, node):
    """f16/bf16/int4 -> gemm_f32_w* (weights decoded in registers); others -> fp32 GEMM."""
    q = _kernels()
    parts, bias = _weight_only_arrays(ctx, node)
    if parts is None:
        return None
    attrs, wdt = node.attrs, node.attrs["weight_dtype"]
    k = node.inputs[0].meta["shape"][-1]
    w_f = dequantized_weight(parts, attrs, k, 0)
    n = w_f.shape[1]
    inputs = [ctx.value(node.inputs[0], "logical")]
    mm = F32Matmul(w_f)
    alt = Impl("fp32 gemm (ndl.cpu), weight dequantized at load", "float version",
               _linear_f32(mm, bias), inputs,
               weights=[_weight_record(node, "float32", w_f.size, mm.nbytes, 0)])
    packed = _pack_weight_only(q, parts, attrs, k) if q is not None else None
    if packed is None:
        alt.why = f"no kernel for {wdt} ({attrs['granularity']}" \
                  f"{', zero point' if attrs['has_zero_point'] else ''}): fp32 weight kept"
        return alt
    pw, gemm, qbytes = packed

    def fn(x):
        y = gemm(np.ascontiguousarray(x.reshape(-1, k), np.float32), pw, bias)
        return y.reshape(x.shape[:-1] + (n,))

    weights = [_weight_record(node, wdt, k * n, pw.nbytes,
                              qbytes + (0 if bias is None else bias.nbytes))]
    impl = Impl(gemm.__name__, "weight-only kernel: weights converted in registers", fn, inputs,
                weights=weights, kind="int8")
    return impl, alt


def _pack_weight_only(q, parts, attrs, k):
    wdt = attrs["weight_dtype"]
    if wdt == "float16":
        return q.pack_weight_f16(parts[0].astype(np.float32)), q.gemm_f32_wf16, 0
    if wdt == "bfloat16":
        w = parts[0]
        w32 = bf16_to_float32(w) if w.dtype == np.uint16 else w.astype(np.float32)
        return q.pack_weight_bf16(w32), q.gemm_f32_wbf16, 0
    if wdt == "int4" and not attrs["has_zero_point"]:
        wq = unpack_int4(parts[0], k, axis=0, signed=True).astype(np.int8)
        scales = np.ascontiguousarray(parts[1], np.float32)
        pw = q.pack_weight_int4(np.ascontiguousarray(wq), scales, attrs["group_size"])
        return pw, q.gemm_f32_wint4, scales.nbytes
    return None


def build_conv2d_weight_only(ctx, node):
    parts, bias = _weight_only_arrays(ctx, node)
    if parts is None:
        return None
    w_f = dequantized_weight(parts, node.attrs, node.inputs[0].meta["shape"][1], 2)
    conv, mm = _conv_f32_nhwc(w_f, bias, node.attrs["stride"], node.attrs["padding"])
    return Impl("fp32 im2col gemm (ndl.cpu), weight dequantized at load",
                f"no {node.attrs['weight_dtype']} conv kernel: fp32 weight kept", conv,
                [ctx.value(node.inputs[0], "nhwc")], "nhwc",
                [_weight_record(node, "float32", w_f.size, mm.nbytes, 0)])
