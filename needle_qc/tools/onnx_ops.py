"""The IR -> ONNX translation used by :mod:`needle_qc.tools.export_onnx`: one emitter per op.

Each emitter takes ``(builder, node)`` and returns the ONNX value name of the node's result (a
list of names for a tuple value). Params, constants and dequantized weights are emitted lazily,
when a user asks for them, so a conv can ask for its weight in ONNX's OIHW layout (the
initializer itself is transposed: no Transpose node) and a weight-only layer never leaves an
unused packed tensor behind.
"""
from __future__ import annotations

import math

import numpy as np

from needle_qc.opset import dim_parts, is_symbolic

OIHW = (3, 2, 0, 1)
"""Our conv weights are (K, K, Cin, Cout); ONNX Conv wants (Cout, Cin, K, K)."""


class Builder:
    """Collects ONNX nodes, initializers, inputs and outputs while walking a graph."""

    def __init__(self, graph):
        self.graph = graph
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self.values = {}  # Node -> ONNX name (or list of names for tuple values)
        self._lazy = {}  # (Node, perm) -> ONNX name of a param/weight emitted on demand
        self._used = set()
        self._batch = None

    # ------------------------------------------------------------------ names and values

    def fresh(self, base):
        """A value name not used yet, ``base`` itself when free."""
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def value(self, node, perm=None):
        """ONNX name of ``node``'s value, optionally with its axes permuted by ``perm``."""
        if node.op in ("param", "constant") or _is_weight_dequantize(node):
            key = (node, perm)
            if key not in self._lazy:
                self._lazy[key] = LAZY[node.op](self, node, perm)
            return self._lazy[key]
        name = self.values[node]
        if perm is None:
            return name
        return self.op("Transpose", [name], f"{node.name}_t", perm=list(perm))

    def op(self, op_type, inputs, base, n_out=1, **attrs):
        """Append one ONNX node; its output name (a list of ``n_out`` names if > 1)."""
        from onnx import helper

        outs = [self.fresh(base if n_out == 1 else f"{base}_{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs,
                                           name=self.fresh(f"{base}/{op_type}"), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, array, base):
        """An initializer holding ``array`` (numpy, dtype kept)."""
        from onnx import numpy_helper

        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def int4_const(self, values, signed, base):
        """An ONNX int4/uint4 initializer: the row-major values, two per byte, low nibble
        first (the ONNX packing; ours packs along the reduction axis instead)."""
        from onnx import TensorProto, helper

        flat = (np.asarray(values).astype(np.int64).ravel() & 0xF).astype(np.uint8)
        if flat.size % 2:
            flat = np.append(flat, np.uint8(0))
        packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
        name = self.fresh(base)
        kind = TensorProto.INT4 if signed else TensorProto.UINT4
        self.initializers.append(helper.make_tensor(name, kind, list(np.shape(values)),
                                                    packed.tobytes(), raw=True))
        return name

    def scalar(self, value, dtype, base):
        return self.const(np.array(value, dtype=dtype), base)

    # ------------------------------------------------------------------ shapes with N

    def batch_size(self):
        """A 1-D int64 tensor holding N, read from the first input with a batch dim."""
        if self._batch is None:
            for p in self.graph.placeholders:
                for axis, dim in enumerate(p.meta["shape"]):
                    if is_symbolic(dim):
                        self._batch = self._batch_from(p, axis, dim)
                        return self._batch
            raise ValueError("export_onnx: a shape holds N but no graph input has a batch dim")
        return self._batch

    def _batch_from(self, placeholder, axis, dim):
        dims = self.op("Shape", [self.values[placeholder]], "batch_dims", start=axis,
                       end=axis + 1)
        k, _ = dim_parts(dim)
        if k == 1:
            return dims
        return self.op("Div", [dims, self.const(np.array([k], np.int64), "batch_k")], "batch")

    def shape(self, dims, base):
        """A 1-D int64 shape tensor for ``dims`` (ints, -1, ``N`` or ``k*N``)."""
        if not any(is_symbolic(d) for d in dims):
            return self.const(np.array(dims, np.int64), f"{base}_shape")
        parts = []
        for d in dims:
            if is_symbolic(d):
                k, _ = dim_parts(d)
                n = self.batch_size()
                parts.append(n if k == 1 else self.op(
                    "Mul", [n, self.const(np.array([k], np.int64), f"{base}_k")], f"{base}_kN"))
            else:
                parts.append(self.const(np.array([d], np.int64), f"{base}_d"))
        return self.op("Concat", parts, f"{base}_shape", axis=0)

    # ------------------------------------------------------------------ walking

    def emit(self, node):
        """Translate one node (placeholders and the output node included)."""
        if node.op in ("param", "constant") or _is_weight_dequantize(node):
            return  # emitted on first use, in the layout its user asks for
        emitter = EMITTERS.get(node.op)
        if emitter is None:
            raise ValueError(f"export_onnx: %{node.name}: op {node.op!r} has no ONNX form here "
                             f"(exportable ops: {', '.join(sorted(EMITTERS))})")
        self.values[node] = emitter(self, node)


def _is_weight_dequantize(node):
    return node.op == "dequantize" and node.inputs[0].op in ("param", "constant")


def value_info(name, dtype, shape):
    """ONNX ValueInfo with symbolic dims written as ``N`` / ``20*N``."""
    from onnx import helper

    dims = None if shape is None else [d if isinstance(d, int) else str(d) for d in shape]
    return helper.make_tensor_value_info(name, onnx_dtype(dtype), dims)


def onnx_dtype(dtype):
    from onnx import TensorProto

    special = {"bfloat16": TensorProto.BFLOAT16, "bool": TensorProto.BOOL}
    if dtype in special:
        return special[dtype]
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


# ----------------------------------------------------------------------------- lazy values

def _param(b, node, perm):
    array = b.graph.tensors[node.attrs["tensor"]]
    if node.meta.get("dtype") == "bfloat16" and array.dtype == np.uint16:
        return _bf16_const(b, array, perm, node.name)
    if perm is not None:
        array = np.transpose(array, perm)
    return b.const(array, node.name if perm is None else f"{node.name}_oihw")


def _bf16_const(b, bits, perm, base):
    from onnx import TensorProto, helper

    bits = bits if perm is None else np.transpose(bits, perm)
    name = b.fresh(base)
    tensor = helper.make_tensor(name, TensorProto.BFLOAT16, list(bits.shape),
                                np.ascontiguousarray(bits).tobytes(), raw=True)
    b.initializers.append(tensor)
    return name


def _dequantize_weight(b, node, perm):
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
                     _int_dtype(q_node.meta["dtype"]))
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
    dtype = _int_dtype(q_node.meta["dtype"])
    return (b.scalar(s, np.float32, f"{q_node.name}_scale"),
            b.scalar(z, dtype, f"{q_node.name}_zero_point"))


