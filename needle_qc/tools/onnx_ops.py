"""IR -> ONNX for :mod:`needle_qc.tools.export_onnx`: one emitter per op.

Each emitter takes ``(builder, node)`` and returns the ONNX value name of the node's result (a
list of names for a tuple value). Params, constants and dequantized weights are emitted lazily,
when a user asks for them, so a conv can ask for its weight in ONNX's OIHW layout (the
initializer itself is transposed: no Transpose node) and a weight-only layer never leaves an
unused packed tensor behind. This module has the float ops; the quantization ops are in
:mod:`~needle_qc.tools.onnx_quant_ops`, the fused LSTM step in :mod:`~needle_qc.tools.onnx_lstm`.
"""
from __future__ import annotations

import math

import numpy as np

from needle_qc.opset import is_symbolic
from needle_qc.tools.onnx_builder import (
    OIHW,
    Builder,
    bf16_const,
    conv_attrs,
    onnx_dtype,
    value_info,
)
from needle_qc.tools.onnx_lstm import LSTM_EMITTERS
from needle_qc.tools.onnx_quant_ops import QUANT_EMITTERS, dequantize_weight


def builder(graph):
    """A :class:`Builder` for ``graph`` with every emitter of this module."""
    return Builder(graph, EMITTERS, LAZY)


# ----------------------------------------------------------------------------- lazy values

def _param(b, node, perm):
    array = b.graph.tensors[node.attrs["tensor"]]
    if node.meta.get("dtype") == "bfloat16" and array.dtype == np.uint16:
        return bf16_const(b, array, perm, node.name)
    if perm is not None:
        array = np.transpose(array, perm)
    return b.const(array, node.name if perm is None else f"{node.name}_oihw")


LAZY = {"param": _param, "constant": _param, "dequantize": dequantize_weight}


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


def _conv2d(b, node):
    x, w, *bias = node.inputs
    k = w.meta["shape"][0]
    inputs = [b.value(x), b.value(w, OIHW)] + [b.value(n) for n in bias]
    out = b.op("Conv", inputs, f"{node.name}_conv", **conv_attrs(node, k))
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
    **QUANT_EMITTERS, **LSTM_EMITTERS,
}
"""IR op -> emitter; an op missing here is refused with a message naming the node."""
