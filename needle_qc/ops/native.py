"""The ``backend="native"`` implementations of :mod:`needle_qc.ops` on the C++ kernels.

:func:`register` adds them with :func:`needle_qc.ops.register_backend` (``ops.py`` calls it
once at import; importing this module alone registers nothing). Each function has the
reference signature and returns the same bits as the reference; argument combinations the
kernels do not cover (blocked scales, grouped or dilated convolutions, int8 conv inputs,
per-row A scales) raise ``NotImplementedError`` naming the argument, and a product whose int32
accumulator could overflow raises ``OverflowError`` before any kernel runs (the kernels would
wrap, the reference raises).
"""

import numpy as np

from needle_qc.quantize._checks import _output_qdtype
from needle_qc.quantize.qparams import qrange
from needle_qc.quantize.reference import requant_multiplier

INT32_MAX = 2**31 - 1
Q8 = ("uint8", "int8")


def _q():
    from needle_qc import _quant_cpu

    return _quant_cpu


def _unsupported(op, what):
    raise NotImplementedError(f"{op}: backend 'native' does not support {what}; "
                              "use backend='reference'")


def _scale_vector(scale, op, arg):
    s = np.asarray(scale)
    if s.dtype != np.float32:
        _unsupported(op, f"{arg} of dtype {s.dtype} (float32 only)")
    if s.ndim > 1:
        _unsupported(op, f"a {s.ndim}-D {arg} (blocked quantization)")
    return np.ascontiguousarray(s.reshape(-1))


def _zp_vector(zp, size):
    if zp is None:
        return np.zeros(size, np.int32)
    return np.ascontiguousarray(np.asarray(zp).reshape(-1).astype(np.int32))


def quantize_linear(x, y_scale, y_zero_point=None, axis=1, block_size=0, saturate=1,
                    output_dtype=None):
    """QuantizeLinear with ``quantize_f32`` (per tensor or per axis, uint8/int8)."""
    op = "QuantizeLinear"
    if block_size:
        _unsupported(op, f"block_size={block_size}")
    qname = _output_qdtype(y_zero_point, output_dtype, op)
    if qname not in Q8:
        _unsupported(op, f"output dtype {qname}")
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"{op}: x must be a float tensor, got {x.dtype}")
    s = _scale_vector(y_scale, op, "y_scale")
    z = _zp_vector(y_zero_point, s.size)
    x32 = np.ascontiguousarray(x, np.float32)
    ax = axis % x.ndim if s.size > 1 and x.ndim else 0
    return _q().quantize_f32(x32, s, z, ax, qname)


def dequantize_linear(x, x_scale, x_zero_point=None, axis=1, block_size=0):
    """DequantizeLinear with the ``dequantize`` kernel (uint8/int8/int32, fp32 scales)."""
    op = "DequantizeLinear"
    if block_size:
        _unsupported(op, f"block_size={block_size}")
    x = np.asarray(x)
    if x.dtype.name not in Q8 + ("int32",):
        _unsupported(op, f"x of dtype {x.dtype}")
    s = _scale_vector(x_scale, op, "x_scale")
    z = _zp_vector(x_zero_point, s.size)
    ax = axis % x.ndim if s.size > 1 and x.ndim else 0
    return _q().dequantize(np.ascontiguousarray(x), s, z, ax)


def dynamic_quantize_linear(x):
    """DynamicQuantizeLinear (uint8) with ``dynamic_quantize_u8``."""
    x32 = np.ascontiguousarray(x, np.float32)
    if not np.all(np.isfinite(x32)):
        raise ValueError(f"DynamicQuantizeLinear: x contains {int((~np.isfinite(x32)).sum())} "
                         "NaN/Inf values")
    y, s, z = _q().dynamic_quantize_u8(x32)
    return y, np.float32(s), np.uint8(z)


