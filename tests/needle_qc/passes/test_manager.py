"""Pass manager: registry rules, run_passes results/snapshots/verification, debug output."""

import pytest

from needle_qc.passes import (
    FLOAT_PIPELINE,
    PassError,
    get_pass,
    list_passes,
    register_pass,
    run_passes,
    unregister_pass,
)
from tests.needle_qc.passes.conftest import parse

TEXT = """\
%x = placeholder() : f32[N,2]
%a = relu(%x) : f32[N,2]
%b = relu(%x) : f32[N,2]
%c = add(%a, %b) : f32[N,2]
return %c"""

AFTER_CSE = """\
%x = placeholder() : f32[N,2]
%a = relu(%x) : f32[N,2]
%c = add(%a, %a) : f32[N,2]
return %c"""


@pytest.fixture
def throwaway():
    names = []

    def register(name, fn):
        register_pass(name)(fn)
        names.append(name)
        return fn

    yield register
    for name in names:
        unregister_pass(name)


def test_builtin_passes_are_registered():
    assert set(list_passes()) >= {"dce", "cse", "fold-constants", "fold-batchnorm",
                                  "fuse-activations", "decompose"}
    assert FLOAT_PIPELINE == ["fold-batchnorm", "fuse-activations", "cse", "fuse-lstm-cell", "dce"]


@pytest.mark.parametrize("name", ["Bad_Name", "trailing-", "two--dashes", "", 3, "dce"])
def test_bad_or_duplicate_names_are_rejected(name):
    with pytest.raises(PassError, match="bad pass name|already registered"):
        register_pass(name)


def test_unknown_pass_lists_the_valid_names():
    with pytest.raises(PassError, match=r"unknown pass 'cse2'.*cse, dce"):
        get_pass("cse2")
    with pytest.raises(PassError, match="unknown pass"):
        run_passes(parse(TEXT), ["cse", "nope"])


def test_a_string_instead_of_a_list_is_rejected():
    with pytest.raises(PassError, match=r"write \['cse'\]"):
        run_passes(parse(TEXT), "cse")


def test_result_reports_changes_and_snapshots_per_pass():
    g = parse(TEXT)
    result = run_passes(g, FLOAT_PIPELINE, snapshots=True)
    assert result.changed == {"fold-batchnorm": False, "fuse-activations": False, "cse": True,
                              "fuse-lstm-cell": False, "dce": False}
    assert result.any_changed
    assert str(g) == AFTER_CSE
    assert str(result.snapshots["fold-batchnorm"]) == TEXT
    assert str(result.snapshots["cse"]) == AFTER_CSE
    assert result.snapshots["cse"] is not g
    assert run_passes(g, ["cse"]).snapshots == {}


def test_verify_names_the_pass_that_broke_the_graph(throwaway):
    def breaks(graph):
        graph.node("a").meta["shape"] = ("N", 3)
        return True

    throwaway("breaks-shapes", breaks)
    broke = r"pass 'breaks-shapes' left an invalid graph[\s\S]*%a: meta"
    with pytest.raises(PassError, match=broke):
        run_passes(parse(TEXT), ["cse", "breaks-shapes"])
    run_passes(parse(TEXT), ["breaks-shapes"], verify=False)


def test_a_pass_must_return_a_bool(throwaway):
    throwaway("returns-none", lambda graph: None)
    with pytest.raises(PassError, match="'returns-none' returned None"):
        run_passes(parse(TEXT), ["returns-none"])


def test_debug_1_prints_names_and_changes(monkeypatch, capsys):
    monkeypatch.setenv("NEEDLE_QC_DEBUG", "1")
    run_passes(parse(TEXT), ["cse", "dce"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[needle_qc] pass cse: changed=True (")
    assert lines[1].startswith("[needle_qc] pass dce: changed=False (")


def test_debug_2_also_prints_the_ir(monkeypatch, capsys):
    monkeypatch.setenv("NEEDLE_QC_DEBUG", "2")
    run_passes(parse(TEXT), ["cse"])
    out = capsys.readouterr().out
    assert out.startswith("[needle_qc] pass cse: changed=True")
    assert out.endswith(AFTER_CSE + "\n")


def test_no_debug_prints_nothing(monkeypatch, capsys):
    monkeypatch.delenv("NEEDLE_QC_DEBUG", raising=False)
    run_passes(parse(TEXT), ["cse"])
    assert capsys.readouterr().out == ""


def test_float_pipeline_on_resnet9_keeps_numbers():
    import numpy as np

    import needle as ndl
    import needle.models as models
    from needle_qc.capture.tracer import trace
    from tests.needle_qc.passes.conftest import randomize_batchnorms, run

    np.random.seed(0)
    model = randomize_batchnorms(models.ResNet9(device=ndl.cpu_numpy()))
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    g = trace(model, x)
    before = g.copy()
    result = run_passes(g, FLOAT_PIPELINE)
    assert result.changed["fold-batchnorm"] and result.changed["fuse-activations"]
    assert not g.find(["batch_norm", "relu"])
    fused = [n for n in g.find(["conv2d", "linear"]) if n.attrs.get("activation") == "relu"]
    assert len(fused) == 9  # 8 ConvBN blocks + the hidden Linear
    want, got = run(before, x), run(g, x)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_custom_pass_example_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, str(root / "examples" / "custom_pass.py"),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=root)
    assert done.returncode == 0, done.stderr
    assert "fold-scale-into-linear   changed=True" in done.stdout
    assert '+%fc1 = linear(%x, %fc1.weight, %fc1.bias) {activation="relu"}' in done.stdout
    assert "max |after - eager model| = 0.00e+00" in done.stdout


def test_an_invalid_input_graph_is_reported_before_any_pass():
    g = parse(TEXT)
    g.node("a").meta["shape"] = ("N", 5)
    with pytest.raises(PassError, match="the graph given to run_passes is invalid"):
        run_passes(g, ["cse"])
