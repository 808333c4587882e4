"""``quantize-lstm``: a dynamic or static int8 config runs each fused cell as ``qlstm_cell``
(compiled kernel bit-identical to the op table's evaluation); other schemes decompose the cell
and quantize its matmuls as before."""

import collections
import warnings

import numpy as np
import pytest

import needle as ndl
import needle_qc as qc


def _setup(bias=True):
    np.random.seed(0)
    model = ndl.nn.LSTM(5, 6, num_layers=2, bias=bias)
    rng = np.random.default_rng(0)
    data = [rng.normal(size=(4, 3, 5)).astype(np.float32) for _ in range(4)]
    return qc.trace(model, data[0], batch_dims=1), data[:3], data[3]


def _first(value):
    while isinstance(value, (tuple, list)):
        value = value[0]
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _ops(graph):
    return collections.Counter(n.op for n in graph.nodes)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
@pytest.mark.parametrize("bias", [True, False])
def test_int8_cell_compiled_equals_evaluation(mode, bias):
    graph, calib, x = _setup(bias)
    prepared = qc.quantize_pass(graph, qc.QConfig(weight="int8", activation=mode))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the zero initial state's constant range
        qc.calibrate(prepared, calib, progress=False)
    integer = qc.to_integer(prepared)
    ops = _ops(integer)
    assert ops["qlstm_cell"] == 8 and "lstm_cell" not in ops and "matmul" not in ops
    cell = integer.find("qlstm_cell")[0]
    assert (cell.attrs.get("x_scale") is None) == (mode == "dynamic")
    cm = qc.compile(prepared)
    layers = [s for s in cm.program.steps if s.op == "qlstm_layer"]  # one call per layer
    assert len(layers) == 2 and all("C++" in s.impl.kernel for s in layers)
    assert np.array_equal(_first(cm(x)), _first(integer(x)))
    ref = _first(graph(x)).astype(np.float64)
    sqnr = 10 * np.log10((ref ** 2).sum() / ((_first(cm(x)) - ref) ** 2).sum())
    assert sqnr > (25 if mode == "dynamic" else 12), sqnr  # static: 3 calibration batches


def test_int8_cells_share_one_weight_copy():
    graph, _, _ = _setup()
    prepared = qc.quantize_pass(graph, qc.QConfig(weight="int8", activation="dynamic"))
    params = [n for n in prepared.nodes if n.op == "param" and n.name.endswith(("_q", "_scale"))]
    assert len(params) == 8  # 2 layers x (W_ih, W_hh) x (int8, scale)
    assert {p.name for p in params} >= {"lstm_cells.0.W_ih_q", "lstm_cells.1.W_hh_scale"}


def test_weight_only_decomposes_the_cell():
    graph, calib, x = _setup()
    prepared = qc.quantize_pass(graph, qc.QConfig(weight="fp16"))
    ops = _ops(prepared)
    assert "lstm_cell" not in ops and ops["linear_weight_only"] == 16
    cm = qc.compile(prepared)
    assert np.abs(_first(cm(x)) - _first(graph(x))).max() < 1e-2


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_cell_weights_held_as_one_byte_each(mode):
    from needle_qc.runtime.memory import memory_of

    graph, calib, _ = _setup()
    prepared = qc.quantize_pass(graph, qc.QConfig(weight="int8", activation=mode))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = qc.compile(prepared, calibration=calib if mode == "static" else None)
    records = [r for s in cm.program.steps if s.op == "qlstm_layer" for r in s.active.weights]
    # 2 layers, each recorded once: W_ih (5 or 6 rows, k padded to even) + W_hh
    assert [(r.dtype, r.count, r.measured_bytes) for r in records] == \
        [("int8", (5 + 6) * 24, (6 + 6) * 24), ("int8", (6 + 6) * 24, (6 + 6) * 24)]
    mem = memory_of(cm, 3)
    assert mem["theoretical_bytes"] == mem["weight_count"] == 2 * 12 * 24 - 24
    assert mem["theoretical_bytes"] <= mem["measured_bytes"] <= mem["max_packed_bytes"]