def _int_dtype(name):
    return {"uint8": np.uint8, "int8": np.int8, "int32": np.int32}[name]


LAZY = {"param": _param, "constant": _param, "dequantize": _dequantize_weight}


# ----------------------------------------------------------------------------- structure

def _placeholder(b, node):
    name = b.fresh(node.name)
    b.inputs.append(value_info(name, node.meta["dtype"], node.meta["shape"]))
    return name


def _output(b, node):
    for i, src in enumerate(node.inputs):
        name = b.value(src)
        base = "output" if len(node.inputs) == 1 else f"output_{i}"
        out = b.op("Identity", [name], base)
        b.outputs.append(value_info(out, src.meta["dtype"], src.meta["shape"]))
    return None


def _full(b, node):
    from onnx import helper

    fill = helper.make_tensor("value", onnx_dtype(node.attrs["dtype"]), [1],
                              [node.attrs["value"]])
    return b.op("ConstantOfShape", [b.shape(node.attrs["shape"], node.name)], node.name,
                value=fill)


# ----------------------------------------------------------------------------- layers

ACTIVATIONS = {"relu": "Relu"}
"""Fused activation name (a layer's ``activation`` attr) -> ONNX op."""


def _finish(b, node, value, activation):
    """Apply a fused activation (None: none); the last value gets the node's own name."""
    if activation is None:
        return value
    if activation not in ACTIVATIONS:
        raise ValueError(f"export_onnx: %{node.name}: activation {activation!r} has no ONNX "
                         f"form here (exportable: {', '.join(ACTIVATIONS)})")
    return b.op(ACTIVATIONS[activation], [value], node.name)


def _activation(b, node):
    return _finish(b, node, b.value(node.inputs[0]), node.attrs["name"])


def _linear(b, node):
    x, w, *bias = node.inputs
    out = b.op("MatMul", [b.value(x), b.value(w)], f"{node.name}_matmul")
    if bias:
        out = b.op("Add", [out, b.value(bias[0])], f"{node.name}_add")
    return _finish(b, node, out, node.attrs.get("activation"))


def _conv_attrs(node, k):
    p, s = node.attrs["padding"], node.attrs["stride"]
    return {"kernel_shape": [k, k], "pads": [p] * 4, "strides": [s, s]}


