"""Pictures: folded weights, rounded qparams, legend, diff in place, dB on nodes, size cap,
every zoo model at every stage, networkx, the no-dot fallback."""

import shutil
import warnings

import numpy as np
import pytest

import needle as ndl
import needle.models as models
from needle_qc.capture.tracer import trace
from needle_qc.ir.graph import Graph
from needle_qc.tools import viz_view
from needle_qc.tools.viz import (
    ADDED,
    CHANGED,
    DTYPE_COLORS,
    MAX_NODES,
    REMOVED,
    build,
    draw,
    sqnr_fill,
    to_dot,
    type_text,
)

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


def chain(ops):
    """x -> ops[0] -> ops[1] -> ... -> output, shapes (N, 4)."""
    g = Graph()
    cur = g.placeholder("x", ("N", 4), "float32")
    for op in ops:
        cur = g.call(op, [cur])
    g.output(cur)
    return g


def node_line(source, name):
    return next(line for line in source.splitlines() if line.strip().startswith(f"{name} "))


# ----------------------------------------------------------------------------- networkx

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


# ----------------------------------------------------------------------------- boxes

@needs_dot
def test_resnet9_svg_and_png(resnet9_graph, tmp_path):
    svg = draw(resnet9_graph, tmp_path / "resnet9.svg")
    text = svg.read_text()
    assert "<svg" in text and "conv2d" in text and "f32[N,16,8,8]" in text
    png = draw(resnet9_graph, tmp_path / "resnet9.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weights_are_lines_in_their_layer_box_unless_params_true():
    source = to_dot(small()).source
    assert "w: f32[4,2]" in node_line(source, "fc")
    assert not any(line.strip().startswith("w ") for line in source.splitlines())
    expanded = to_dot(small(), params=True).source
    assert "note" in node_line(expanded, "w") and "w -> fc" in expanded


def test_qparams_are_rounded_and_fill_follows_dtype():
    g = small()
    g.node("add").meta.update(dtype="uint8", qparams={"s": 0.022093191742897034, "z": 3})
    source = g.to_dot(node_colors={"fc": "#ff0000"}).source
    add = node_line(source, "add")
    assert "u8[N,2] s=0.02209 z=3" in add and "0.0220931917" not in source
    assert DTYPE_COLORS["uint8"] in add
    assert "#ff0000" in node_line(source, "fc")


def test_fused_activation_and_observer_are_visible():
    g = small()
    g.node("fc").attrs["activation"] = "relu"
    with g.inserting_after(g.node("fc")):
        obs = g.call("observer", [g.node("fc")], {"dtype": "uint8", "symmetric": False},
                     name="fc_obs")
    g.node("add").inputs = (obs, obs)
    source = to_dot(g).source
    assert "linear + relu" in node_line(source, "fc")
    observer = node_line(source, "fc_obs")
    assert "hexagon" in observer and "dashed" in observer and "observer -&gt; u8 asym" in observer
    assert "bold" in node_line(source, "fc") and "rounded" in node_line(source, "add")


def test_title_and_legend_are_on_top():
    source = to_dot(small(), title="my model").source
    assert "my model" in source and "fill = output dtype" in source and "hexagon" in source
    assert "float graph" in to_dot(small()).source  # default title: the stage


# ----------------------------------------------------------------------------- diff

def test_compare_marks_changed_in_place_and_lists_removed_on_their_anchor():
    old = small()
    with old.inserting_after(old.node("fc")):
        relu = old.call("relu", [old.node("fc")], name="fc_relu")
    old.node("add").inputs = (relu, relu)
    new = small()
    new.node("fc").op = "qlinear"  # a layer swapped for its quantized kernel, same name
    new.node("fc").meta["dtype"] = "uint8"
    with new.inserting_after(new.node("add")):
        tail = new.call("tanh", [new.node("add")], name="tail")
    new.output_node.inputs = (tail,)
    source = to_dot(new, compare=old).source
    fc = node_line(source, "fc")
    assert CHANGED in fc and "was linear f32[N,2]" in fc
    assert "removed after it: relu" in fc and REMOVED in fc
    assert ADDED in node_line(source, "tail")
    assert not any(line.strip().startswith("fc_relu") for line in source.splitlines())
    assert "added 1" in source and "changed 1" in source and "removed 1: 1 relu" in source


def test_diff_of_a_real_quantization_has_no_ghost_nodes():
    from needle_qc.quantize import QConfig
    from needle_qc.quantize.api import prepare_stages

    g = Graph()
    x = g.placeholder("x", ("N", 4), "float32")
    w = g.param("w", np.ones((4, 3), np.float32))
    g.output(g.call("linear", [g.call("relu", [x]), w], name="fc"))
    x = [np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)]
    stages = prepare_stages(g, QConfig(weight="int8", activation="static"), [x])
    view = build(stages["int8"], compare=g)
    assert all(box.node is not None for box in view.boxes)  # boxes of the new graph only
    assert {box.node.name for box in view.boxes} <= {n.name for n in stages["int8"].nodes}
    statuses = {box.node.name: box.status for box in view.boxes}
    assert statuses["fc"] == "changed"


