"""NumPy reference of the integer quantization ops (ONNX opset 21 semantics, contract §2.10)."""
from __future__ import annotations

import numpy as np

from needle_qc.quantize import _conv
from needle_qc.quantize._checks import (
    INT32_MAX,
    INT32_MIN,
    Q8,
    _as_array,
    _check_float,
    _check_int,
    _check_scale,
    _expand_qparam,
    _fit_int32,
    _output_qdtype,
)
from needle_qc.quantize.qparams import CONTAINER, qrange

_DEQUANT_INPUTS = ("uint8", "int8", "uint16", "int16", "int32")


# ---------------------------------------------------------------------------------------------


def round_half_even(x):
    """Round to the nearest integer, ties to even (IEEE default; ``np.rint``), keeping the dtype."""
    return np.rint(x)


# ---------------------------------------------------------------------------------------------
# QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear


def quantize_linear(x, y_scale, y_zero_point=None, axis=1, block_size=0, saturate=1,
                    output_dtype=None):
    """ONNX QuantizeLinear: ``clamp(round_half_even(x / y_scale) + y_zero_point)``.

    The division is a true fp32 division (never a reciprocal multiply); the zero point is added
    after rounding. Granularity follows the shape of ``y_scale`` (scalar, 1-D per ``axis``, or
    blocked with ``block_size``). ``output_dtype`` may be a numpy dtype or one of
    ``uint8, int8, uint16, int16, uint4, int4`` (4-bit values are returned unpacked, one per byte).
    ``saturate`` only matters for float8 targets in ONNX; integer outputs always saturate.
    """
    op = "QuantizeLinear"
    x = _as_array(x, "x", op)
    _check_float(x, "x", op)
    if saturate not in (0, 1):
        raise ValueError(f"{op}: saturate={saturate!r} must be 0 or 1")
    qname = _output_qdtype(y_zero_point, output_dtype, op)
    scale = _check_scale(y_scale, "y_scale", op)
    x32 = x.astype(np.float32)
    if np.isnan(x32).any():
        raise ValueError(f"{op}: x contains {int(np.isnan(x32).sum())} NaN values")
    s = _expand_qparam(scale, x.shape, axis, block_size, "y_scale", op)
    if y_zero_point is None:
        z = np.zeros((), np.int64)
    else:
        zp = np.asarray(y_zero_point)
        if zp.shape != scale.shape:
            raise ValueError(f"{op}: y_zero_point shape {zp.shape} != y_scale shape {scale.shape}")
        z = _expand_qparam(zp.astype(np.int64), x.shape, axis, block_size, "y_zero_point", op)
    qmin, qmax = qrange(qname)
    with np.errstate(over="ignore"):
        t = np.rint(np.divide(x32, s, dtype=np.float32)).astype(np.float64)
    return np.clip(t + z, qmin, qmax).astype(CONTAINER[qname])


def dequantize_linear(x, x_scale, x_zero_point=None, axis=1, block_size=0):
    """ONNX DequantizeLinear: ``(x - x_zero_point) * x_scale`` in fp32.

    ``x - x_zero_point`` is exact (int64) and converted to fp32 before the single fp32 multiply.
    int32 inputs (biases) have no zero point. The result is float32, or float16 when the scale is
    float16 (computed in fp32, then rounded to nearest even).
    """
    op = "DequantizeLinear"
    x = _as_array(x, "x", op)
    _check_int(x, "x", op, _DEQUANT_INPUTS)
    scale = _check_scale(x_scale, "x_scale", op)
    s = _expand_qparam(scale, x.shape, axis, block_size, "x_scale", op)
    z = np.zeros((), np.int64)
    if x_zero_point is not None:
        zp = np.asarray(x_zero_point)
        if x.dtype == np.int32 and np.any(zp != 0):
            raise ValueError(f"{op}: int32 x has no zero point, got x_zero_point={zp}")
        if zp.dtype != x.dtype:
            raise ValueError(f"{op}: x_zero_point dtype {zp.dtype} must match x dtype {x.dtype}")
        if zp.shape != scale.shape:
            raise ValueError(f"{op}: x_zero_point shape {zp.shape} != x_scale shape {scale.shape}")
        z = _expand_qparam(zp.astype(np.int64), x.shape, axis, block_size, "x_zero_point", op)
    y = (x.astype(np.int64) - z).astype(np.float32) * s
    return y.astype(np.asarray(x_scale).dtype if np.asarray(x_scale).dtype == np.float16
                    else np.float32)


