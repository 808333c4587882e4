"""A weight param shared by many layers (the unrolled LSTM cell) is quantized and packed once.

Under int8 dynamic/static schemes the 20 steps are fused ``qlstm_cell`` nodes reading W_ih and
W_hh (inputs 3 and 5); under weight-only schemes the cell is decomposed and its two matmuls
are linear layers, as before the fusion."""

import numpy as np
import pytest

import needle_qc as qc
from needle_qc.capture.tracer import trace
from needle_qc.quantize.passes import dynamic as dynamic_pass
from needle_qc.quantize.passes import lstm as lstm_pass
from needle_qc.quantize.passes import weight_only as weight_only_pass
from needle_qc.tools import zoo

SCHEMES = {
    "fp16": (qc.QConfig(weight="fp16", activation=None), ("_fp16",), 2.0),
    "int8": (qc.QConfig(weight="int8", activation=None), ("_q",), 1.0),
    "int4": (qc.QConfig(weight="int4", activation=None, weight_granularity="per_group",
                        group_size=16), ("_q",), 0.5),
    "dyn-int8": (qc.QConfig(weight="int8", activation="dynamic"), ("_q",), 1.0),
}
WEIGHTS = ("seq_model.lstm_cells.0.W_ih", "seq_model.lstm_cells.0.W_hh", "linear.weight")


@pytest.fixture(scope="module")
def lstm():
    model = zoo.load_pretrained("lstm_lm")
    x = zoo.example_input("lstm_lm", batch=2, seed=0)
    return trace(model, x, batch_dims=1), x


def _unique_weight_count(graph):
    return sum(graph.tensors[name].size for name in WEIGHTS)


def _quantized_bytes(graph, suffixes):
    return sum(a.nbytes for k, a in graph.tensors.items()
               if k.startswith(WEIGHTS) and k.endswith(suffixes))


def _per_use(monkeypatch):
    """The old behaviour: one quantized copy per use of a weight."""
    for mod in (weight_only_pass, dynamic_pass, lstm_pass):
        monkeypatch.setattr(mod, "shared_weight", lambda cache, w, cfg, make: make())


@pytest.mark.parametrize("name", list(SCHEMES))
def test_shared_weight_quantized_once(lstm, name):
    graph, _ = lstm
    cfg, suffixes, bytes_per_weight = SCHEMES[name]
    q = qc.quantize_pass(graph, cfg)
    assert _quantized_bytes(q, suffixes) == _unique_weight_count(graph) * bytes_per_weight
    uses = _weight_uses(q)
    assert len(uses) == 41  # 2 cell products x 20 steps + the output layer
    assert len(set(uses)) == 3


def _weight_uses(graph):
    """The weight param read by each product: a layer's input 1, a fused cell's 3 and 5."""
    uses = []
    for n in graph.nodes:
        if n.op in ("linear_weight_only", "linear_dynamic", "qlinear"):
            uses.append(n.inputs[1].name)
        elif n.op in ("qlstm_cell", "qlstm_layer"):
            uses += [n.inputs[3].name, n.inputs[5].name]
    return uses


@pytest.mark.parametrize("name", list(SCHEMES))
def test_shared_weight_outputs_unchanged(lstm, name, monkeypatch):
    graph, x = lstm
    cfg = SCHEMES[name][0]
    shared = qc.compile(qc.quantize_pass(graph, cfg), target="reference", tune_kernels=False)
    want_shared = shared(x)
    _per_use(monkeypatch)
    copies = qc.quantize_pass(graph, cfg)
    copied = [k for k in copies.tensors if k.startswith(WEIGHTS) and k not in WEIGHTS]
    assert len(copied) > 40  # the monkeypatch really makes one copy per use
    want = qc.compile(copies, target="reference", tune_kernels=False)(x)
    np.testing.assert_array_equal(np.asarray(want_shared), np.asarray(want))


def _report_rows(graph):
    cm = qc.compile(graph, tune_kernels=False)
    return cm.memory_report().weights


@pytest.mark.parametrize("name", list(SCHEMES))
def test_memory_report_counts_shared_weight_once(lstm, name):
    graph, _ = lstm
    cfg = SCHEMES[name][0]
    rows = _report_rows(qc.quantize_pass(graph, cfg))
    logical = {"fp16": "float16"}.get(name, "int4" if name == "int4" else "int8")
    assert rows[logical]["weights"] == _unique_weight_count(graph)
    # the float-kept embedding is reported too, once; the LSTM biases as qparam bytes: of the
    # float adds of a decomposed cell, or of the fused int8 cell (with its weight scales)
    lstm_biases = sum(graph.tensors[k].size for k in graph.tensors if "lstm_cells.0.bias" in k)
    assert rows["float32"]["weights"] == graph.tensors["embedding.weight"].size
    if name == "dyn-int8":
        scales = 2 * 4 * 128 + 4 * graph.tensors["linear.weight"].shape[1]  # per column
        bias = 4 * graph.tensors["linear.bias"].size
        assert rows["int8"]["qparam_bytes"] == 4 * lstm_biases + scales + bias
    else:
        assert rows["float32"]["qparam_bytes"] == 4 * lstm_biases


def test_fp32_memory_report_counts_every_param_once(lstm):
    graph, _ = lstm
    rows = _report_rows(graph)
    params = [p.numpy() for p in zoo.load_pretrained("lstm_lm").parameters()]
    vectors = sum(p.size for p in params if p.size == max(p.shape))  # biases: qparam bytes
    assert list(rows) == ["float32"]
    assert rows["float32"]["weights"] == sum(p.size for p in params) - vectors
    assert rows["float32"]["measured_bytes"] == 4 * rows["float32"]["weights"]
    assert rows["float32"]["qparam_bytes"] == 4 * vectors


def test_static_int8_shares_weight_params_and_packs_once(lstm):
    graph, x = lstm
    prepared = qc.quantize_pass(graph, qc.QConfig(weight="int8", activation="static"))
    cal = [zoo.example_input("lstm_lm", batch=2, seed=s) for s in range(2)]
    cm = qc.compile(prepared, calibration=cal, tune_kernels=False, force_int8=True)
    uses = _weight_uses(cm.graph)  # the compiled graph runs the 20 steps as one qlstm_layer
    assert len(uses) == 3 and len(set(uses)) == 3
    assert len(cm.graph.find("qlstm_layer")) == 1 and len(cm.graph.find("qlinear")) == 1
    assert cm.memory_report().weights["int8"]["weights"] == _unique_weight_count(graph)
    assert np.isfinite(np.asarray(cm(x))).all()
