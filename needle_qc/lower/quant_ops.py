"""Builders of quantized ops without packed weights: (de)quantize, requantize, qadd, qmatmul."""

import numpy as np

from needle_qc.lower.common import INT32_MAX, _qp, _shared_layout
from needle_qc.lower.program import Impl
from needle_qc.lower.registry import builder
from needle_qc.opset.activations import output_clamp
from needle_qc.quantize.qparams import CONTAINER, qrange, value_qrange
from needle_qc.quantize.reference import (
    dequantize_linear,
    exact_int_matmul,
    quantize_linear,
    requant_multiplier,
    requantize,
)

# ----------------------------------------------------------------------------- builders

def _output_stage_numpy(acc, mult, z_y, qmin, qmax, out_dtype):
    return requantize(acc, mult, z_y, qmin, qmax).astype(CONTAINER[out_dtype])


CUDA_QUANTIZED = ("uint8", "int8")
"""The integer types the CUDA quantize kernel writes (others: the CPU's kernel)."""


def _kernels_for_dtype(ctx, dtype, kernel):
    """(module, device, fallback reason): the target's kernels unless CUDA lacks ``dtype``."""
    if not ctx.on_cuda:
        return ctx.kernels, "cpu", ""
    if dtype in CUDA_QUANTIZED:
        return ctx.kernels, "cuda", ""
    return ctx.cpu_kernels, "cpu", f"no CUDA kernel for {kernel} to {dtype}"


@builder("quantize")
def build_quantize(ctx, node):
    x_node = node.inputs[0]
    out_dtype = node.attrs["dtype"]
    q, device, fallback = _kernels_for_dtype(ctx, out_dtype, "quantize_f32")
    if q is None or x_node.meta.get("dtype") != "float32":
        return None
    s, z = _qp(node)
    s_arr, z_arr = np.array([s], np.float32), np.array([z], np.int32)
    layout = ctx.layout.get(x_node.name, "logical") if ctx.const(x_node) is None else "logical"

    lo, hi = value_qrange(out_dtype, node.meta.get("qparams"))  # reduce_range: 7 bits

    def fn(x):  # the kernel clamps to [lo, hi] in its one pass
        return q.quantize_f32(x, s_arr, z_arr, 0, out_dtype, lo, hi)
    return Impl("quantize_f32", "kernel (ONNX QuantizeLinear)", fn,
                [ctx.value(x_node, layout)], layout, kind="int8", device=device,
                fallback=fallback)


@builder("dequantize")
def build_dequantize(ctx, node):
    x_node = node.inputs[0]
    q, device, fallback = _kernels_for_dtype(ctx, x_node.meta.get("dtype"), "dequantize")
    if q is None or len(node.inputs) != 1 or x_node.meta.get("dtype") not in ("uint8", "int8"):
        return None
    s, z = _qp(x_node)
    s_arr, z_arr = np.array([s], np.float32), np.array([z], np.int32)
    layout = ctx.layout.get(x_node.name, "logical")

    def kernel(x):
        return q.dequantize(x, s_arr, z_arr, 0)
    return Impl("dequantize", "kernel (ONNX DequantizeLinear)", in_dense_order(kernel),
                [ctx.value(x_node, layout)], layout, kind="int8", device=device,
                fallback=fallback)


DENSE_ORDER_MIN = 2048  # measured: the copy of a 640-byte view costs ~1 us, the look-up ~1.2


def _dense_order(x):
    """(order, inverse) when ``x.transpose(order)`` is C-contiguous (x a permuted view of a
    dense buffer, e.g. the heads split off a projection), else None."""
    order = tuple(sorted(range(x.ndim), key=lambda i: -x.strides[i]))
    if not x.transpose(order).flags.c_contiguous:
        return None
    return order, tuple(int(i) for i in np.argsort(order))


def in_dense_order(elementwise):
    """``elementwise`` (an array -> array of the same shape, per element) run on a permuted
    view's dense buffer and its result permuted back: the same values, without the C-contiguous
    copy the kernel would make (the consumers read strided float views: attention in place).
    The axis order is worked out once per (shape, strides) seen; below ``DENSE_ORDER_MIN``
    elements the kernel's copy costs less than the look-up."""
    orders = {}

    def fn(x):
        if x.flags.c_contiguous or x.size < DENSE_ORDER_MIN:
            return elementwise(x)
        key = (x.shape, x.strides)
        if key not in orders:
            orders[key] = _dense_order(x)
        found = orders[key]
        if found is None:
            return elementwise(x)
        order, inverse = found
        return elementwise(x.transpose(order)).transpose(inverse)
    return fn


@builder("requantize")
def build_requantize(ctx, node):
    x_node = node.inputs[0]
    s_in, z_in = _qp(x_node)
    s_y, z_y = _qp(node)
    out_dtype = node.attrs["dtype"]
    qmin, qmax = output_clamp(node.attrs.get("activation"), s_y, z_y,
                              *value_qrange(out_dtype, node.meta.get("qparams")))
    mult = requant_multiplier(s_in, np.float32(1), s_y)
    layout = ctx.layout.get(x_node.name, "logical")

    def fn(x):
        acc = x.astype(np.int32) - np.int32(z_in)
        return _output_stage_numpy(acc, mult, z_y, qmin, qmax, out_dtype)
    return Impl("requantize (numpy)", "elementwise, reference formula", fn,
                [ctx.value(x_node, layout)], layout, kind="int8")