def dynamic_quantize_linear(x):
    """ONNX DynamicQuantizeLinear (uint8): returns ``(y, y_scale, y_zero_point)``.

    ``y_scale = fp32(fp32(max(0, max x) - min(0, min x)) / 255)``,
    ``y_zero_point = rint(clamp(0 - fp32(min(0, min x) / y_scale), 0, 255))``, ``y`` as
    QuantizeLinear. All-zero or empty input (range 0, left open by ONNX) gives scale 1, zp 0.
    """
    return dynamic_quantize_u8(x, 255)


def dynamic_quantize_u8(x, qmax=255):
    """:func:`dynamic_quantize_linear` over [0, ``qmax``]: 255 is ONNX's, 127 the 7-bit
    ``reduce_range`` activations of torch's x86 dynamic linear (255 replaced by 127 in the
    scale and the clamps)."""
    op = "DynamicQuantizeLinear"
    x = _as_array(x, "x", op)
    _check_float(x, "x", op)
    qmax = _dynamic_qmax(qmax, op)
    x32 = x.astype(np.float32)
    if not np.all(np.isfinite(x32)):
        raise ValueError(f"{op}: x contains {int((~np.isfinite(x32)).sum())} NaN/Inf values")
    scale, zp = dynamic_qparams(x32.min() if x32.size else 0, x32.max() if x32.size else 0, qmax)
    y = quantize_linear(x32, scale, zp)
    return (y if qmax == 255 else np.minimum(y, np.uint8(qmax))), scale, zp


def dynamic_qparams(x_min, x_max, qmax=255):
    """``(scale float32, zero point uint8)`` of DynamicQuantizeLinear for a tensor whose finite
    range is [x_min, x_max], over [0, qmax]: the range widened to hold 0, ``scale = fp32(hi -
    lo) / qmax``, ``zp = rint(clamp(0 - fp32(lo / scale), 0, qmax))``; range 0 -> (1, 0)."""
    lo, hi = min(np.float32(0), np.float32(x_min)), max(np.float32(0), np.float32(x_max))
    scale = np.float32(np.float32(hi - lo) / np.float32(qmax))
    if not scale > 0:
        return np.float32(1), np.uint8(0)
    return scale, np.uint8(np.rint(np.clip(np.float32(0) - np.float32(lo / scale), 0, qmax)))


def _dynamic_qmax(qmax, op):
    if qmax not in (127, 255):
        raise ValueError(f"{op}: qmax={qmax!r}; valid: 255 (8-bit) or 127 (reduce_range)")
    return qmax


