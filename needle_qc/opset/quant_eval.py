"""NumPy reference evaluation of the quantization IR ops (formulas: docs/quantized-ir.md §2).

Each ``eval_*`` has the op table's signature ``(inputs, attrs, ctx)``: inputs are Needle
Tensors, ``ctx`` is the Interpreter (``ctx.node`` is the node being run, whose type holds the
output qparams and whose inputs' types hold theirs). Numbers come from
:mod:`needle_qc.quantize.reference`; errors are re-raised naming the node.
"""

import contextlib

import numpy as np

from needle_qc.errors import IRError
from needle_qc.opset.activations import apply_to_array, output_clamp
from needle_qc.quantize._checks import _fit_int32
from needle_qc.quantize.lowbit import bf16_to_float32, unpack_int4
from needle_qc.quantize.qparams import CONTAINER, value_qrange
from needle_qc.quantize.reference import (
    dequantize_linear,
    dynamic_quantize_u8,
    dynamic_quantize_per_token,
    exact_int_matmul,
    quantize_linear,
    requant_multiplier,
    requantize,
)

# ----------------------------------------------------------------------------- helpers

def node_qparams(node):
    """``(np.float32 s, int z)`` from a node's type; IRError naming the node when missing."""
    qp = node.meta.get("qparams")
    if not qp or "s" not in qp or "z" not in qp:
        raise IRError(f"%{node.name}: no qparams {{s=..., z=...}} in its type")
    return np.float32(qp["s"]), int(qp["z"])


@contextlib.contextmanager
def _named(node):
    """Re-raise numeric errors with the node's name and op in front."""
    try:
        yield
    except (ValueError, OverflowError) as e:
        raise type(e)(f"%{node.name} ({node.op}): {e}") from None


def _arrays(inputs):
    return [t.numpy() for t in inputs]


def _tensor(array, ctx, dtype=None):
    dtype = dtype or array.dtype.name
    return ctx.framework.tensor(array, ctx.device, dtype)


def _zp(z, dtype):
    return np.asarray(z, CONTAINER[dtype] if dtype in CONTAINER else dtype)


def _input_qparams(ctx, i):
    return node_qparams(ctx.node.inputs[i])


def _value_range(node, dtype):
    """``(qmin, qmax)`` the node's value holds: its qparams' reduce_range bounds, else dtype's."""
    return value_qrange(dtype, node.meta.get("qparams"))


def _clamp_to_value_range(q, node, dtype):
    """``q`` clamped to a reduce_range value's bounds (the type's range already holds)."""
    if (node.meta.get("qparams") or {}).keys() & {"qmin", "qmax"}:
        q = np.clip(q, *_value_range(node, dtype)).astype(q.dtype)
    return q


def _output_stage(acc64, s_in, s_w, attrs, ctx):
    """int64 accumulator (bias included) -> requantized u8/i8 or f32 (``attrs["dtype"]``)."""
    node = ctx.node
    acc = _fit_int32(acc64, f"%{node.name} ({node.op})")
    dtype = attrs["dtype"]
    if dtype == "float32":
        y = acc.astype(np.float32) * np.multiply(np.float32(s_in), s_w, dtype=np.float32)
        return apply_to_array(attrs.get("activation"), y)
    s_y, z_y = node_qparams(node)
    qmin, qmax = output_clamp(attrs.get("activation"), s_y, z_y, *_value_range(node, dtype))
    out = requantize(acc, requant_multiplier(s_in, s_w, s_y), z_y, qmin, qmax)
    return out.astype(CONTAINER[dtype])


# ----------------------------------------------------------------------------- observer etc.

def eval_observer(inputs, attrs, ctx):
    """Identity; feeds the batch to ``graph.observers[node.name]``."""
    node = ctx.node
    observers = ctx.graph.observers
    if node.name not in observers:
        raise IRError(f"%{node.name}: observer has no statistics object in graph.observers "
                      "(build observed graphs with quantize_pass / insert-observers)")
    observers[node.name].update(inputs[0].numpy())
    return inputs[0]