def _conv2d(b, node):
    x, w, *bias = node.inputs
    k = w.meta["shape"][0]
    inputs = [b.value(x), b.value(w, OIHW)] + [b.value(n) for n in bias]
    out = b.op("Conv", inputs, f"{node.name}_conv", **_conv_attrs(node, k))
    return _finish(b, node, out, node.attrs.get("activation"))


def _add_relu(b, node):
    out = b.op("Add", [b.value(n) for n in node.inputs], f"{node.name}_add")
    return b.op("Relu", [out], node.name)


def _batch_norm(b, node):
    x, *rest = node.inputs
    return b.op("BatchNormalization", [b.value(x)] + [b.value(n) for n in rest], node.name,
                epsilon=float(node.attrs["eps"]))


def _layer_norm(b, node):
    x, w, bias = node.inputs
    return b.op("LayerNormalization", [b.value(x), b.value(w), b.value(bias)], node.name,
                axis=-1, epsilon=float(node.attrs["eps"]))


def _embedding(b, node):
    ids, table = node.inputs
    index = b.value(ids)
    if ids.meta["dtype"] != "int64":  # Needle keeps token ids in float tensors
        from onnx import TensorProto

        index = b.op("Cast", [index], f"{node.name}_ids", to=TensorProto.INT64)
    return b.op("Gather", [b.value(table), index], node.name, axis=0)


def _attention(b, node):
    """softmax(q k^T / sqrt(D) [+ causal mask]) v, as Needle's MultiHeadAttention computes it."""
    q, k, v = node.inputs
    tq, d = q.meta["shape"][2], q.meta["shape"][3]
    tk = k.meta["shape"][2]
    kt = b.op("Transpose", [b.value(k)], f"{node.name}_kT", perm=[0, 1, 3, 2])
    logits = b.op("MatMul", [b.value(q), kt], f"{node.name}_qk")
    logits = b.op("Div", [logits, b.scalar(math.sqrt(d), np.float32, f"{node.name}_sqrt_d")],
                  f"{node.name}_logits")
    if node.attrs["causal"]:
        mask = -np.finfo(np.float32).max * np.triu(np.ones((1, 1, tq, tk), np.float32),
                                                    tk - tq + 1)
        logits = b.op("Add", [logits, b.const(mask.astype(np.float32), f"{node.name}_mask")],
                      f"{node.name}_masked")
    probs = b.op("Softmax", [logits], f"{node.name}_probs", axis=-1)
    result = b.op("MatMul", [probs, b.value(v)], f"{node.name}_result")
    return [result, probs]


# ----------------------------------------------------------------------------- primitives

def _simple(op_type):
    def emit(b, node):
        return b.op(op_type, [b.value(n) for n in node.inputs], node.name)
    return emit


def _with_scalar(op_type):
    def emit(b, node):
        (x,) = node.inputs
        c = b.scalar(node.attrs["scalar"], np.dtype(x.meta["dtype"]), f"{node.name}_c")
        return b.op(op_type, [b.value(x), c], node.name)
    return emit


def _transpose(b, node):
    rank = len(node.inputs[0].meta["shape"])
    i, j = node.attrs.get("axes") or (-2, -1)
    perm = list(range(rank))
    perm[i % rank], perm[j % rank] = perm[j % rank], perm[i % rank]
    return b.op("Transpose", [b.value(node.inputs[0])], node.name, perm=perm)


def _permute(b, node):
    return b.op("Transpose", [b.value(node.inputs[0])], node.name, perm=list(node.attrs["axes"]))


def _reshape(b, node):
    dims = list(node.meta["shape"])
    symbolic = [i for i, d in enumerate(dims) if is_symbolic(d)]
    if len(symbolic) == 1:  # the one unknown dim is inferred: a constant shape suffices
        dims[symbolic[0]] = -1
    return b.op("Reshape", [b.value(node.inputs[0]), b.shape(dims, node.name)], node.name)


def _broadcast_to(b, node):
    return b.op("Expand", [b.value(node.inputs[0]), b.shape(node.meta["shape"], node.name)],
                node.name)


def _summation(b, node):
    x = node.inputs[0]
    axes = node.attrs.get("axes")
    rank = len(x.meta["shape"])
    axes = list(range(rank)) if axes is None else [axes] if isinstance(axes, int) else list(axes)
    return b.op("ReduceSum", [b.value(x), b.const(np.array(axes, np.int64), f"{node.name}_axes")],
                node.name, keepdims=0)


def _stack(b, node):
    axis = node.attrs["axis"]
    axes = b.const(np.array([axis], np.int64), f"{node.name}_axis")
    parts = [b.op("Unsqueeze", [b.value(n), axes], f"{node.name}_{i}")
             for i, n in enumerate(node.inputs)]
    return b.op("Concat", parts, node.name, axis=axis)


