"""compare(): local vs propagated per-node error, culprit attribution, deviation metrics."""
import math

import numpy as np
import pytest

import needle as ndl
import needle_qc as qc
from needle.models import MLP
from needle_qc.pipeline import compile as compile_graph
from needle_qc.quantize.api import prepare_stages
from needle_qc.tools.compare import compare, deviation, sqnr_color


def _mlp_and_data(seed=0):
    np.random.seed(seed)
    model = MLP(16, (32, 32), 5, device=ndl.cpu())
    rng = np.random.default_rng(seed)
    batches = [rng.standard_normal((32, 16)).astype(np.float32) for _ in range(4)]
    return model, batches


def _stages(cfg, seed=0):
    model, batches = _mlp_and_data(seed)
    graph = qc.trace(model, batches[0])
    return graph, prepare_stages(graph, cfg, batches=batches), batches


# ----------------------------------------------------------------------------- deviation

def test_deviation_of_identical_outputs():
    ref = np.arange(12, dtype=np.float32).reshape(3, 4)
    d = deviation(ref, ref.copy())
    assert d == {"max_abs": 0.0, "rel_l2": 0.0, "sqnr_db": math.inf, "cosine": 1.0,
                 "top1_agreement": 1.0}


def test_deviation_known_values():
    ref = np.array([[3.0, 4.0]], np.float32)
    out = np.array([[3.0, 4.5]], np.float32)
    d = deviation(ref, out)
    assert d["sqnr_db"] == pytest.approx(20.0)  # 25 / 0.25
    assert d["rel_l2"] == pytest.approx(0.1)
    assert d["max_abs"] == pytest.approx(0.5)
    assert d["cosine"] == pytest.approx((9 + 18) / (5 * math.sqrt(9 + 20.25)))
    assert d["top1_agreement"] == 1.0
    assert deviation(ref, np.array([[4.0, 3.0]], np.float32))["top1_agreement"] == 0.0


def test_deviation_accumulates_lists_of_batches_and_takes_tensors():
    a = [np.ones((2, 3), np.float32), 2 * np.ones((1, 3), np.float32)]
    b = [ndl.Tensor(x) for x in a]
    assert deviation(a, b)["sqnr_db"] == math.inf
    assert deviation(np.ones(3), np.ones(3))["top1_agreement"] is None


