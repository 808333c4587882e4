"""IR -> ONNX for the quantization ops: quantize / dequantize (QuantizeLinear,
DequantizeLinear), weight-only layers (their stored integers or 16-bit floats dequantized or
cast before MatMul / Conv) and dynamic layers (DynamicQuantizeLinear + MatMulInteger /
ConvInteger)."""
from __future__ import annotations

import numpy as np

from needle_qc.tools.onnx_builder import OIHW, bf16_const, conv_attrs, int_dtype


def dequantize_weight(b, node, perm):
    """DequantizeLinear of a stored integer tensor; ``perm`` permutes the stored integers."""
    q_node = node.inputs[0]
    ndim = len(q_node.meta["shape"])
    q = b.value(q_node, perm)
    if len(node.inputs) == 1:
        scale, zero = _own_qparams(b, q_node)
        return b.op("DequantizeLinear", [q, scale, zero], node.name)
    axis = node.attrs["axis"] % ndim if ndim else 0
    group = node.attrs["group_size"]
    inputs = [q] + [_scale_like(b, n, perm if group else None) for n in node.inputs[1:]]
    if len(inputs) == 2 and _per_axis(node.inputs[1]):
        inputs.append(_zeros_like_scale(b, node, q_node, perm if group else None))
    attrs = {}
    if _per_axis(node.inputs[1]) or group:
        attrs["axis"] = perm.index(axis) if perm is not None else axis
    if group:
        attrs["block_size"] = group
    return b.op("DequantizeLinear", inputs, node.name if perm is None else f"{node.name}_oihw",
                **attrs)


def _per_axis(scale_node):
    return tuple(scale_node.meta["shape"]) not in ((), (1,))


def _zeros_like_scale(b, node, q_node, perm):
    """An explicit zero point of 0s shaped like the scale: ORT's fused integer kernels (QGemm)
    need one per channel when the scale is per channel."""
    scale = b.graph.tensors[node.inputs[1].attrs["tensor"]]
    zeros = np.zeros(scale.shape if perm is None else np.transpose(scale, perm).shape,
                     int_dtype(q_node.meta["dtype"]))
    return b.const(zeros, f"{node.name}_zero_point")


def _scale_like(b, node, perm):
    """A scale or zero point: per tensor as a scalar, per axis as it is, blocked permuted."""
    if not _per_axis(node) and node.op in ("param", "constant"):
        array = b.graph.tensors[node.attrs["tensor"]]
        return b.const(array.reshape(()), node.name)
    return b.value(node, perm)


def _own_qparams(b, q_node):
    """(scale, zero point) initializers from a node's type (activations, int32 biases)."""
    from needle_qc.opset.quant_eval import node_qparams

    s, z = node_qparams(q_node)
    dtype = int_dtype(q_node.meta["dtype"])
    return (b.scalar(s, np.float32, f"{q_node.name}_scale"),
            b.scalar(z, dtype, f"{q_node.name}_zero_point"))


# ----------------------------------------------------------------------------- quantization

def _quantize(b, node):
    from needle_qc.opset.quant_eval import node_qparams

    s, z = node_qparams(node)
    scale = b.scalar(s, np.float32, f"{node.name}_scale")
    zero = b.scalar(z, int_dtype(node.attrs["dtype"]), f"{node.name}_zero_point")
    return b.op("QuantizeLinear", [b.value(node.inputs[0]), scale, zero], node.name)


def _dequantize(b, node):
    """A dequantize of a computed tensor (weights go through the lazy path)."""
    if len(node.inputs) == 1:
        scale, zero = _own_qparams(b, node.inputs[0])
        return b.op("DequantizeLinear", [b.value(node.inputs[0]), scale, zero], node.name)
    return dequantize_weight(b, node, None)


def _observer(b, node):
    return b.value(node.inputs[0])  # identity (observed graphs are normally converted first)


# ----------------------------------------------------------------------------- weight-only

def _weight_only_float(b, node, red_axis, perm, k):
    """The fp32 weight of a weight-only layer as DequantizeLinear / Cast of its stored form."""
    from onnx import TensorProto

    attrs = node.attrs
    wdt = attrs["weight_dtype"]
    w_node = node.inputs[1]
    base = w_node.name
    if wdt == "float16":
        return b.op("Cast", [b.value(w_node, perm)], f"{base}_f32", to=TensorProto.FLOAT)
    if wdt == "bfloat16":
        bits = b.graph.tensors[w_node.attrs["tensor"]]
        if bits.dtype != np.uint16:  # stored as float32 values already rounded to bf16
            from needle_qc.quantize.lowbit import cast_bf16

            bits = cast_bf16(bits)[0]
        src = bf16_const(b, bits, perm, base)
        return b.op("Cast", [src], f"{base}_f32", to=TensorProto.FLOAT)
    return _weight_only_dequantize(b, node, red_axis, perm, k)