def dynamic_quantize_per_token(x, qmax=255):
    """DynamicQuantizeLinear applied to each row (all axes but the last) independently.

    Returns ``(y uint8, scale float32 [...], zero_point uint8 [...])`` with one scale/zero point
    per row, each exactly what :func:`dynamic_quantize_linear` gives for that row (per-token
    activations, LLM.int8 style); ``qmax=127``: over [0, 127] (reduce_range).
    """
    op = "dynamic_quantize_per_token"
    qmax = _dynamic_qmax(qmax, op)
    x = _as_array(x, "x", op)
    _check_float(x, "x", op)
    if x.ndim < 1:
        raise ValueError(f"{op}: x must be at least 1-D, got a scalar")
    x32 = x.astype(np.float32)
    if not np.all(np.isfinite(x32)):
        raise ValueError(f"{op}: x contains {int((~np.isfinite(x32)).sum())} NaN/Inf values")
    if x.shape[-1] == 0:
        rows = x.shape[:-1]
        return np.zeros(x.shape, np.uint8), np.ones(rows, np.float32), np.zeros(rows, np.uint8)
    lo = np.minimum(np.float32(0), x32.min(axis=-1))
    hi = np.maximum(np.float32(0), x32.max(axis=-1))
    scale = ((hi - lo).astype(np.float32) / np.float32(qmax)).astype(np.float32)
    degenerate = ~(scale > 0)
    scale = np.where(degenerate, np.float32(1), scale).astype(np.float32)
    zp = np.rint(np.clip(np.float32(0) - (lo / scale).astype(np.float32), 0, qmax))
    zp = np.where(degenerate, 0, zp).astype(np.uint8)
    t = np.rint(np.divide(x32, scale[..., None], dtype=np.float32)).astype(np.float64)
    y = np.clip(t + zp[..., None], 0, qmax).astype(np.uint8)
    return y, scale, zp


# ---------------------------------------------------------------------------------------------
# requantization and bias


def requant_multiplier(s_a, s_b, s_y) -> np.ndarray:
    """Requant multiplier ``M = fp32(fp32(s_a * s_b) / s_y)``; the order is part of the contract."""
    s_ab = np.multiply(np.float32(s_a), np.asarray(s_b, np.float32), dtype=np.float32)
    return np.divide(s_ab, np.float32(s_y), dtype=np.float32)


def requantize(acc_i32, multiplier_f32, zp, qmin: int, qmax: int) -> np.ndarray:
    """``clamp(rint(fp32(acc) * M) + zp, qmin, qmax)`` as int32 (contract §2.10.2).

    ``fp32(acc)`` rounds to nearest even when ``|acc| > 2**24`` (like CVTDQ2PS /
    ``__int2float_rn``); the product is one fp32 multiply. A fused ReLU is ``qmin = zp``.
    """
    acc = np.asarray(acc_i32)
    if acc.dtype != np.int32:
        raise ValueError(f"requantize: acc_i32 must be int32, got {acc.dtype}")
    m = np.asarray(multiplier_f32)
    if m.dtype != np.float32:
        raise ValueError(f"requantize: multiplier_f32 must be float32, got {m.dtype}")
    with np.errstate(over="ignore"):
        t = np.rint(np.multiply(acc.astype(np.float32), m, dtype=np.float32)).astype(np.float64)
    return np.clip(t + np.asarray(zp, np.int64), qmin, qmax).astype(np.int32)


def quantize_bias(bias_f32, s_x, s_w) -> np.ndarray:
    """int32 bias ``rint(bias / fp32(s_x * s_w))`` with zero point 0 (contract §2.10.5).

    Raises OverflowError naming the first channel whose bias does not fit int32.
    """
    op = "quantize_bias"
    bias = _as_array(bias_f32, "bias_f32", op)
    _check_float(bias, "bias_f32", op)
    s_bias = np.multiply(_check_scale(s_x, "s_x", op), _check_scale(s_w, "s_w", op),
                         dtype=np.float32)
    with np.errstate(over="ignore", divide="ignore"):
        q = np.rint(np.divide(bias.astype(np.float32), s_bias, dtype=np.float32))
    bad = ~np.isfinite(q) | (q < INT32_MIN) | (q > INT32_MAX)
    if bad.any():
        j = int(np.flatnonzero(bad.ravel())[0])
        raise OverflowError(
            f"{op}: bias channel {j} = {bias.ravel()[j]} / scale "
            f"{np.broadcast_to(s_bias, bias.shape).ravel()[j]} does not fit int32"
        )
    return q.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# integer matmul family


def _rowcol_qparam(p, n: int, arg: str, op: str, what: str) -> np.ndarray:
    arr = np.asarray(p)
    if arr.ndim == 0 or arr.shape == (1,):
        return arr.reshape(())
    if arr.shape != (n,):
        raise ValueError(f"{op}: {arg} shape {arr.shape} must be () or ({n},) ({what})")
    return arr