def eval_quantize(inputs, attrs, ctx):
    s, z = node_qparams(ctx.node)
    with _named(ctx.node):
        q = quantize_linear(inputs[0].numpy(), s, _zp(z, attrs["dtype"]))
    return _tensor(_clamp_to_value_range(q, ctx.node, attrs["dtype"]), ctx)


def eval_dequantize(inputs, attrs, ctx):
    arrays = _arrays(inputs)
    q = arrays[0]
    with _named(ctx.node):
        if len(arrays) == 1:
            s, z = _input_qparams(ctx, 0)
            return _tensor(dequantize_linear(q, s, _zp(z, q.dtype.name)), ctx)
        scale = arrays[1]
        zp = arrays[2] if len(arrays) == 3 else None
        axis = attrs["axis"] % q.ndim if q.ndim else 0
        y = dequantize_linear(q, scale, zp, axis=axis, block_size=attrs["group_size"])
    return _tensor(y.astype(np.float32), ctx)


def eval_requantize(inputs, attrs, ctx):
    q = inputs[0].numpy()
    s_in, z_in = _input_qparams(ctx, 0)
    s_y, z_y = node_qparams(ctx.node)
    qmin, qmax = output_clamp(attrs.get("activation"), s_y, z_y,
                              *_value_range(ctx.node, attrs["dtype"]))
    acc = (q.astype(np.int64) - z_in).astype(np.int32)
    out = requantize(acc, requant_multiplier(s_in, np.float32(1), s_y), z_y, qmin, qmax)
    return _tensor(out.astype(CONTAINER[attrs["dtype"]]), ctx)


# ----------------------------------------------------------------------------- integer compute

def layer_optional_inputs(dtypes):
    """``(zero point index, bias index)``, None when absent, of a qlinear/qconv2d.

    ``dtypes`` are its input dtypes ``(x, w, w_scale[, w_zp][, bias])``: a weight zero point has
    the weight's dtype (u8/i8) and a bias is int32, so four inputs are never ambiguous.
    """
    zp = 3 if len(dtypes) > 3 and dtypes[3] == dtypes[1] else None
    first_bias = 3 if zp is None else 4
    return zp, (len(dtypes) - 1 if len(dtypes) > first_bias else None)


def layer_weight_values(node, w, x_shape):
    """The integer weight of a qlinear/qconv2d as values: ``w`` itself, or for
    ``weight_dtype="int4"`` (W4A8) the int8 values of ``w``, two int4 per byte along the
    reduction axis (K of ``[K, N]``, C_in of ``[K, K, C_in, C_out]``; ``x_shape`` gives its
    length)."""
    if node.attrs.get("weight_dtype") != "int4":
        return w
    red = 0 if node.op == "qlinear" else 2
    return unpack_int4(w, int(x_shape[-1] if red == 0 else x_shape[1]), axis=red)


def _layer_arrays(inputs, ctx):
    """``(x, w, s_w, w_zp or None, bias or None)`` of the qlinear/qconv2d being run."""
    arrays = _arrays(inputs)
    zp, bias = layer_optional_inputs([n.meta.get("dtype") for n in ctx.node.inputs])
    arrays[1] = layer_weight_values(ctx.node, arrays[1], arrays[0].shape)
    return (*arrays[:3], None if zp is None else arrays[zp],
            None if bias is None else arrays[bias])


def _centred_weight(w, w_zp):
    """``w - w_zp`` as int64; ``w_zp`` is per tensor or per output channel (the last axis)."""
    w64 = w.astype(np.int64)
    return w64 if w_zp is None else w64 - np.asarray(w_zp).astype(np.int64).reshape(-1)


def _linear_acc(x, z_x, w, bias, w_zp=None):
    acc = exact_int_matmul(x.astype(np.int64) - z_x, _centred_weight(w, w_zp))
    return acc if bias is None else acc + bias.astype(np.int64)


def eval_qlinear(inputs, attrs, ctx):
    x, w, s_w, w_zp, bias = _layer_arrays(inputs, ctx)
    s_x, z_x = _input_qparams(ctx, 0)
    with _named(ctx.node):
        acc = _linear_acc(x, z_x, w, bias, w_zp)
        out = _output_stage(acc, s_x, s_w.reshape(-1) if s_w.size > 1 else s_w.reshape(()),
                            attrs, ctx)
    return _tensor(out, ctx)


