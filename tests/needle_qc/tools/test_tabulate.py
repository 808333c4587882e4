"""tabulate / summarize (the tabular graph view), __version__, needle-qc --version / inspect."""
import functools
import os
import re

import pytest

import needle_qc as qc
from needle_qc.tools.cli import main
from needle_qc.tools.tabulate import summarize, tabulate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


@functools.cache
def _graph():
    return qc.trace(qc.zoo.load_pretrained("small_cnn"), qc.zoo.example_input("small_cnn", 2))


@functools.cache
def _prepared(preset):
    prepared = qc.quantize_pass(_graph(), qc.QConfig.preset(preset))
    qc.calibrate(prepared, [qc.zoo.example_input("small_cnn", 4, seed=2)], progress=False)
    return prepared


def _rows(table):
    return {line.split()[0]: line for line in table.splitlines()[2:]}


def test_one_row_per_node_params_summed_up():
    table = tabulate(_graph())
    header = table.splitlines()[0].split()
    assert header == ["name", "op", "inputs", "type", "quantization", "module"]
    rows = _rows(table)
    assert "%layers.modules.0.conv.weight" not in rows
    conv = rows["%layers.modules.0.conv"]
    assert "conv2d" in conv and "%x, +2 params" in conv and "f32[N,16,28,28]" in conv
    everything = _rows(tabulate(_graph(), params=True))
    assert "%layers.modules.0.conv.weight" in everything
    assert len(everything) == len(_graph().nodes)


def test_qparams_rounded_and_weight_formats_shown():
    qdq = _rows(tabulate(qc.convert(_prepared("int8-static"))))
    assert re.search(r"s=0\.003922 z=0\b", qdq["%x_q"])  # 1/255 to 4 significant digits
    assert "{s=" not in "".join(qdq.values())  # the type column leaves qparams out
    integer = _rows(tabulate(qc.compile(_prepared("int8-static"))))
    assert "qconv2d" in integer["%layers.modules.0.conv"]
    assert "w int8" in integer["%layers.modules.0.conv"]
    int4 = _rows(tabulate(qc.quantize_pass(_graph(), qc.QConfig.preset("int4-g32"))))
    assert "w int4 g32" in int4["%layers.modules.4"]


def test_summarize_compiled_model():
    lines = summarize(qc.compile(_prepared("int8-static")))
    assert lines[0].startswith("stage: int8")
    assert any(line.startswith("ops: ") and "qconv2d x3" in line for line in lines)
    assert any(line.startswith("activation qparams: 6 tensors") for line in lines)
    assert any("int8" in line for line in lines if line.startswith("weights: "))


def test_version_matches_pyproject(capsys):
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        version = re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
    from needle_qc._version import FALLBACK, __version__

    assert __version__ == version == FALLBACK == qc.__version__
    assert qc.tabulate is tabulate
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"needle-qc {version}"


def test_cli_inspect(tmp_path, capsys):
    model_path, graph_path = tmp_path / "m.nqc", tmp_path / "g.nqc"
    qc.compile(_prepared("int8-static")).save(str(model_path))
    qc.save(_graph(), str(graph_path))
    assert main(["inspect", str(model_path), "--nodes"]) == 0
    out = capsys.readouterr().out
    assert "compiled model" in out and "stage: int8" in out and "qconv2d" in out
    assert "peak activations" in out  # the memory report
    assert main(["inspect", str(graph_path)]) == 0
    assert "graph" in capsys.readouterr().out
    bad = tmp_path / "bad.nqc"
    bad.write_bytes(b"not a model")
    assert main(["inspect", str(bad)]) == 2
    assert main(["inspect", str(tmp_path / "missing.nqc")]) == 2
    assert "file not found" in capsys.readouterr().err
