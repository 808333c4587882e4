"""The needle-qc command: --help everywhere, one-line errors with exit 2, each subcommand runs."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from needle_qc.tools import cli, zoo

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MLP_CKPT = os.path.join(zoo.CHECKPOINT_DIR, "mlp.npz")


def _fails_with(capsys, argv, pattern):
    """Run main(argv); assert exit 2, one stderr line matching ``pattern``, no traceback."""
    import re

    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("argv", [[], ["demo"], ["report"], ["draw"], ["quantize"]])
def test_help_everywhere(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv + ["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: needle-qc") and ("--seed" in out or argv == [])


def test_no_command_is_a_usage_error(capsys):
    _fails_with(capsys, [], r"^needle-qc: error: .*required: COMMAND")


@pytest.mark.parametrize("argv", [
    ["draw", "vgg", "--out", "g.svg"],
    ["quantize", MLP_CKPT, "--model", "vgg", "--data-type", "int8", "--out", "q.nqc"],
    ["report", "--models", "mlp", "vgg", "--quick"],
])
def test_unknown_model_lists_the_zoo(capsys, argv):
    _fails_with(capsys, argv, r"unknown model 'vgg'; known: mlp, small_cnn, resnet9, lstm_lm")


def test_unimportable_user_model(capsys):
    _fails_with(capsys, ["draw", "no_such_pkg_xyz:build", "--out", "g.svg"],
                r"cannot import 'no_such_pkg_xyz'")


def test_missing_checkpoint_file(capsys, tmp_path):
    missing = str(tmp_path / "nope.npz")
    _fails_with(capsys, ["quantize", missing, "--model", "mlp", "--data-type", "int8", "--out",
                         str(tmp_path / "q.nqc")], r"checkpoint not found: .*nope\.npz")


def test_wrong_data_type_lists_the_valid_ones(capsys):
    _fails_with(capsys, ["quantize", MLP_CKPT, "--model", "mlp", "--data-type", "int3",
                         "--out", "q.nqc"],
                r"invalid choice: 'int3' \(choose from 'int8', 'uint8', 'int4', 'fp16', 'bf16'\)")


def test_invalid_combination_names_the_rule(capsys):
    _fails_with(capsys, ["quantize", MLP_CKPT, "--model", "mlp", "--data-type", "fp16",
                         "--activation", "static", "--out", "q.nqc"], r"weight-only")


def test_checkpoint_of_another_model(capsys, tmp_path):
    _fails_with(capsys, ["quantize", MLP_CKPT, "--model", "small_cnn", "--data-type", "int8",
                         "--out", str(tmp_path / "q.nqc")],
                r"holds zoo model 'mlp', not 'small_cnn'")


def test_checkpoint_that_does_not_fit(capsys, tmp_path):
    path = str(tmp_path / "other.npz")
    np.savez(path, weight=np.zeros((3, 3), np.float32))  # a state dict without a zoo record
    _fails_with(capsys, ["draw", "mlp", "--checkpoint", path, "--out", str(tmp_path / "g.dot")],
                r"does not fit 'mlp'")


def test_bad_draw_suffix_and_unknown_scheme(capsys):
    _fails_with(capsys, ["draw", "mlp", "--out", "g.jpeg"], r"unknown file type; use one of")
    _fails_with(capsys, ["report", "--schemes", "int3", "--quick"],
                r"unknown scheme\(s\) int3; valid: fp32, fp16")


def test_bad_integer_option(capsys):
    _fails_with(capsys, ["draw", "mlp", "--out", "g.dot", "--calibration-batches", "0"],
                r"--calibration-batches: 0 must be >= 1")


def test_python_dash_m_prints_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "-m", "needle_qc", "draw", "vgg", "--out", "g.svg"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("needle-qc draw: error: zoo: unknown model 'vgg'; known: "
                                   "mlp, small_cnn, resnet9, lstm_lm, transformer_lm "
                                   "(or 'package.module:factory')")


@pytest.mark.parametrize("stage", ["float", "observed", "qdq", "int8"])
def test_draw_every_stage(capsys, tmp_path, stage):
    out = tmp_path / f"g_{stage}.dot"
    assert cli.main(["draw", "mlp", "--stage", stage, "--out", str(out), "--no-progress",
                     "--calibration-batches", "1"]) == 0
    text = out.read_text()
    assert text.startswith("digraph") and ("qlinear" in text) == (stage == "int8")
    assert f"stage {stage}" in capsys.readouterr().out


def test_draw_a_large_graph_against_another_stage(capsys, tmp_path):
    """lstm_lm under int4 weight-only: its fused LSTM cell is decomposed again (a 518-node
    graph), repeated time steps collapse (a note says so) and the diff against the float
    graph is drawn in place. Under int8 the 20 fused cells are drawn whole, no note."""
    out = tmp_path / "lstm.dot"
    assert cli.main(["draw", "lstm_lm", "--stage", "int8", "--compare", "float", "--data-type",
                     "int4", "--out", str(out), "--no-progress"]) == 0
    text = out.read_text()
    assert "lstm_lm, stage int8 vs float" in text and "more copies of the" in text
    assert "was linear" in text and "border = vs older graph" in text
    assert "note: draw: 518 nodes is over max_nodes=150" in capsys.readouterr().err
    assert cli.main(["draw", "lstm_lm", "--stage", "int8", "--out", str(out), "--no-progress",
                     "--calibration-batches", "1"]) == 0
    assert "note:" not in capsys.readouterr().err
    assert out.read_text().count("<B>qlstm_cell</B>") == 20


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' not installed")
def test_draw_svg(tmp_path):
    out = tmp_path / "g.svg"
    assert cli.main(["draw", "mlp", "--out", str(out), "--no-progress"]) == 0
    assert out.read_text().lstrip().startswith("<?xml")


def test_quantize_writes_a_loadable_model(capsys, tmp_path):
    from needle_qc.runtime import serialize

    out = tmp_path / "q.nqc"
    assert cli.main(["quantize", MLP_CKPT, "--model", "mlp", "--data-type", "int8",
                     "--activation", "dynamic", "--out", str(out), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    cm = serialize.load(str(out))
    x = zoo.batches("mlp", "heldout", 32, limit=1)[0][0]
    assert cm(x).shape == (32, 10)


def test_report_quick_writes_markdown_and_plots(capsys, tmp_path):
    out = tmp_path / "rep"
    code = cli.main(["report", "--models", "mlp", "--schemes", "fp32", "int8-static", "--quick",
                     "--out", str(out), "--no-progress"])
    assert code == 0
    assert "int8-static" in capsys.readouterr().out
    assert {"REPORT.md", "report.json", "pareto_mlp.png", "layers_mlp.png",
            "latency.png"} <= set(os.listdir(out))


@pytest.mark.slow
def test_demo_prints_one_table_with_every_scheme(capsys, tmp_path):
    from needle_qc.tools.report import SCHEMES

    assert cli.main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("== small_cnn") == 1
    for scheme in SCHEMES:
        assert f"\n{scheme} " in out
    assert (tmp_path / "REPORT.md").exists()
    assert any(name.startswith("graph_int8") for name in os.listdir(tmp_path))


def _readme_block(heading):
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index(heading):]
    start = section.index("```python\n") + len("```python\n")
    return section[start: section.index("```", start)]


def test_readme_starts_with_the_two_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    first = text[text.index("```") + 3: text.index("```", text.index("```") + 3)].strip()
    assert [line.split("#")[0].strip() for line in first.splitlines()] == ["make demo",
                                                                           "make test"]


def test_readme_quick_start_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = _readme_block("## Quick start")
    assert 15 <= len(code.strip().splitlines()) <= 22
    exec(compile(code, "README.md quick start", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "qconv2d" in out and "sqnr_db" in out
    assert (tmp_path / "small_cnn.nqc").exists()


USER_MODULE = '''
from needle import nn
from needle_qc.tools.zoo import InputSpec

ZOO_INPUT = InputSpec(("N", 6))


def build():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def no_spec():
    return nn.Linear(6, 3)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = f"h12_user_models_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI adds the cwd; undo that after
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_user_model_by_module_and_factory(user_module, tmp_path, capsys):
    out = tmp_path / "user.dot"
    assert cli.main(["draw", f"{user_module}:build", "--stage", "int8", "--out", str(out),
                     "--no-progress", "--calibration-batches", "1"]) == 0
    assert "qlinear" in out.read_text()


def test_user_model_without_input_spec(user_module, monkeypatch, capsys):
    import importlib

    module = importlib.import_module(user_module)
    monkeypatch.delattr(module, "ZOO_INPUT")
    _fails_with(capsys, ["draw", f"{user_module}:no_spec", "--out", "g.dot"],
                r"cannot trace .*no_spec.*declares no ZOO_INPUT")


def test_cuda_without_a_gpu_is_a_usage_error(capsys):
    import needle as ndl

    if ndl.cuda().enabled():
        pytest.skip("a GPU is present: --device cuda is valid here")
    _fails_with(capsys, ["demo", "--device", "cuda"], r"device 'cuda' is not available")


# ----------------------------------------------------------------------------- issue 14

def _quantize(*extra, out="q.nqc", ckpt=MLP_CKPT, model="mlp"):
    return ["quantize", str(ckpt), "--model", model, "--data-type", "int8", "--out", str(out),
            "--no-progress", *extra]


def test_int4_defaults_to_weight_only(capsys, tmp_path):
    out = tmp_path / "q4.nqc"
    argv = _quantize(out=out)
    argv[argv.index("int8")] = "int4"
    assert cli.main(argv) == 0
    assert "activation none" in capsys.readouterr().out and out.is_file()


def test_int4_with_static_activations_is_w4a8(capsys, tmp_path):
    out = tmp_path / "q.nqc"
    argv = _quantize("--activation", "static", out=out)
    argv[argv.index("int8")] = "int4"
    assert cli.main(argv) == 0
    assert "weight int4, activation static" in capsys.readouterr().out and out.is_file()


def test_fp16_with_static_activations_is_one_line(capsys, tmp_path):
    argv = _quantize("--activation", "static", out=tmp_path / "q.nqc")
    argv[argv.index("int8")] = "fp16"
    _fails_with(capsys, argv, r"weight-only.*static")


@pytest.mark.parametrize("where", ["directory", "missing folder", "proc", "dev full"])
def test_unwritable_out_is_refused_before_any_work(capsys, tmp_path, monkeypatch, where):
    out = {"directory": tmp_path, "missing folder": tmp_path / "nonexistent" / "a.nqc",
           "proc": "/proc/needle_qc_test.nqc", "dev full": "/dev/full"}[where]
    if where in ("proc", "dev full") and not os.path.exists(os.path.dirname(str(out))):
        pytest.skip(f"no {out} on this system")
    monkeypatch.setattr(cli, "_load", lambda *a: pytest.fail("work started before --out check"))
    _fails_with(capsys, _quantize(out=out), r"--out .*(directory|does not exist|cannot write"
                                            r"|not a regular file)")
    assert not (tmp_path / "nonexistent").exists()  # no silent directory creation


def test_draw_does_not_create_missing_folders(capsys, tmp_path):
    _fails_with(capsys, ["draw", "mlp", "--out", str(tmp_path / "new" / "g.dot")],
                r"folder .*new does not exist")
    assert not (tmp_path / "new").exists()


def test_checkpoint_with_nan_weights(capsys, tmp_path):
    model = zoo.build("mlp")
    zoo.load_checkpoint(model, MLP_CKPT, "mlp")
    first = next(iter(model.state_dict()))
    state = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in model.state_dict().items()}
    state[first] = state[first].copy()
    state[first].flat[0] = np.nan
    model.load_state_dict(state)
    path = tmp_path / "nan.npz"
    zoo.save_checkpoint(model, "mlp", str(path))
    _fails_with(capsys, _quantize(ckpt=path, out=tmp_path / "q.nqc"),
                rf"{first} holds 1 NaN/Inf values")


def test_directory_as_checkpoint(capsys, tmp_path):
    _fails_with(capsys, _quantize(ckpt=tmp_path, out=tmp_path / "q.nqc"),
                r"checkpoint .* is a directory; expected a \.npz file")


def test_garbage_checkpoint(capsys, tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip file at all")
    _fails_with(capsys, _quantize(ckpt=path, out=tmp_path / "q.nqc"),
                r"junk\.npz.* not a readable")


def test_factory_that_raises(capsys, tmp_path, monkeypatch):
    name = f"h14_raising_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text("def build():\n    raise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.syspath_prepend(str(tmp_path))
    np.savez(tmp_path / "w.npz", weight=np.zeros(3, np.float32))
    try:
        _fails_with(capsys, _quantize(ckpt=tmp_path / "w.npz", out=tmp_path / "q.nqc",
                                      model=f"{name}:build"),
                    r"its factory raised RuntimeError: boom")
    finally:
        sys.modules.pop(name, None)


def test_quantize_twice_gives_the_same_file(capsys, tmp_path):
    outs = [tmp_path / "a.nqc", tmp_path / "b.nqc"]
    for out in outs:
        assert cli.main(_quantize("--calibration-batches", "2", out=out)) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_autotune_keeping_float_is_said_by_the_cli(capsys, tmp_path, monkeypatch):
    from needle_qc.lower import driver as lowering

    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 2.0 if kind == "int8" else 1.0)
    with pytest.warns(UserWarning, match="run in float"):
        assert cli.main(_quantize("--autotune", "--calibration-batches", "1",
                                  out=tmp_path / "t.nqc")) == 0
    out = capsys.readouterr().out
    assert "kept float: %" in out and "layer(s) run in float" in out


def test_default_output_folders_are_created_but_a_users_missing_parent_is_not(tmp_path,
                                                                              monkeypatch):
    """A fresh clone has no out/: `make demo` must work there; --out a/b with no a/ is refused."""
    monkeypatch.chdir(tmp_path)
    cli._check_out_folder(cli.DEFAULT_OUT["demo"])
    assert (tmp_path / "out" / "demo").is_dir()
    with pytest.raises(cli.UsageError, match="does not exist"):
        cli._check_out_folder(os.path.join("missing", "folder"))
    assert not (tmp_path / "missing").exists()