def conv_acc(x, z_x, w, bias, stride, padding, w_zp=None):
    """Exact int64 NCHW conv of ``x - z_x`` (padding holds real 0) with (K,K,Cin,Cout) ``w``
    minus its zero point ``w_zp`` (None, per tensor or per output channel)."""
    from needle_qc.quantize.reference import conv_integer

    w_oihw = np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1)))
    zw = None if w_zp is None else np.asarray(w_zp, w.dtype).reshape(-1)
    zw = zw.reshape(()) if zw is not None and zw.size == 1 else zw
    acc = conv_integer(x, w_oihw, np.asarray(z_x, x.dtype), zw, pads=[padding] * 4,
                       strides=[stride, stride]).astype(np.int64)
    return acc if bias is None else acc + bias.astype(np.int64)[:, None, None]


def eval_qconv2d(inputs, attrs, ctx):
    x, w, s_w, w_zp, bias = _layer_arrays(inputs, ctx)
    s_x, z_x = _input_qparams(ctx, 0)
    with _named(ctx.node):
        acc = conv_acc(x, z_x, w, bias, attrs["stride"], attrs["padding"], w_zp)
        s_w = s_w.reshape(-1, 1, 1) if s_w.size > 1 else s_w.reshape(())
        out = _output_stage(acc, s_x, s_w, attrs, ctx)
    return _tensor(out, ctx)


def eval_qmatmul(inputs, attrs, ctx):
    a, b = _arrays(inputs)
    (s_a, z_a), (s_b, z_b) = _input_qparams(ctx, 0), _input_qparams(ctx, 1)
    with _named(ctx.node):
        acc = exact_int_matmul(a.astype(np.int64) - z_a, b.astype(np.int64) - z_b)
        out = _output_stage(acc, s_a, np.float32(s_b), attrs, ctx)
    return _tensor(out, ctx)


def eval_qadd(inputs, attrs, ctx):
    a, b = _arrays(inputs)
    (s_a, z_a), (s_b, z_b) = _input_qparams(ctx, 0), _input_qparams(ctx, 1)
    s_y, z_y = node_qparams(ctx.node)
    with _named(ctx.node):
        total = dequantize_linear(a, s_a, _zp(z_a, a.dtype.name)) + \
            dequantize_linear(b, s_b, _zp(z_b, b.dtype.name))
        q = quantize_linear(total.astype(np.float32), s_y, _zp(z_y, attrs["dtype"]))
    q = _clamp_to_value_range(q, ctx.node, attrs["dtype"])
    if attrs.get("activation") is not None:
        lo, hi = output_clamp(attrs["activation"], s_y, z_y,
                              *_value_range(ctx.node, attrs["dtype"]))
        q = np.clip(q, lo, hi).astype(q.dtype)
    return _tensor(q, ctx)


def dynamic_qmax(attrs):
    """The dynamic activations' top value: 127 with ``reduce_range`` (7 bits), else 255."""
    return 127 if attrs.get("reduce_range") else 255


def eval_linear_dynamic(inputs, attrs, ctx):
    x, w, s_w, *bias = _arrays(inputs)
    s_w = s_w.reshape(-1) if s_w.size > 1 else s_w.reshape(())
    qmax = dynamic_qmax(attrs)
    with _named(ctx.node):
        if attrs["granularity"] == "per_token":
            x_q, s_x, z_x = dynamic_quantize_per_token(x, qmax)
            centred = x_q.astype(np.int64) - z_x.astype(np.int64)[..., None]
            scale = np.multiply(s_x[..., None], s_w, dtype=np.float32)
        else:
            x_q, s_x, z_x = dynamic_quantize_u8(x, qmax)
            centred = x_q.astype(np.int64) - int(z_x)
            scale = np.multiply(np.float32(s_x), s_w, dtype=np.float32)
        acc = _fit_int32(exact_int_matmul(centred, w.astype(np.int64)), "linear_dynamic")
    y = np.multiply(acc.astype(np.float32), scale, dtype=np.float32)
    if bias:
        y = np.add(y, bias[0].astype(np.float32), dtype=np.float32)
    return _tensor(y, ctx)


