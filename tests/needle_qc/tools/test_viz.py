"""Pictures and networkx: attributes, SVG/PNG for ResNet9, diff colors, the no-dot fallback."""

import shutil
import warnings

import numpy as np
import pytest

import needle as ndl
import needle.models as models
from needle_qc.capture.tracer import trace
from needle_qc.ir.graph import Graph
from needle_qc.tools.viz import ADDED, CHANGED, DTYPE_COLORS, REMOVED, draw, to_dot

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="graphviz 'dot' binary not installed")


@pytest.fixture(scope="module")
def resnet9_graph():
    np.random.seed(0)
    x = ndl.Tensor(np.zeros((2, 3, 32, 32), np.float32), device=ndl.cpu_numpy())
    return trace(models.ResNet9(device=ndl.cpu_numpy()), x)


def small():
    g = Graph()
    x = g.placeholder("x", ("N", 4), "float32")
    w = g.param("w", np.ones((4, 2), np.float32), module_path="fc")
    fc = g.call("linear", [x, w], name="fc")
    fc.meta["module_path"] = "fc"
    g.output(g.call("add", [fc, fc]))
    return g


def test_networkx_nodes_and_edges_carry_ir_attributes():
    nxg = small().to_networkx()
    assert list(nxg.nodes) == ["x", "w", "fc", "add", "output"]
    fc = nxg.nodes["fc"]
    assert (fc["op"], fc["shape"], fc["dtype"], fc["attrs"], fc["module_path"]) == \
        ("linear", ("N", 2), "float32", {}, "fc")
    assert nxg.edges["w", "fc"]["index"] == 1
    assert nxg.edges["fc", "add"]["indices"] == (0, 1)


def test_networkx_of_a_traced_model_is_a_dag(resnet9_graph):
    import networkx as nx

    nxg = resnet9_graph.to_networkx()
    assert nx.is_directed_acyclic_graph(nxg)
    assert nxg.number_of_nodes() == len(resnet9_graph)
    convs = [n for n, data in nxg.nodes(data=True) if data["op"] == "conv2d"]
    assert len(convs) == 8


@needs_dot
def test_resnet9_svg_and_png(resnet9_graph, tmp_path):
    svg = draw(resnet9_graph, tmp_path / "resnet9.svg")
    text = svg.read_text()
    assert "<svg" in text and "conv2d" in text and "f32[N,16,8,8]" in text
    png = draw(resnet9_graph, tmp_path / "resnet9.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_labels_and_colors_follow_dtype_and_qparams():
    g = small()
    g.node("add").meta.update(dtype="uint8", qparams={"s": 0.5, "z": 3})
    g.node("add").op = "add"
    source = g.to_dot(node_colors={"fc": "#ff0000"}).source
    assert DTYPE_COLORS["uint8"] in source and "u8[N,2]{s=0.5, z=3}" in source
    assert "#ff0000" in source and DTYPE_COLORS["float32"] in source


def test_compare_marks_added_changed_and_removed_nodes():
    old = small()
    new = old.copy()
    fc = new.node("fc")
    with new.inserting_after(fc):
        relu = new.call("relu", [fc])
    new.node("add").inputs = (relu, relu)
    source = to_dot(new, compare=old).source
    lines = source.splitlines()
    assert any("relu" in line and ADDED in line for line in lines)
    assert any(line.strip().startswith("add ") and CHANGED in line for line in lines)
    newer = new.copy()
    newer.node("add").inputs = (newer.node("fc"), newer.node("fc"))
    newer.erase(newer.node("relu"))
    source = to_dot(newer, compare=new).source
    ghost = [line for line in source.splitlines() if line.strip().startswith("relu ")]
    assert ghost and "dashed" in ghost[0] and REMOVED in ghost[0]


def test_without_dot_writes_source_and_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = draw(small(), tmp_path / "g.svg")
    assert written == tmp_path / "g.dot" and "digraph" in written.read_text()
    assert any("'dot' is not on PATH" in str(w.message) for w in caught)
    assert not (tmp_path / "g.svg").exists()


def test_dot_suffix_and_bad_suffix(tmp_path):
    assert "digraph" in draw(small(), tmp_path / "g.dot").read_text()
    with pytest.raises(ValueError, match=r"unknown file type '.jpg'"):
        draw(small(), tmp_path / "g.jpg")