def test_deviation_rejects_bad_input():
    with pytest.raises(ValueError, match="reference shape"):
        deviation(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN/Inf"):
        deviation(np.ones(2), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="equal length"):
        deviation([np.ones(2)], [np.ones(2), np.ones(2)])


# ----------------------------------------------------------------------------- compare

def test_static_int8_rows_local_and_propagated():
    graph, st, batches = _stages(qc.QConfig(weight="int8", activation="static"))
    report = compare(graph, st["int8"], batches[:2])
    names = [r.name for r in report.rows]
    assert [r.op for r in report.rows if r.op == "qlinear"] == ["qlinear"] * 3
    first = report.rows[names.index("layers.modules.1")]
    # The first layer's input is the graph input: local and propagated errors coincide.
    assert first.local["sqnr_db"] == pytest.approx(first.propagated["sqnr_db"])
    for row in report.rows:
        assert row.propagated["sqnr_db"] > 25 and row.local["sqnr_db"] > 25, row
    assert report.output["sqnr_db"] == pytest.approx(report.rows[-1].propagated["sqnr_db"],
                                                     abs=0.5)
    assert report.batches == 2 and report.unmatched == []


def test_a_corrupted_layer_is_the_worst_local_culprit():
    graph, st, batches = _stages(qc.QConfig(weight="int8", activation="static"))
    bad = st["int8"]
    key = bad.node("layers.modules.3").inputs[1].attrs["tensor"]
    bad.tensors[key] = (-bad.tensors[key].astype(np.int16)).clip(-127, 127).astype(np.int8)
    report = compare(graph, bad, batches[:2])
    assert report.worst(1)[0].name == "layers.modules.3"
    rows = {r.name: r for r in report.rows}
    # Downstream, the propagated error is bad but the local error stays small.
    assert rows["layers.modules.5"].propagated["sqnr_db"] < 5
    assert rows["layers.modules.5"].local["sqnr_db"] > 25
    assert rows["layers.modules.3"].local["sqnr_db"] < 5
    assert report.worst(1, by="propagated")[0].propagated["sqnr_db"] < 5


def test_qdq_graph_attributes_rounding_to_quantize_nodes():
    graph, st, batches = _stages(qc.QConfig(weight="int8", activation="static"))
    report = compare(graph, st["qdq"], batches[:1])
    ops = {r.op for r in report.rows}
    assert {"linear", "quantize"} <= ops
    assert all(r.local is not None for r in report.rows)


@pytest.mark.parametrize("cfg", [qc.QConfig(weight="int8", activation="dynamic"),
                                 qc.QConfig(weight="int4"), qc.QConfig(weight="fp16")])
def test_split_relu_of_dynamic_and_weight_only_layers_is_matched(cfg):
    graph, st, batches = _stages(cfg)
    report = compare(graph, st["int8"], batches[:1])
    names = [r.name for r in report.rows]
    assert "layers.modules.1_relu" in names and "layers.modules.3_relu" in names
    assert all(r.local is not None for r in report.rows)
    # The pre-relu layer values have no float twin in the fused float graph.
    assert "layers.modules.1" in report.unmatched


def test_fp16_is_far_more_accurate_than_int4():
    graph, fp16, batches = _stages(qc.QConfig(weight="fp16"))
    _, int4, _ = _stages(qc.QConfig(weight="int4"))
    a = compare(graph, fp16["int8"], batches[:1]).output["sqnr_db"]
    b = compare(graph, int4["int8"], batches[:1]).output["sqnr_db"]
    assert a > 60 and a > b + 30


def test_compiled_model_is_compared_on_its_graph_and_output():
    graph, st, batches = _stages(qc.QConfig(weight="int8", activation="static"))
    cm = compile_graph(st["observed"], target="reference")
    report = compare(graph, cm, batches[:1])
    assert any(r.op == "qlinear" for r in report.rows)
    assert report.output["sqnr_db"] > 25


def test_report_text_and_colors(tmp_path):
    graph, st, batches = _stages(qc.QConfig(weight="int8", activation="static"))
    report = compare(graph, st["int8"], batches[:1])
    text = str(report).splitlines()
    assert text[1].split()[:4] == ["node", "op", "local", "dB"]
    assert text[-1].startswith("output vs float32: SQNR")
    colors = report.node_colors()
    assert set(colors) == {r.name for r in report.rows}
    assert set(colors.values()) <= {"palegreen", "khaki", "orange", "tomato", "lightgray"}
    dot = tmp_path / "g.dot"
    qc.draw(st["int8"], str(dot), node_colors=colors)
    assert "palegreen" in dot.read_text()


def test_sqnr_color_bands():
    assert [sqnr_color(v) for v in (math.inf, 45, 35, 25, 5, float("nan"))] == [
        "palegreen", "palegreen", "khaki", "orange", "tomato", "lightgray"]


def test_observed_graph_is_not_modified_by_compare():
    graph, st, batches = _stages(qc.QConfig(weight="int8", activation="static"))
    before = {k: v.n_updates for k, v in st["observed"].observers.items()}
    compare(graph, st["observed"], batches[:1])
    assert {k: v.n_updates for k, v in st["observed"].observers.items()} == before


def test_compare_errors():
    graph, st, batches = _stages(qc.QConfig(weight="int8", activation="static"))
    with pytest.raises(ValueError, match="`batches` was empty"):
        compare(graph, st["int8"], [])
    with pytest.raises(TypeError, match="must be a Graph or have a `.graph`"):
        compare(graph, object(), batches)
    with pytest.raises(TypeError, match="float_graph must be a Graph"):
        compare("g", st["int8"], batches)
    report = compare(graph, st["int8"], batches[:1])
    with pytest.raises(ValueError, match="by must be"):
        report.worst(2, by="median")