def _check_bound(op, k, a_dtype, a_zp, pw):
    lo, hi = qrange(a_dtype)
    zps = np.asarray(a_zp, np.int64).reshape(-1)
    bound = max(_q().accumulator_bound(k, (lo - int(z), hi - int(z)), pw)
                for z in (zps.min(), zps.max()))
    if bound > INT32_MAX:
        raise OverflowError(f"{op}: the int32 accumulator could overflow (bound {bound}); "
                            "the native kernels refuse")


def _gemm_operands(op, a, b, a_zp, b_zp):
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2:
        _unsupported(op, f"A {a.shape} / B {b.shape} (2-D operands only)")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"{op}: inner dimensions differ: A {a.shape} @ B {b.shape}")
    if a.dtype.name not in Q8 or b.dtype != np.int8:
        _unsupported(op, f"A {a.dtype} @ B {b.dtype} (u8/s8 @ s8 only)")
    for zp, t, name in ((a_zp, a, "a_zero_point"), (b_zp, b, "b_zero_point")):
        if zp is not None and np.asarray(zp).dtype != t.dtype:
            raise ValueError(f"{op}: {name} dtype {np.asarray(zp).dtype} must match its "
                             f"tensor dtype {t.dtype}")
    za = 0 if a_zp is None else np.asarray(a_zp).astype(np.int32).reshape(-1)
    za = int(za[0]) if np.ndim(za) and np.size(za) == 1 else za
    pw = _q().pack_weight_s8(np.ascontiguousarray(b), _zp_vector(b_zp, 1) if b_zp is None or
                             np.size(b_zp) == 1 else _zp_vector(b_zp, b.shape[1]))
    _check_bound(op, a.shape[1], a.dtype.name, za, pw)
    return np.ascontiguousarray(a), za, pw


def matmul_integer(A, B, a_zero_point=None, b_zero_point=None):
    """MatMulInteger with ``gemm_{u8,s8}s8_s32`` (2-D; zero points per tensor/row/column)."""
    a, za, pw = _gemm_operands("MatMulInteger", A, B, a_zero_point, b_zero_point)
    gemm = _q().gemm_s8s8_s32 if a.dtype == np.int8 else _q().gemm_u8s8_s32
    return gemm(a, za, pw)


def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """QLinearMatMul with ``gemm_{u8,s8}s8_requant`` (a per tensor, b per tensor/column)."""
    op = "QLinearMatMul"
    if np.size(a_scale) != 1:
        _unsupported(op, "per-row a_scale")
    a_arr, za, pw = _gemm_operands(op, a, b, a_zero_point, b_zero_point)
    yzp = np.asarray(y_zero_point)
    if yzp.dtype.name not in Q8 or yzp.size != 1:
        raise ValueError(f"{op}: y_zero_point must be one uint8/int8 value, got {yzp.dtype} "
                         f"{yzp.shape}")
    n = np.asarray(b).shape[1]
    mult = requant_multiplier(np.float32(np.asarray(a_scale).reshape(())),
                              np.asarray(b_scale, np.float32).reshape(-1), np.asarray(
                                  y_scale, np.float32).reshape(()))
    mult = np.ascontiguousarray(np.broadcast_to(mult, (n,)), np.float32)
    qmin, qmax = qrange(yzp.dtype.name)
    gemm = _q().gemm_s8s8_requant if a_arr.dtype == np.int8 else _q().gemm_u8s8_requant
    return gemm(a_arr, za, pw, None, mult, int(yzp.reshape(())), qmin, qmax, yzp.dtype.name)