def _weight_only_dequantize(b, node, red_axis, perm, k):
    """DequantizeLinear of an integer weight-only weight (int4 as ONNX int4, blocked)."""
    w, scale, zp, axis = _stored_weight(b, node, red_axis, perm, k)
    base = node.inputs[1].name
    if node.attrs["weight_dtype"] in ("int4", "uint4"):
        signed = node.attrs["weight_dtype"] == "int4"
        q = b.int4_const(w, signed, base)
        zp = None if zp is None else b.int4_const(zp, signed, f"{base}_zero_point")
    else:
        q = b.const(w, base)
        zp = None if zp is None else b.const(zp.astype(w.dtype), f"{base}_zero_point")
    inputs = [q, b.const(scale, f"{base}_scale")] + ([] if zp is None else [zp])
    gran, group = node.attrs["granularity"], node.attrs["group_size"]
    if gran == "per_tensor":
        return b.op("DequantizeLinear", inputs, f"{base}_dq")
    extra = {"block_size": group} if gran == "per_group" else {}
    return b.op("DequantizeLinear", inputs, f"{base}_dq", axis=axis, **extra)


def _stored_weight(b, node, red_axis, perm, k):
    """(integer weight unpacked and permuted, scale, zero point or None, ONNX axis)."""
    from needle_qc.quantize.lowbit import unpack_int4

    attrs, tensors = node.attrs, b.graph.tensors
    gran = attrs["granularity"]
    w = tensors[node.inputs[1].attrs["tensor"]]
    scale = tensors[node.inputs[2].attrs["tensor"]]
    zp = tensors[node.inputs[3].attrs["tensor"]] if attrs["has_zero_point"] else None
    axis = red_axis % w.ndim if gran == "per_group" else w.ndim - 1
    if attrs["weight_dtype"] in ("int4", "uint4"):
        w = unpack_int4(w, k, axis=red_axis % w.ndim, signed=attrs["weight_dtype"] == "int4")
    if perm is not None:
        w, axis = np.transpose(w, perm), perm.index(axis)
        if gran == "per_group":  # a blocked scale has the weight's rank: permute it too
            scale = np.transpose(scale, perm)
            zp = None if zp is None else np.transpose(zp, perm)
    if gran == "per_tensor":
        scale, zp = scale.reshape(()), None if zp is None else zp.reshape(())
    return w, scale, zp, axis


def _bias_of(node):
    return node.inputs[-1] if node.attrs["has_bias"] else None


def _linear_weight_only(b, node):
    w = _weight_only_float(b, node, 0, None, node.inputs[0].meta["shape"][-1])
    out = b.op("MatMul", [b.value(node.inputs[0]), w], f"{node.name}_matmul")
    bias = _bias_of(node)
    return out if bias is None else b.op("Add", [out, b.value(bias)], node.name)


def _conv2d_weight_only(b, node):
    w = _weight_only_float(b, node, 2, OIHW, node.inputs[0].meta["shape"][1])
    k = node.inputs[1].meta["shape"][0]
    bias = _bias_of(node)
    inputs = [b.value(node.inputs[0]), w] + ([] if bias is None else [b.value(bias)])
    return b.op("Conv", inputs, node.name, **conv_attrs(node, k))


# ----------------------------------------------------------------------------- dynamic

def _dynamic_parts(b, node, out_axes_shape):
    """(x_q, x_zero_point, fp32 output scale s_x * s_w shaped for the output) of a dynamic
    layer: DynamicQuantizeLinear is ONNX's u8 per-tensor dynamic quantization."""
    x, _, s_w = node.inputs[:3]
    xq, s_x, z_x = b.op("DynamicQuantizeLinear", [b.value(x)], f"{node.name}_x", n_out=3)
    scale_w = b.graph.tensors[s_w.attrs["tensor"]].astype(np.float32)
    scale_w = scale_w.reshape(out_axes_shape if scale_w.size > 1 else ())
    scale = b.op("Mul", [s_x, b.const(scale_w, f"{s_w.name}")], f"{node.name}_scale")
    return xq, z_x, scale