# ----------------------------------------------------------------------------- error

def test_errors_print_db_on_the_node_and_keep_the_dtype_fill():
    source = to_dot(small(), errors={"fc": 23.44, "add": float("inf")}).source
    fc = node_line(source, "fc")
    assert "SQNR 23.4 dB" in fc and sqnr_fill(23.44) in fc and DTYPE_COLORS["float32"] in fc
    assert "SQNR exact" in node_line(source, "add")
    assert "SQNR vs float" in source
    assert sqnr_fill(45.0) != sqnr_fill(25.0) != sqnr_fill(5.0)
    with pytest.raises(TypeError, match="errors must be a dict"):
        to_dot(small(), errors=[1.0])


# ----------------------------------------------------------------------------- size

def test_best_repeat_finds_the_longest_run_of_identical_blocks():
    sigs = list("xy") + list("abc") * 6 + list("z")
    saved, start, period, reps = viz_view.best_repeat(sigs, 0, len(sigs))
    assert (start, period, reps) == (2, 3, 6) and saved == 4 * 3 - 1
    assert viz_view.best_repeat(list("abcabcabc"), 0, 9) is None  # 3 copies: too few


def test_repeated_blocks_collapse_above_the_cap_with_a_warning(tmp_path):
    g = chain(["relu", "tanh", "sigmoid"] * 30)
    view = build(g, max_nodes=40)
    assert len(view.boxes) <= 40
    repeats = [b for b in view.boxes if b.kind == "repeat"]
    assert len(repeats) == 1 and repeats[0].reps == 28 and repeats[0].period == 3
    assert "28 of 30 repeats of a 3-node block" in view.notes[0]
    assert len(build(g, max_nodes=None).boxes) == 92  # the cap off: every node drawn
    with pytest.warns(UserWarning, match=r"over max_nodes=40: 28 of 30 repeats"):
        written = draw(g, tmp_path / "g.dot", max_nodes=40)
    assert "x 28 more copies of the 3-node block above" in written.read_text()


def test_a_graph_without_repeats_is_cut_in_the_middle():
    thue_morse = ["relu" if bin(i).count("1") % 2 else "tanh" for i in range(120)]  # no cubes
    g = chain(thue_morse)
    view = build(g, max_nodes=30)
    assert len(view.boxes) == 30
    cut = [b for b in view.boxes if b.kind == "elided"]
    assert len(cut) == 1 and len(cut[0].members) == 122 - 29
    assert view.boxes[0].node.name == "x" and view.boxes[-1].node.name == "output"
    assert "93 nodes in the middle not drawn" in view.notes[-1]


@pytest.fixture(scope="module")
def zoo_stages():
    import needle_qc.tools.zoo as zoo
    from needle_qc.quantize.api import prepare_stages
    from needle_qc.tools.report import SCHEMES, trace_model

    def stages(name):
        graph = trace_model(name, zoo.load_pretrained(name))
        size = 16 if zoo.get(name).task == "language_model" else 32
        batches = [zoo.example_input(name, size, seed) for seed in range(2)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant-input observers of the LMs
            return prepare_stages(graph, SCHEMES["int8-static"].qconfig(), batches)
    return stages


@pytest.mark.parametrize("name", ["mlp", "small_cnn", "resnet9", "lstm_lm", "transformer_lm"])
def test_every_zoo_model_draws_at_every_stage(zoo_stages, name, tmp_path):
    """Each stage of each zoo model is drawn (PNG, or DOT source without graphviz) within the
    box cap that keeps graphviz to seconds (lstm_lm's 516-node traced graph included)."""
    stages = zoo_stages(name)
    for stage in ("float", "observed", "qdq", "int8"):
        view = build(stages[stage])
        assert 0 < len(view.boxes) <= MAX_NODES, (name, stage, len(view.boxes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the cap's note, or "dot is not on PATH"
            written = draw(stages[stage], tmp_path / f"{name}_{stage}.png",
                           compare=stages["float"] if stage == "int8" else None)
        assert written.stat().st_size > 0, (name, stage)
    if name == "lstm_lm":  # traced: 20 unrolled steps collapse; int8: 20 fused cells, whole
        assert len(stages["float"].nodes) > 500 and any(
            b.kind == "repeat" for b in build(stages["float"]).boxes)
        int8 = build(stages["int8"])
        assert sum(b.node.op == "qlstm_cell" for b in int8.boxes if b.kind == "node") == 20
        assert not int8.notes and "(f32[N,32], f32[N,32])" in type_text(
            stages["int8"].find("qlstm_cell")[0])


# ----------------------------------------------------------------------------- files

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