def _split(b, node):
    x = node.inputs[0]
    axis = node.attrs["axis"] % len(x.meta["shape"])
    count = x.meta["shape"][axis]
    axes = b.const(np.array([axis], np.int64), f"{node.name}_axis")
    parts = b.op("Split", [b.value(x)], f"{node.name}_part", n_out=count, axis=axis,
                 num_outputs=count)
    parts = [parts] if count == 1 else parts
    return [b.op("Squeeze", [p, axes], f"{node.name}_{i}") for i, p in enumerate(parts)]


def _tuple_get_item(b, node):
    return b.values[node.inputs[0]][node.attrs["index"]]


def _make_tuple(b, node):
    return [b.value(n) for n in node.inputs]


def _astype(b, node):
    return b.op("Cast", [b.value(node.inputs[0])], node.name,
                to=onnx_dtype(node.attrs["dtype"]))


def _logsoftmax(b, node):
    return b.op("LogSoftmax", [b.value(node.inputs[0])], node.name, axis=-1)


# ----------------------------------------------------------------------------- quantization

def _quantize(b, node):
    from needle_qc.opset.quant_eval import node_qparams

    s, z = node_qparams(node)
    scale = b.scalar(s, np.float32, f"{node.name}_scale")
    zero = b.scalar(z, _int_dtype(node.attrs["dtype"]), f"{node.name}_zero_point")
    return b.op("QuantizeLinear", [b.value(node.inputs[0]), scale, zero], node.name)


def _dequantize(b, node):
    """A dequantize of a computed tensor (weights go through the lazy path)."""
    if len(node.inputs) == 1:
        scale, zero = _own_qparams(b, node.inputs[0])
        return b.op("DequantizeLinear", [b.value(node.inputs[0]), scale, zero], node.name)
    return _dequantize_weight(b, node, None)


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
        src = _bf16_const(b, bits, perm, base)
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
    return b.op("Conv", inputs, node.name, **_conv_attrs(node, k))


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


def _linear_dynamic(b, node):
    if node.attrs["granularity"] != "per_tensor":
        raise ValueError(f"export_onnx: %{node.name}: dynamic per-token quantization has no "
                         "standard ONNX op (DynamicQuantizeLinear is per tensor)")
    xq, z_x, scale = _dynamic_parts(b, node, (-1,))
    w, z_w = _shifted_weight(b, node, None)
    acc = b.op("MatMulInteger", [xq, w, z_x, z_w], f"{node.name}_int")
    return _dynamic_finish(b, node, acc, scale, (-1,))


def _conv2d_dynamic(b, node):
    xq, z_x, scale = _dynamic_parts(b, node, (-1, 1, 1))
    w, z_w = _shifted_weight(b, node, OIHW)
    acc = b.op("ConvInteger", [xq, w, z_x, z_w], f"{node.name}_int",
               **_conv_attrs(node, node.inputs[1].meta["shape"][0]))
    return _dynamic_finish(b, node, acc, scale, (-1, 1, 1))


EMITTERS = {
    "placeholder": _placeholder, "output": _output, "full": _full,
    "linear": _linear, "conv2d": _conv2d, "add_relu": _add_relu, "batch_norm": _batch_norm,
    "layer_norm": _layer_norm, "embedding": _embedding, "multi_head_attention": _attention,
    "activation": _activation, "relu": _simple("Relu"), "tanh": _simple("Tanh"),
    "sigmoid": _simple("Sigmoid"),
    "exp": _simple("Exp"), "log": _simple("Log"), "negate": _simple("Neg"),
    "add": _simple("Add"), "mul": _simple("Mul"), "div": _simple("Div"), "pow": _simple("Pow"),
    "maximum": _simple("Max"), "matmul": _simple("MatMul"),
    "add_scalar": _with_scalar("Add"), "mul_scalar": _with_scalar("Mul"),
    "div_scalar": _with_scalar("Div"), "power_scalar": _with_scalar("Pow"),
    "transpose": _transpose, "permute": _permute, "reshape": _reshape,
    "broadcast_to": _broadcast_to, "summation": _summation, "stack": _stack, "split": _split,
    "tuple_get_item": _tuple_get_item, "make_tuple": _make_tuple, "astype": _astype,
    "logsoftmax": _logsoftmax,
    "quantize": _quantize, "dequantize": _dequantize, "observer": _observer,
    "linear_weight_only": _linear_weight_only, "conv2d_weight_only": _conv2d_weight_only,
    "linear_dynamic": _linear_dynamic, "conv2d_dynamic": _conv2d_dynamic,
}
"""IR op -> emitter; an op missing here is refused with a message naming the node."""