@builder("qadd")
def build_qadd(ctx, node):
    a, b = node.inputs
    (s_a, z_a), (s_b, z_b), (s_y, z_y) = _qp(a), _qp(b), _qp(node)
    out_dtype = node.attrs["dtype"]
    za = np.asarray(z_a, CONTAINER[a.meta["dtype"]])
    zb = np.asarray(z_b, CONTAINER[b.meta["dtype"]])
    zy = np.asarray(z_y, CONTAINER[out_dtype])
    y_range = value_qrange(out_dtype, node.meta.get("qparams"))
    lo, hi = output_clamp(node.attrs.get("activation"), s_y, z_y, *y_range)
    # a fused activation or reduce_range narrows the clamp
    clamped = node.attrs.get("activation") is not None or y_range != qrange(out_dtype)
    layout = _shared_layout(ctx, node)
    inputs = [ctx.value(a, layout), ctx.value(b, layout)]
    q = ctx.cpu_kernels
    if q is not None and out_dtype in CUDA_QUANTIZED and \
            {a.meta["dtype"], b.meta["dtype"]} <= set(CUDA_QUANTIZED):
        # The reference formula on the C++ kernels (bit-identical, no per-call checks): the
        # per-step adds of an unrolled LSTM are many and small.
        qa = (np.array([s_a], np.float32), np.array([z_a], np.int32))
        qb = (np.array([s_b], np.float32), np.array([z_b], np.int32))
        qy = (np.array([s_y], np.float32), np.array([z_y], np.int32))

        def fast(x, y):  # the quantize kernel clamps to [lo, hi] in its one pass
            total = np.add(q.dequantize(x, *qa, 0), q.dequantize(y, *qb, 0), dtype=np.float32)
            return q.quantize_f32(total, *qy, 0, out_dtype, lo, hi)
        if hasattr(q, "bind_qadd"):  # the same kernels in one call, for operands of one shape
            fast = _one_call_if_same_shape(fast, q.bind_qadd(
                a.meta["dtype"], float(s_a), int(z_a), b.meta["dtype"], float(s_b), int(z_b),
                out_dtype, float(s_y), int(z_y), int(lo), int(hi)))
        return Impl("qadd (dequantize + add + quantize_f32)", "elementwise, reference formula "
                    "on the quantize kernels", fast, inputs, layout, kind="int8")

    def fn(x, y):
        total = dequantize_linear(x, s_a, za) + dequantize_linear(y, s_b, zb)
        out = quantize_linear(total.astype(np.float32), s_y, zy)
        return np.clip(out, lo, hi).astype(out.dtype) if clamped else out
    return Impl("qadd (numpy)", "elementwise, reference formula", fn, inputs, layout,
                kind="int8")


def _one_call_if_same_shape(separate, bound):
    """``bound(x, y)`` where x and y have one shape, else ``separate`` (it broadcasts)."""
    def fn(x, y):
        return bound(x, y) if x.shape == y.shape else separate(x, y)
    return fn


def _qmatmul_check(node, a, b, z_a, z_b):
    """Refuse a qmatmul whose int32 accumulator could overflow (as qlinear is refused):
    ``|sum| <= K * max|a - z_a| * max|b - z_b|``. A depth that follows the batch (symbolic)
    cannot be bounded here; the per-call check then stays the guard."""
    depth = a.meta.get("shape", (None,))[-1]
    if not isinstance(depth, int):
        return
    spans = []
    for value, zp in ((a, z_a), (b, z_b)):
        qmin, qmax = qrange(value.meta["dtype"])
        spans.append(max(qmax - zp, zp - qmin))
    bound = depth * spans[0] * spans[1]
    if bound > INT32_MAX:
        raise ValueError(f"%{node.name} (qmatmul): the int32 accumulator could overflow: "
                         f"|sum| <= {depth} * {spans[0]} * {spans[1]} = {bound} > 2^31-1; "
                         f"split the contraction (depth {depth}), quantize the operands to "
                         "a narrower type, or keep this matmul float")


@builder("qmatmul")
def build_qmatmul(ctx, node):
    a, b = node.inputs
    (s_a, z_a), (s_b, z_b) = _qp(a), _qp(b)
    _qmatmul_check(node, a, b, z_a, z_b)
    out_dtype = node.attrs["dtype"]
    out = None if out_dtype == "float32" else _qp(node)

    def fn(x, y):
        acc = exact_int_matmul(x.astype(np.int64) - z_a, y.astype(np.int64) - z_b)
        if np.abs(acc).max(initial=0) > INT32_MAX:
            raise OverflowError(f"%{node.name} (qmatmul): int32 accumulator overflow")
        acc = acc.astype(np.int32)
        if out is None:
            return np.multiply(acc.astype(np.float32), np.multiply(s_a, s_b, dtype=np.float32),
                               dtype=np.float32)
        qmin, qmax = qrange(out_dtype)
        return _output_stage_numpy(acc, requant_multiplier(s_a, s_b, out[0]), out[1], qmin,
                                   qmax, out_dtype)
    return Impl("qmatmul (numpy int64)", "activation x activation: no packed weight", fn,
                [ctx.value(a, "logical"), ctx.value(b, "logical")], kind="int8")