def _matmul_shapes(a: np.ndarray, b: np.ndarray, op: str) -> tuple[int, int]:
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"{op}: A and B must be at least 2-D, got {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"{op}: inner dimensions differ: A {a.shape} @ B {b.shape}")
    return a.shape[-2], b.shape[-1]


def _centered_matmul(a, a_zp, b, b_zp, op: str) -> np.ndarray:
    """``(A - a_zp) @ (B - b_zp)`` exactly (int64), per-row a_zp [M] and per-column b_zp [N]."""
    m, n = _matmul_shapes(a, b, op)
    za = _rowcol_qparam(a_zp, m, "a_zero_point", op, "per row of A").astype(np.int64)
    zb = _rowcol_qparam(b_zp, n, "b_zero_point", op, "per column of B").astype(np.int64)
    a64 = a.astype(np.int64) - (za[:, None] if za.ndim else za)
    b64 = b.astype(np.int64) - zb
    return exact_int_matmul(a64, b64)


def exact_int_matmul(a64: np.ndarray, b64: np.ndarray) -> np.ndarray:
    """Exact integer matmul of centred 8-bit operands through float64 BLAS.

    Every product is at most 2**16 in magnitude and every partial sum below K * 2**16, so all
    intermediates are integers below 2**53 (for K < 2**37): float64 is exact whatever the
    summation order, and much faster than NumPy's integer matmul.
    """
    return np.matmul(a64.astype(np.float64), b64.astype(np.float64)).astype(np.int64)


def matmul_integer(A, B, a_zero_point=None, b_zero_point=None) -> np.ndarray:
    """ONNX MatMulInteger: ``(A - a_zp) @ (B - b_zp)`` as int32 (raises on int32 overflow)."""
    op = "MatMulInteger"
    a, b = _as_array(A, "A", op), _as_array(B, "B", op)
    _check_int(a, "A", op)
    _check_int(b, "B", op)
    za = 0 if a_zero_point is None else _zp_like(a_zero_point, a, "a_zero_point", op)
    zb = 0 if b_zero_point is None else _zp_like(b_zero_point, b, "b_zero_point", op)
    return _fit_int32(_centered_matmul(a, za, b, zb, op), op)


def _zp_like(zp, like: np.ndarray, arg: str, op: str) -> np.ndarray:
    arr = np.asarray(zp)
    if arr.dtype != like.dtype:
        raise ValueError(f"{op}: {arg} dtype {arr.dtype} must match its tensor dtype {like.dtype}")
    return arr


def _same_shape(zp, scale: np.ndarray, arg: str, op: str) -> None:
    if np.asarray(zp).size != 1 and np.asarray(zp).shape != scale.shape:
        raise ValueError(f"{op}: {arg} shape {np.asarray(zp).shape} != scale shape {scale.shape}")


def _scalar_qparams(scale, zp, s_arg: str, z_arg: str, like_dtype, op: str):
    s = _check_scale(scale, s_arg, op)
    if s.size != 1:
        raise ValueError(f"{op}: {s_arg} must be a scalar (per tensor), got shape {s.shape}")
    z = np.asarray(zp)
    if z.size != 1:
        raise ValueError(f"{op}: {z_arg} must be a scalar (per tensor), got shape {z.shape}")
    if like_dtype is not None and z.dtype != like_dtype:
        raise ValueError(f"{op}: {z_arg} dtype {z.dtype} must match {like_dtype}")
    return s.reshape(()), z.reshape(())