def eval_conv2d_dynamic(inputs, attrs, ctx):
    """``x`` quantized per tensor to u8 (dynamic_quantize_linear), exact int conv with the int8
    weights, ``float32(acc) * (s_x * s_w[co])``, then ``+ bias`` as a separate add."""
    x, w, s_w, *bias = _arrays(inputs)
    s_w = s_w.reshape(-1) if s_w.size > 1 else s_w.reshape(())
    with _named(ctx.node):
        x_q, s_x, z_x = dynamic_quantize_u8(x, dynamic_qmax(attrs))
        acc = conv_acc(x_q, int(z_x), w, None, attrs["stride"], attrs["padding"])
        acc = _fit_int32(acc, "conv2d_dynamic")
    scale = np.multiply(np.float32(s_x), s_w, dtype=np.float32)
    scale = scale.reshape(-1, 1, 1) if scale.ndim else scale
    y = np.multiply(acc.astype(np.float32), scale, dtype=np.float32)
    if bias:
        y = np.add(y, bias[0].astype(np.float32).reshape(-1, 1, 1), dtype=np.float32)
    return _tensor(y, ctx)


# ----------------------------------------------------------------------------- weight-only

def dequantize_weight(arrays, attrs, k, red_axis):
    """fp32 weight from the weight-only inputs ``[w, scale?, zp?]`` (docs/quantized-ir.md)."""
    wdt, gran = attrs["weight_dtype"], attrs["granularity"]
    w = arrays[0]
    if wdt == "float16":
        return w.astype(np.float32)
    if wdt == "bfloat16":
        # a Needle bf16 Tensor reads back as float32 (exact); raw uint16 bits are widened here
        return bf16_to_float32(w) if w.dtype == np.uint16 else w.astype(np.float32)
    if wdt in ("int4", "uint4"):
        w = unpack_int4(w, k, axis=red_axis, signed=wdt == "int4")
    scale = arrays[1]
    zp = arrays[2] if attrs["has_zero_point"] else None
    if gran == "per_group":
        return dequantize_linear(w, scale, zp, axis=red_axis % w.ndim,
                                 block_size=attrs["group_size"])
    return dequantize_linear(w, scale, zp, axis=w.ndim - 1)


def _raw_inputs(inputs, ctx, start):
    """Input arrays from ``start`` on, read from graph.tensors for param/constant inputs.

    The stored array is authoritative: a bf16 param is raw uint16 bits there, while a Needle
    Tensor made from those bits would read them as numbers.
    """
    out = []
    for node, tensor in zip(ctx.node.inputs[start:], inputs[start:]):
        key = node.attrs.get("tensor") if node.op in ("param", "constant") else None
        out.append(ctx.graph.tensors[key] if key in ctx.graph.tensors else tensor.numpy())
    return out


def _weight_only_parts(inputs, attrs, ctx):
    arrays = _raw_inputs(inputs, ctx, 1)
    if attrs["has_bias"]:
        return arrays[:-1], inputs[-1]
    return arrays, None


def eval_linear_weight_only(inputs, attrs, ctx):
    """Dequantize the weight, then the float ``linear`` evaluation (Needle)."""
    from needle_qc.opset.table import get_op

    parts, bias = _weight_only_parts(inputs, attrs, ctx)
    with _named(ctx.node):
        w = dequantize_weight(parts, attrs, inputs[0].shape[-1], 0)
    args = [inputs[0], _tensor(w, ctx, "float32")] + ([bias] if bias is not None else [])
    return get_op("linear").evaluate(args, {}, ctx)


def eval_conv2d_weight_only(inputs, attrs, ctx):
    """Dequantize the weight, then the float ``conv2d`` evaluation (Needle)."""
    from needle_qc.opset.table import get_op

    parts, bias = _weight_only_parts(inputs, attrs, ctx)
    with _named(ctx.node):
        w = dequantize_weight(parts, attrs, inputs[0].shape[1], 2)
    args = [inputs[0], _tensor(w, ctx, "float32")] + ([bias] if bias is not None else [])
    conv_attrs = {"stride": attrs["stride"], "padding": attrs["padding"]}
    return get_op("conv2d").evaluate(args, conv_attrs, ctx)
