"""Builders of the fused LSTM step and layer: ``lstm_cell`` / ``lstm_layer`` (fp32) and
``qlstm_cell`` / ``qlstm_layer`` (int8), one native call each (``csrc/quant/cpu/lstm_cell.h``);
weights laid out once per shared weight param. :func:`with_layers` is the lowering's
``fuse-lstm-layer`` on a copy (the caller's graph keeps its cells)."""

import numpy as np

from needle_qc.errors import IRError
from needle_qc.lower.common import INT32_MAX, _weight_record, accumulator_bound
from needle_qc.lower.program import Impl
from needle_qc.lower.registry import builder
from needle_qc.opset.recurrent import STATIC_KEYS, static_qparams
from needle_qc.passes import run_passes
from needle_qc.passes.fuse_lstm_layer import has_layers

QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def _f32_consts(ctx, nodes):
    arrays = [ctx.const(n) for n in nodes]
    if any(a is None or a.dtype != np.float32 for a in arrays):
        return None
    return [np.ascontiguousarray(a).reshape(-1) if a.ndim != 2 else np.ascontiguousarray(a)
            for a in arrays]


def _inputs(ctx, node, count):
    return [ctx.value(i, "logical") for i in node.inputs[:count]]


def with_layers(graph):
    """``graph`` with each chain of LSTM steps over one split as one ``lstm_layer`` /
    ``qlstm_layer`` (a copy; ``graph`` itself when there is none, e.g. an observed graph)."""
    if not has_layers(graph):
        return graph
    fused = graph.copy()
    run_passes(fused, ["fuse-lstm-layer"])
    return fused


def _f32_cell(ctx, node, kernel):
    """``(kernel, args after x, h, c)`` of an fp32 cell or layer, or None."""
    kernels = ctx.cpu_kernels
    if not hasattr(kernels, kernel) or node.inputs[0].meta.get("dtype") != "float32":
        return None
    consts = _f32_consts(ctx, node.inputs[3:])
    if consts is None:
        return None
    w_ih, w_hh, *biases = consts
    b_ih, b_hh = biases or (None, None)
    return getattr(kernels, kernel), (w_ih, w_hh, b_ih, b_hh, node.attrs["gate_order"])


@builder("lstm_cell")
def build_lstm_cell(ctx, node):
    """The fp32 step in one call: both products (the direct GEMM's FMA chains) and the tail."""
    found = _f32_cell(ctx, node, "lstm_cell_f32")
    if found is None:
        return None
    kernel, args = found
    return Impl("lstm cell f32 (C++, AVX2 FMA)", "gates GEMMs + gate tail in one call",
                lambda x, h, c: kernel(x, h, c, *args), _inputs(ctx, node, 3))


@builder("lstm_layer")
def build_lstm_layer(ctx, node):
    """The fp32 layer in one call: x W_ih of all T steps first, then the recurrence (each sum
    the same FMA chain as the cell's, so the cells' bits)."""
    found = _f32_cell(ctx, node, "lstm_layer_f32")
    if found is None:
        return None
    kernel, args = found
    return Impl("lstm layer f32 (C++, AVX2 FMA)", "T steps in one call, x products batched",
                lambda xs, h, c: kernel(xs, h, c, *args), _inputs(ctx, node, 3))


def _packed(ctx, node, kernels):
    """The packed int8 weights, scales and biases, built once per weight param pair."""
    w_ih, s_ih, w_hh, s_hh = (ctx.const(i) for i in node.inputs[3:7])
    biases = [ctx.const(i) for i in node.inputs[7:]]
    if any(a is None for a in (w_ih, s_ih, w_hh, s_hh, *biases)):
        return None
    for name, w in (("W_ih", w_ih), ("W_hh", w_hh)):
        bound = accumulator_bound(w.shape[0], (-255, 255), w)
        if bound > INT32_MAX:
            raise IRError(f"%{node.name}: {name} products may reach {bound} > 2^31 - 1")
    made = []

    def make():
        made.append(True)
        return (kernels.pack_lstm_s8(np.ascontiguousarray(w_ih, np.int8)),
                np.ascontiguousarray(s_ih, np.float32).reshape(-1),
                kernels.pack_lstm_s8(np.ascontiguousarray(w_hh, np.int8)),
                np.ascontiguousarray(s_hh, np.float32).reshape(-1),
                [np.ascontiguousarray(b, np.float32).reshape(-1) for b in biases])

    packed = ctx.packed_once("qlstm", node, make)
    records = []
    if made:  # the first cell of a shared weight accounts for it
        count = w_ih.size + w_hh.size
        qparam = sum(a.nbytes for a in (packed[1], packed[3], *packed[4]))
        records = [_weight_record(node, "int8", count, packed[0].nbytes + packed[2].nbytes,
                                  qparam)]
    return packed, records


def _qparams(attrs):
    x_qp, h_qp = static_qparams(attrs)
    if x_qp is None:
        return None, None
    return tuple((float(np.float32(s)), int(z), *QRANGE[dt]) for s, z, dt in (x_qp, h_qp))


def _step_qparams(attrs):
    """A static layer's ``([x qparams per step], [h qparams per step])``, or (None, None)."""
    if attrs.get("x_scale") is None:
        return None, None
    steps = [_qparams({**attrs, **{k: attrs[k][t] for k in STATIC_KEYS}})
             for t in range(len(attrs["x_scale"]))]
    return [x for x, _ in steps], [h for _, h in steps]


@builder("qlstm_cell")
def build_qlstm_cell(ctx, node):
    """The int8 step in one call: x and h quantized, exact int32 products (the int8 weights,
    1 byte each, widened to int16 pairs for madd), float32 gates; bit-identical to the op
    table's evaluation."""
    return _qlstm_impl(ctx, node, "qlstm_cell", _qparams, "qlstm cell",
                       "int8 gate GEMMs + float gate tail in one call")


@builder("qlstm_layer")
def build_qlstm_layer(ctx, node):
    """The int8 layer in one call: each x_t quantized with its step's qparams, the integer
    x products of all T steps first, then the recurrence; the cells' bits."""
    return _qlstm_impl(ctx, node, "qlstm_layer", _step_qparams, "qlstm layer",
                       "T steps in one call, integer x products batched")


def _qlstm_impl(ctx, node, kernel_name, qparams_of, label, why):
    """The Impl of a qlstm_cell / qlstm_layer node on ``kernels.<kernel_name>`` (same operands:
    x or xs, h, c, the packed weights and biases, the gate order, x and h qparams)."""
    kernels = ctx.cpu_kernels
    if not hasattr(kernels, kernel_name):
        return None
    found = _packed(ctx, node, kernels)
    if found is None:
        return None
    kernel = getattr(kernels, kernel_name)
    (w_ih, s_ih, w_hh, s_hh, biases), records = found
    b_ih, b_hh = biases or (None, None)
    order = node.attrs["gate_order"]
    x_qp, h_qp = qparams_of(node.attrs)
    mode = "dynamic" if x_qp is None else "static"
    return Impl(f"{label} int8 {mode} (C++, AVX2 madd)", why,
                lambda x, h, c: kernel(x, h, c, w_ih, s_ih, w_hh, s_hh, b_ih, b_hh, order,
                                       x_qp, h_qp),
                _inputs(ctx, node, 3), kind="int8", weights=records)
