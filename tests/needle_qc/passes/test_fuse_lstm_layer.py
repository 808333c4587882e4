"""``fuse-lstm-layer``: the chained steps of each layer of Needle's LSTM (float, dynamic and
static int8) become one ``lstm_layer`` / ``qlstm_layer`` (IR text before/after), the layers of a
multi-layer LSTM chain, the numbers stay bit-identical, and the lowering runs one call per
layer while the caller's graph keeps its cells."""

import collections
import warnings

import numpy as np
import pytest

import needle as ndl
import needle_qc as qc
from needle_qc.passes import run_passes


def _lstm(layers=2, steps=3, n=4):
    np.random.seed(0)
    model = ndl.nn.LSTM(5, 6, num_layers=layers)
    rng = np.random.default_rng(0)
    data = [rng.normal(size=(steps, n, 5)).astype(np.float32) for _ in range(4)]
    return qc.trace(model, data[0], batch_dims=1), data[:3], data[3]


def _flat(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flat(v)]
    return [np.asarray(value.numpy() if hasattr(value, "numpy") else value)]


def _same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(_flat(a), _flat(b)))


def _ops(graph):
    return collections.Counter(n.op for n in graph.nodes)


def test_float_layers_fuse_and_chain():
    graph, _, x = _lstm()
    run_passes(graph, qc.FLOAT_PIPELINE)
    before, after = str(graph), graph.copy()
    assert before.count(" = lstm_cell(") == 6
    assert run_passes(after, ["fuse-lstm-layer"]).runs[0].changed
    text = str(after).splitlines()
    assert _ops(after)["lstm_layer"] == 2 and "lstm_cell" not in _ops(after)
    layers = [line for line in text if " = lstm_layer(" in line]
    assert layers[0] == ("%lstm_cell_layer = lstm_layer(%X, %const, %const, "
                         "%lstm_cells.0.W_ih, %lstm_cells.0.W_hh, %lstm_cells.0.bias_ih, "
                         '%lstm_cells.0.bias_hh) {gate_order="ifgo"} : '
                         "(f32[3,N,6], f32[N,6], f32[N,6])"), layers[0]
    # the second layer reads the first one's h sequence: the view split of its hs
    assert layers[1].startswith("%lstm_cell_3_layer = lstm_layer(%lstm_cell_layer_hs, ")
    assert not any(" = split(%lstm_cell_layer_hs)" in line for line in text)
    assert _same(graph(x), after(x))  # the layer evaluates the cells: the same bits
    assert not run_passes(after, ["fuse-lstm-layer"]).runs[0].changed


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_layers_keep_per_step_qparams_and_bits(mode):
    graph, calib, x = _lstm()
    prepared = qc.quantize_pass(graph, qc.QConfig(weight="int8", activation=mode))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the zero initial state's constant range
        qc.calibrate(prepared, calib, progress=False)
    integer = qc.to_integer(prepared)
    cells = integer.find("qlstm_cell")
    fused = integer.copy()
    run_passes(fused, ["fuse-lstm-layer"])
    assert _ops(fused)["qlstm_layer"] == 2 and "qlstm_cell" not in _ops(fused)
    layer = fused.find("qlstm_layer")[0]
    if mode == "static":
        assert layer.attrs["x_scale"] == tuple(c.attrs["x_scale"] for c in cells[:3])
        assert len(set(layer.attrs["h_zero_point"])) >= 1
    else:
        assert layer.attrs["x_scale"] is None
    assert _same(integer(x), fused(x))
    cm = qc.compile(prepared, tune_kernels=False)
    steps = [s for s in cm.program.steps if s.op == "qlstm_layer"]
    assert len(steps) == 2 and all("C++" in s.impl.kernel for s in steps)
    assert _same(cm(x), integer(x))  # the native layer equals the cells' evaluation
    assert len(prepared.find("qlstm_cell")) == (6 if mode == "dynamic" else 0)  # untouched


def test_compiled_float_layer_equals_compiled_cells(monkeypatch):
    import needle_qc.lower.recurrent as rec

    graph, _, x = _lstm(layers=1, steps=5, n=3)
    run_passes(graph, qc.FLOAT_PIPELINE)
    fused = qc.compile(graph, tune_kernels=False)
    assert [s.op for s in fused.program.steps if "lstm" in s.op] == ["lstm_layer"]
    assert graph.find("lstm_cell") and not graph.find("lstm_layer")  # the caller's graph
    monkeypatch.setattr(rec, "has_layers", lambda g: False)
    cells = qc.compile(graph, tune_kernels=False)
    assert sum(s.op == "lstm_cell" for s in cells.program.steps) == 5
    assert _same(fused(x), cells(x))


def test_chain_whose_c_is_read_outside_stays_cells():
    graph, _, x = _lstm(layers=1)
    run_passes(graph, qc.FLOAT_PIPELINE)
    cell = graph.find("lstm_cell")[0]
    c_item = [u for u in cell.users if u.attrs["index"] == 1][0]
    with graph.inserting_before(graph.find("lstm_cell")[1]):
        extra = graph.call("tanh", [c_item])
    with graph.inserting_before(graph.find("lstm_cell")[1]):
        graph.call("add", [extra, extra])  # dead, but c_1 is read outside the chain
    fused = graph.copy()
    run_passes(fused, ["fuse-lstm-layer"])
    ops = _ops(fused)
    # the chain breaks after step 1: steps 2..3 still read one split's items 1..2, not 0..1
    assert ops["lstm_cell"] == 3 and "lstm_layer" not in ops
    assert _same(graph(x), fused(x))