def _dynamic_finish(b, node, acc, scale, bias_shape):
    from onnx import TensorProto

    y = b.op("Cast", [acc], f"{node.name}_acc", to=TensorProto.FLOAT)
    y = b.op("Mul", [y, scale], f"{node.name}_scaled")
    if len(node.inputs) < 4:
        return y
    bias = b.graph.tensors[node.inputs[3].attrs["tensor"]].astype(np.float32)
    return b.op("Add", [y, b.const(bias.reshape(bias_shape), node.inputs[3].name)], node.name)


def _shifted_weight(b, node, perm):
    """(uint8 weight + 128, zero point 128) of an int8 dynamic layer: the same products
    (w + 128) - 128, but ORT's u8 x u8 kernels are exact, while its u8 x s8 kernels on CPUs
    without VNNI add int16 pairs with saturation, and ConvInteger takes only u8 weights."""
    w_node = node.inputs[1]
    w = b.graph.tensors[w_node.attrs["tensor"]].astype(np.int16) + 128
    if perm is not None:
        w = np.transpose(w, perm)
    return (b.const(w.astype(np.uint8), f"{w_node.name}_u8"),
            b.scalar(128, np.uint8, f"{w_node.name}_zero_point"))


def _no_reduce_range(node):
    if node.attrs.get("reduce_range"):
        raise ValueError(f"export_onnx: %{node.name}: 7-bit dynamic activations (reduce_range) "
                         "have no standard ONNX op (DynamicQuantizeLinear quantizes to [0, 255]);"
                         " quantize without reduce_range to export")


def _linear_dynamic(b, node):
    _no_reduce_range(node)
    if node.attrs["granularity"] != "per_tensor":
        raise ValueError(f"export_onnx: %{node.name}: dynamic per-token quantization has no "
                         "standard ONNX op (DynamicQuantizeLinear is per tensor)")
    xq, z_x, scale = _dynamic_parts(b, node, (-1,))
    w, z_w = _shifted_weight(b, node, None)
    acc = b.op("MatMulInteger", [xq, w, z_x, z_w], f"{node.name}_int")
    return _dynamic_finish(b, node, acc, scale, (-1,))


def _conv2d_dynamic(b, node):
    _no_reduce_range(node)
    xq, z_x, scale = _dynamic_parts(b, node, (-1, 1, 1))
    w, z_w = _shifted_weight(b, node, OIHW)
    acc = b.op("ConvInteger", [xq, w, z_x, z_w], f"{node.name}_int",
               **conv_attrs(node, node.inputs[1].meta["shape"][0]))
    return _dynamic_finish(b, node, acc, scale, (-1, 1, 1))


QUANT_EMITTERS = {
    "quantize": _quantize, "dequantize": _dequantize, "observer": _observer,
    "linear_weight_only": _linear_weight_only, "conv2d_weight_only": _conv2d_weight_only,
    "linear_dynamic": _linear_dynamic, "conv2d_dynamic": _conv2d_dynamic,
}
"""Quantization op -> emitter (merged into :data:`needle_qc.tools.onnx_ops.EMITTERS`)."""


# ----------------------------------------------------------------------------- integer stage
# A static integer layer is written back in its QDQ form: DequantizeLinear of its inputs (their
# qparams are in their types), the float op, QuantizeLinear with its own qparams. That is the
# graph it was made from (convert's int32 bias at scale fp32(s_x * s_w) included), so ORT runs
# it as it runs the exported QDQ graph, and fuses it into its integer kernels the same way.

def _dq_activation(b, node):
    """DequantizeLinear of a quantized activation (one per value, shared by its users)."""
    key = (node, "dequantized")
    if key not in b._lazy:
        scale, zero = _own_qparams(b, node)
        b._lazy[key] = b.op("DequantizeLinear", [b.value(node), scale, zero], f"{node.name}_dq")
    return b._lazy[key]