def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """ONNX QLinearMatMul with the contract's requantization.

    ``y = clamp(rint(fp32((a - a_zp) @ (b - b_zp)) * M) + y_zp)`` with
    ``M = fp32(fp32(a_scale * b_scale) / y_scale)``; a's scale/zp per tensor or per row [M],
    b's per tensor or per column [N]; output dtype = y_zero_point dtype.
    """
    op = "QLinearMatMul"
    a, b = _as_array(a, "a", op), _as_array(b, "b", op)
    _check_int(a, "a", op)
    _check_int(b, "b", op)
    m, n = _matmul_shapes(a, b, op)
    sa = _rowcol_qparam(_check_scale(a_scale, "a_scale", op), m, "a_scale", op, "per row of a")
    sb = _rowcol_qparam(_check_scale(b_scale, "b_scale", op), n, "b_scale", op, "per column of b")
    _same_shape(a_zero_point, sa, "a_zero_point", op)
    _same_shape(b_zero_point, sb, "b_zero_point", op)
    za = _zp_like(_as_array(a_zero_point, "a_zero_point", op), a, "a_zero_point", op)
    zb = _zp_like(_as_array(b_zero_point, "b_zero_point", op), b, "b_zero_point", op)
    yzp = _as_array(y_zero_point, "y_zero_point", op)
    _check_int(yzp, "y_zero_point", op)
    sy, zy = _scalar_qparams(y_scale, yzp, "y_scale", "y_zero_point", None, op)
    acc = _fit_int32(_centered_matmul(a, za, b, zb, op), op)
    mult = requant_multiplier(sa[:, None] if sa.ndim else sa, sb, sy)
    qmin, qmax = qrange(yzp.dtype.name)
    return requantize(acc, mult, int(zy), qmin, qmax).astype(yzp.dtype)


def qlinear_ref(x_q, x_scale, x_zp, w_q, w_scale, w_zp, bias_i32, y_scale, y_zp,
                relu: bool = False, out_dtype="uint8") -> np.ndarray:
    """Quantized linear in Needle layout: ``x_q [..., K] @ w_q [K, N] (+ bias) -> requantize``.

    x per tensor; w per tensor or per output column (axis N); ``bias_i32`` None or int32 [N] at
    scale ``s_x * s_w``; ``relu`` clamps below at ``y_zp``. Returns ``out_dtype`` (uint8/int8).
    """
    op = "qlinear_ref"
    x, w = _as_array(x_q, "x_q", op), _as_array(w_q, "w_q", op)
    _check_int(x, "x_q", op)
    _check_int(w, "w_q", op)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"{op}: need x_q [..., K] and w_q [K, N], got {x.shape} and {w.shape}")
    n = w.shape[1]
    sx, zx = _scalar_qparams(x_scale, x_zp, "x_scale", "x_zp", x.dtype, op)
    sw = _rowcol_qparam(_check_scale(w_scale, "w_scale", op), n, "w_scale", op, "per column N")
    zw = np.zeros((), np.int64) if w_zp is None else _rowcol_qparam(
        _zp_like(w_zp, w, "w_zp", op), n, "w_zp", op, "per column N")
    acc = exact_int_matmul(x.astype(np.int64) - int(zx), w.astype(np.int64) - zw.astype(np.int64))
    if bias_i32 is not None:
        bias = np.asarray(bias_i32)
        if bias.dtype != np.int32 or bias.shape != (n,):
            raise ValueError(f"{op}: bias_i32 must be int32 [{n}], got {bias.dtype} {bias.shape}")
        acc = acc + bias
    qname = out_dtype if isinstance(out_dtype, str) else np.dtype(out_dtype).name
    if qname not in Q8:
        raise ValueError(f"{op}: out_dtype={out_dtype!r} not supported; valid: {list(Q8)}")
    sy, zy = _scalar_qparams(y_scale, y_zp, "y_scale", "y_zp", None, op)
    qmin, qmax = qrange(qname)
    if not qmin <= int(zy) <= qmax:
        raise ValueError(f"{op}: y_zp={int(zy)} outside the {qname} range [{qmin}, {qmax}]")
    if relu:
        qmin = int(zy)
    out = requantize(_fit_int32(acc, op), requant_multiplier(sx, sw, sy), int(zy), qmin, qmax)
    return out.astype(CONTAINER[qname])


