"""IR -> ONNX for the fused LSTM step (merged into :data:`needle_qc.tools.onnx_ops.EMITTERS`).

``lstm_cell`` is written as the standard ops of the op table's evaluation: MatMul, Add, Split,
Sigmoid, Tanh, Mul (so ORT computes what our fp32 does, its own sigmoid/tanh aside).
``qlstm_cell``:

* dynamic: DynamicQuantizeLinear of x and of h, MatMulInteger with the int8 weight stored as
  uint8 ``q + 128`` with zero point 128 (the same exact int32 sums; ORT's u8 x u8 kernels do
  not saturate), Cast, Mul by ``fp32(s_v * s_w)``, Add: the exact integer parts of
  :func:`~needle_qc.opset.recurrent_eval.qlstm_gates`, then the float gate math;
* static: written back in its QDQ form, as every static integer layer is: QuantizeLinear /
  DequantizeLinear of x and h with its qparams, DequantizeLinear of the int8 weights, the
  float cell. That is the graph it was fused from (``quantize-lstm``), so the integer graph
  and the QDQ graph export the same model.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from needle_qc.opset.recurrent import step_attrs
from needle_qc.tools.onnx_builder import int_dtype


def _cell_math(b, node, x, h, c, w_ih, w_hh, biases):
    """The float step on ONNX values: gates = ((x W_ih + h W_hh) + b_ih) + b_hh, split in
    ``gate_order``; c' = f c + i g, h' = o tanh(c'). Returns [h', c']."""
    name = node.name
    gates = b.op("Add", [b.op("MatMul", [x, w_ih], f"{name}_x_mm"),
                         b.op("MatMul", [h, w_hh], f"{name}_h_mm")], f"{name}_gates")
    return _tail(b, node, _add_biases(b, node, gates, biases), c)


def _add_biases(b, node, gates, biases):
    for k, bias in enumerate(biases):
        gates = b.op("Add", [gates, bias], f"{node.name}_b{k}")
    return gates


def _tail(b, node, gates, c):
    name = node.name
    parts = b.op("Split", [gates], f"{name}_gate", n_out=4, axis=1, num_outputs=4)
    gate = dict(zip(node.attrs["gate_order"], parts))
    i, f, o = (b.op("Sigmoid", [gate[r]], f"{name}_{r}") for r in "ifo")
    g = b.op("Tanh", [gate["g"]], f"{name}_g")
    c_new = b.op("Add", [b.op("Mul", [f, c], f"{name}_fc"), b.op("Mul", [i, g], f"{name}_ig")],
                 f"{name}_c")
    h_new = b.op("Mul", [o, b.op("Tanh", [c_new], f"{name}_tanh_c")], f"{name}_h")
    return [h_new, c_new]


def _lstm_cell(b, node):
    x, h, c, w_ih, w_hh, *biases = (b.value(n) for n in node.inputs)
    return _cell_math(b, node, x, h, c, w_ih, w_hh, biases)


# ----------------------------------------------------------------------------- qlstm_cell

def _array(b, node):
    return np.asarray(b.graph.tensors[node.attrs["tensor"]])


def _scale_of(b, s_node):
    """A weight scale as a 1-D [4H] initializer, or a scalar one for a per-tensor scale."""
    s = _array(b, s_node).astype(np.float32)
    return s.reshape(-1) if s.size > 1 else s.reshape(())


def _cached(b, key, make):
    if key not in b._lazy:
        b._lazy[key] = make()
    return b._lazy[key]


def _dequantized_weight(b, w_node, s_node):
    """DequantizeLinear of a stored int8 weight [K, 4H], per column (axis 1) or per tensor,
    as ``dequantize_weight`` writes a QDQ graph's weight (one per weight param)."""
    def make():
        scale = _scale_of(b, s_node)
        inputs = [b.value(w_node), b.const(scale, s_node.name)]
        attrs = {}
        if scale.ndim:  # ORT's fused kernels want the zero point when the scale is per axis
            inputs.append(b.const(np.zeros(scale.shape, np.int8), f"{w_node.name}_zero_point"))
            attrs["axis"] = 1
        return b.op("DequantizeLinear", inputs, f"{w_node.name}_dq", **attrs)
    return _cached(b, (w_node, "dequantized"), make)


def _fake_quantized(b, node, v, role, s, z, dtype):
    """DequantizeLinear(QuantizeLinear(v)) with the static qparams (s, z)."""
    scale = b.scalar(np.float32(s), np.float32, f"{node.name}_{role}_scale")
    zero = b.scalar(z, int_dtype(dtype), f"{node.name}_{role}_zero_point")
    q = b.op("QuantizeLinear", [v, scale, zero], f"{node.name}_{role}_q")
    return b.op("DequantizeLinear", [q, scale, zero], f"{node.name}_{role}_dq")


def _static_qlstm(b, node, x, h, c, biases):
    a = node.attrs
    dtype = a.get("dtype") or "uint8"
    x = _fake_quantized(b, node, x, "x", a["x_scale"], a["x_zero_point"], dtype)
    h = _fake_quantized(b, node, h, "h", a["h_scale"], a["h_zero_point"], dtype)
    w_ih, s_ih, w_hh, s_hh = node.inputs[3:7]
    return _cell_math(b, node, x, h, c, _dequantized_weight(b, w_ih, s_ih),
                      _dequantized_weight(b, w_hh, s_hh), biases)


def _u8_weight(b, w_node):
    """(uint8 ``q + 128``, zero point 128) of an int8 weight, one per weight param."""
    def make():
        w = _array(b, w_node).astype(np.int16) + 128
        return (b.const(w.astype(np.uint8), f"{w_node.name}_u8"),
                b.scalar(128, np.uint8, f"{w_node.name}_zero_point"))
    return _cached(b, (w_node, "u8"), make)


def _dynamic_product(b, node, v, role, w_node, s_node):
    """``f32(Σ (q - z) w) * fp32(s_v * s_w)``: DynamicQuantizeLinear + MatMulInteger."""
    from onnx import TensorProto

    vq, s_v, z_v = b.op("DynamicQuantizeLinear", [v], f"{node.name}_{role}", n_out=3)
    w, z_w = _u8_weight(b, w_node)
    acc = b.op("MatMulInteger", [vq, w, z_v, z_w], f"{node.name}_{role}_int")
    scale = b.op("Mul", [s_v, b.const(_scale_of(b, s_node), s_node.name)],
                 f"{node.name}_{role}_scale")
    acc = b.op("Cast", [acc], f"{node.name}_{role}_acc", to=TensorProto.FLOAT)
    return b.op("Mul", [acc, scale], f"{node.name}_{role}_scaled")


def _qlstm_cell(b, node):
    return _qlstm_math(b, node, *(b.value(n) for n in node.inputs[:3]))


def _qlstm_math(b, node, x, h, c):
    biases = [b.value(n) for n in node.inputs[7:]]
    if node.attrs.get("x_scale") is not None:
        return _static_qlstm(b, node, x, h, c, biases)
    w_ih, s_ih, w_hh, s_hh = node.inputs[3:7]
    gates = b.op("Add", [_dynamic_product(b, node, x, "x", w_ih, s_ih),
                         _dynamic_product(b, node, h, "h", w_hh, s_hh)], f"{node.name}_gates")
    return _tail(b, node, _add_biases(b, node, gates, biases), c)


def _lstm_math(b, node, x, h, c):
    w_ih, w_hh, *biases = (b.value(n) for n in node.inputs[3:])
    return _cell_math(b, node, x, h, c, w_ih, w_hh, biases)


def _layer(step_math):
    """Emitter of ``lstm_layer`` / ``qlstm_layer``: the T steps written out as the cells are
    (Split/Squeeze of xs, each step's cell ops, Unsqueeze/Concat of the h's)."""
    def emit(b, node):
        xs, name = node.inputs[0], node.name
        steps = xs.meta["shape"][0]
        axes = b.const(np.array([0], np.int64), f"{name}_axis")
        parts = b.op("Split", [b.value(xs)], f"{name}_part", n_out=steps, axis=0,
                     num_outputs=steps)
        h, c, hs = b.value(node.inputs[1]), b.value(node.inputs[2]), []
        for t, part in enumerate([parts] if steps == 1 else parts):
            step = SimpleNamespace(name=f"{name}_{t}", inputs=node.inputs,
                                   attrs=step_attrs(node.attrs, t))
            x = b.op("Squeeze", [part, axes], f"{name}_x{t}")
            h, c = step_math(b, step, x, h, c)
            hs.append(b.op("Unsqueeze", [h, axes], f"{name}_hs{t}"))
        return [b.op("Concat", hs, f"{name}_hs", axis=0), h, c]
    return emit


LSTM_EMITTERS = {"lstm_cell": _lstm_cell, "qlstm_cell": _qlstm_cell,
                 "lstm_layer": _layer(_lstm_math), "qlstm_layer": _layer(_qlstm_math)}
"""Recurrent op -> emitter (merged into :data:`needle_qc.tools.onnx_ops.EMITTERS`)."""