def _layer_weight(b, node, perm, out_axis):
    """DequantizeLinear of a qlinear/qconv2d weight (+ the fp32 per-channel scales)."""
    from needle_qc.opset.quant_eval import layer_optional_inputs, layer_weight_values

    zp_i, bias_i = layer_optional_inputs([n.meta.get("dtype") for n in node.inputs])
    w_node, s_node = node.inputs[1], node.inputs[2]
    s_w = b.graph.tensors[s_node.attrs["tensor"]].astype(np.float32)
    w = layer_weight_values(node, b.graph.tensors[w_node.attrs["tensor"]],  # W4A8: unpacked
                            node.inputs[0].meta["shape"])
    w = w if perm is None else np.transpose(w, perm)
    zp = np.zeros(s_w.shape, w.dtype) if zp_i is None else \
        b.graph.tensors[node.inputs[zp_i].attrs["tensor"]].astype(w.dtype).reshape(s_w.shape)
    inputs = [b.const(w, w_node.name), b.const(s_w.reshape(-1) if s_w.size > 1 else
                                               s_w.reshape(()), s_node.name),
              b.const(zp.reshape(-1) if s_w.size > 1 else zp.reshape(()), f"{w_node.name}_zp")]
    attrs = {"axis": out_axis} if s_w.size > 1 else {}
    weight = b.op("DequantizeLinear", inputs, f"{w_node.name}_dq", **attrs)
    return weight, s_w, bias_i


def _layer_bias(b, node, bias_i, s_w):
    """DequantizeLinear of the int32 bias at scale fp32(s_x * s_w), as convert made it."""
    from needle_qc.opset.quant_eval import node_qparams

    if bias_i is None:
        return []
    s_x, _ = node_qparams(node.inputs[0])
    bias_node = node.inputs[bias_i]
    q = b.graph.tensors[bias_node.attrs["tensor"]]
    scale = np.broadcast_to(np.multiply(np.float32(s_x), s_w.reshape(-1), dtype=np.float32),
                            q.shape).astype(np.float32)
    inputs = [b.const(q, bias_node.name), b.const(scale, f"{bias_node.name}_scale"),
              b.const(np.zeros(q.shape, np.int32), f"{bias_node.name}_zp")]
    return [b.op("DequantizeLinear", inputs, f"{bias_node.name}_dq", axis=0)]


def _requantized(b, node, value):
    """Apply the node's activation, then QuantizeLinear to its own qparams (unless the layer
    returns float32)."""
    from needle_qc.tools.onnx_ops import ACTIVATIONS

    act = node.attrs.get("activation")
    float_out = node.attrs.get("dtype") == "float32"
    if act is not None:
        if act not in ACTIVATIONS:
            raise ValueError(f"export_onnx: %{node.name}: activation {act!r} has no ONNX "
                             f"form here (exportable: {', '.join(ACTIVATIONS)})")
        value = b.op(ACTIVATIONS[act], [value], node.name if float_out else f"{node.name}_act")
    if float_out:
        return value
    return _quantize_to_own(b, node, value)


def _quantize_to_own(b, node, value):
    from needle_qc.opset.quant_eval import node_qparams

    s, z = node_qparams(node)
    scale = b.scalar(s, np.float32, f"{node.name}_scale")
    zero = b.scalar(z, int_dtype(node.attrs["dtype"]), f"{node.name}_zero_point")
    return b.op("QuantizeLinear", [value, scale, zero], node.name)


def _qlinear(b, node):
    weight, s_w, bias_i = _layer_weight(b, node, None, 1)
    y = b.op("MatMul", [_dq_activation(b, node.inputs[0]), weight], f"{node.name}_matmul")
    for bias in _layer_bias(b, node, bias_i, s_w):
        y = b.op("Add", [y, bias], f"{node.name}_add")
    return _requantized(b, node, y)


def _qconv2d(b, node):
    weight, s_w, bias_i = _layer_weight(b, node, OIHW, 0)
    k = node.inputs[1].meta["shape"][0]
    inputs = [_dq_activation(b, node.inputs[0]), weight] + _layer_bias(b, node, bias_i, s_w)
    y = b.op("Conv", inputs, f"{node.name}_conv", **conv_attrs(node, k))
    return _requantized(b, node, y)


def _qbinary(op_type):
    def emit(b, node):
        a, c = (_dq_activation(b, n) for n in node.inputs)
        return _requantized(b, node, b.op(op_type, [a, c], f"{node.name}_{op_type.lower()}"))
    return emit


def _requantize(b, node):
    return _requantized(b, node, _dq_activation(b, node.inputs[0]))


QUANT_EMITTERS.update({"qlinear": _qlinear, "qconv2d": _qconv2d, "qmatmul": _qbinary("MatMul"),
                       "qadd": _qbinary("Add"), "requantize": _requantize})