def _conv_operands(op, x, w, x_zp, w_zp, auto_pad, dilations, group, kernel_shape, pads,
                   strides):
    x, w = np.asarray(x), np.asarray(w)
    if x.dtype != np.uint8 or w.dtype != np.int8 or x.ndim != 4 or w.ndim != 4:
        _unsupported(op, f"x {x.dtype}{x.shape} / w {w.dtype}{w.shape} (4-D u8 x, s8 w only)")
    if auto_pad != "NOTSET" or group != 1 or (dilations and tuple(dilations) != (1, 1)):
        _unsupported(op, f"auto_pad={auto_pad!r}, group={group}, dilations={dilations}")
    if kernel_shape is not None and tuple(kernel_shape) != w.shape[2:]:
        raise ValueError(f"{op}: kernel_shape {kernel_shape} != w spatial shape {w.shape[2:]}")
    p = tuple(pads or (0, 0, 0, 0))
    if p[:2] != p[2:]:
        _unsupported(op, f"asymmetric pads {p}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: x has {x.shape[1]} channels, w expects {w.shape[1]}")
    w_hwio = np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))
    zw = None if w_zp is None else _zp_vector(w_zp, 1 if np.size(w_zp) == 1 else w.shape[0])
    pcw = _q().pack_conv_weight_s8(w_hwio, zw)
    zx = 0 if x_zp is None else int(np.asarray(x_zp).reshape(()))
    _check_bound(op, int(np.prod(w.shape[1:])), "uint8", zx, pcw.gemm_weight)
    x_nhwc = np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))
    stride = tuple(strides or (1, 1))
    return x_nhwc, zx, pcw, stride, p[:2]


def _to_nchw(y):
    return np.ascontiguousarray(np.transpose(y, (0, 3, 1, 2)))


def conv_integer(x, w, x_zero_point=None, w_zero_point=None, auto_pad="NOTSET", dilations=None,
                 group=1, kernel_shape=None, pads=None, strides=None):
    """ConvInteger with ``conv2d_u8s8_s32`` (NCHW in/out; NHWC inside)."""
    xh, zx, pcw, stride, pad = _conv_operands("ConvInteger", x, w, x_zero_point, w_zero_point,
                                              auto_pad, dilations, group, kernel_shape, pads,
                                              strides)
    return _to_nchw(_q().conv2d_u8s8_s32(xh, zx, pcw, stride, pad))


def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                 B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                 pads=None, strides=None):
    """QLinearConv with ``conv2d_u8s8_requant`` (NCHW in/out; NHWC inside)."""
    op = "QLinearConv"
    xh, zx, pcw, stride, pad = _conv_operands(op, x, w, x_zero_point, w_zero_point, auto_pad,
                                              dilations, group, kernel_shape, pads, strides)
    cout = np.asarray(w).shape[0]
    yzp = np.asarray(y_zero_point)
    if yzp.dtype.name not in Q8 or yzp.size != 1:
        raise ValueError(f"{op}: y_zero_point must be one uint8/int8 value, got {yzp.dtype}")
    mult = requant_multiplier(np.float32(np.asarray(x_scale).reshape(())),
                              np.asarray(w_scale, np.float32).reshape(-1),
                              np.asarray(y_scale, np.float32).reshape(()))
    mult = np.ascontiguousarray(np.broadcast_to(mult, (cout,)), np.float32)
    bias = None if B is None else np.ascontiguousarray(B, np.int32)
    qmin, qmax = qrange(yzp.dtype.name)
    y = _q().conv2d_u8s8_requant(xh, zx, pcw, stride, pad, bias, mult, int(yzp.reshape(())),
                                 qmin, qmax, yzp.dtype.name)
    return _to_nchw(y)


IMPLS = {
    "quantize_linear": quantize_linear,
    "dequantize_linear": dequantize_linear,
    "dynamic_quantize_linear": dynamic_quantize_linear,
    "qlinear_matmul": qlinear_matmul,
    "qlinear_conv": qlinear_conv,
    "matmul_integer": matmul_integer,
    "conv_integer": conv_integer,
}


def register():
    """Register ``backend="native"`` in :mod:`needle_qc.ops` (no-op without the kernels)."""
    import importlib

    try:
        _q()
    except ImportError:
        return False
    # import_module (not ``from needle_qc import ops``): the ops package calls this while it
    # is itself still being imported
    ops = importlib.import_module("needle_qc.ops")
    ops.register_backend("native", IMPLS)
    return True