# ---------------------------------------------------------------------------------------------
# integer convolution family (2-D, NCHW, weights [M, C/group, kH, kW]; machinery in _conv.py)


def _per_channel(p, m: int, arg: str, op: str) -> np.ndarray:
    return _rowcol_qparam(p, m, arg, op, "per output channel")


def _centered_conv(x, x_zp, w, w_zp, attrs: dict, op: str) -> np.ndarray:
    geo = _conv.conv_geometry(x.shape, w.shape, op=op, **attrs)
    zx = np.asarray(x_zp).reshape(()).astype(np.int64)
    zw = _per_channel(w_zp, w.shape[0], "w_zero_point", op).astype(np.int64)
    x64 = x.astype(np.int64) - zx
    w64 = w.astype(np.int64) - (zw[:, None, None, None] if zw.ndim else zw)
    pad, st, dl, out_hw = geo
    return _conv.conv2d_exact(x64, w64, pad, st, dl, out_hw, attrs["group"])


def conv_integer(x, w, x_zero_point=None, w_zero_point=None, auto_pad="NOTSET", dilations=None,
                 group=1, kernel_shape=None, pads=None, strides=None) -> np.ndarray:
    """ONNX ConvInteger: int32 ``conv(x - x_zp, w - w_zp)``; w_zp scalar or per output channel."""
    op = "ConvInteger"
    x, w = _as_array(x, "x", op), _as_array(w, "w", op)
    _check_int(x, "x", op)
    _check_int(w, "w", op)
    zx = np.zeros((), np.int64) if x_zero_point is None else _zp_like(
        x_zero_point, x, "x_zero_point", op)
    if zx.size != 1:
        raise ValueError(f"{op}: x_zero_point must be a scalar, got shape {zx.shape}")
    zw = 0 if w_zero_point is None else _zp_like(w_zero_point, w, "w_zero_point", op)
    attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                 pads=pads, strides=strides)
    return _fit_int32(_centered_conv(x, zx, w, zw, attrs, op), op)


def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None,
                 auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                 strides=None) -> np.ndarray:
    """ONNX QLinearConv (2-D NCHW) with the contract's requantization.

    x per tensor; w per tensor or per output channel [M]; ``B`` int32 [M] at scale
    ``x_scale * w_scale`` (zp 0); ``y = clamp(rint(fp32(acc + B) * M) + y_zp)`` with
    ``M = fp32(fp32(x_scale * w_scale) / y_scale)``. Padding represents real 0 (= x_zp).
    """
    op = "QLinearConv"
    x, w = _as_array(x, "x", op), _as_array(w, "w", op)
    _check_int(x, "x", op)
    _check_int(w, "w", op)
    sx, zx = _scalar_qparams(x_scale, x_zero_point, "x_scale", "x_zero_point", x.dtype, op)
    m = w.shape[0] if w.ndim == 4 else 0
    sw = _per_channel(_check_scale(w_scale, "w_scale", op), m, "w_scale", op)
    zw = _zp_like(_as_array(w_zero_point, "w_zero_point", op), w, "w_zero_point", op)
    yzp = _as_array(y_zero_point, "y_zero_point", op)
    _check_int(yzp, "y_zero_point", op)
    sy, zy = _scalar_qparams(y_scale, yzp, "y_scale", "y_zero_point", None, op)
    attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                 pads=pads, strides=strides)
    acc = _centered_conv(x, zx, w, zw, attrs, op)
    if B is not None:
        bias = np.asarray(B)
        if bias.dtype != np.int32 or bias.shape != (m,):
            raise ValueError(f"{op}: B must be int32 [{m}], got {bias.dtype} {bias.shape}")
        acc = acc + bias.astype(np.int64)[:, None, None]
    mult = requant_multiplier(sx, sw, sy)
    mult = mult[:, None, None] if mult.ndim else mult
    qmin, qmax = qrange(yzp.dtype.name)
    return requantize(_fit_int32(acc, op), mult, int(zy), qmin, qmax).astype(yzp.dtype)
