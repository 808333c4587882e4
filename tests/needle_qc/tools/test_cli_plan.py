"""``needle-qc plan``: the Pareto table, the chosen point, the QConfig as JSON, the plot."""

import json

from needle_qc.quantize import QConfig
from needle_qc.tools import cli


def test_plan_prints_the_front_writes_the_qconfig_and_the_plot(capsys, tmp_path):
    out, png = tmp_path / "plan.json", tmp_path / "front.png"
    assert cli.main(["plan", "mlp", "--calibration-batches", "1", "--no-progress",
                     "--out", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "<- chosen" in text and "uniform int4-g32" in text and "uniform int4-ch-gptq" in text
    assert " ms " in text.splitlines()[1] and "ms a batch" in text
    cfg = QConfig.from_dict(json.loads(out.read_text()))
    assert cfg.weight is None and cfg.module_paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_refuses_a_plot_that_is_not_a_png(capsys, tmp_path):
    assert cli.main(["plan", "mlp", "--plot", str(tmp_path / "front.svg")]) == 2
    assert "--plot" in capsys.readouterr().err


def test_plan_rejects_an_unknown_budget_in_one_line(capsys):
    assert cli.main(["plan", "mlp", "--budget", "int2", "--calibration-batches", "1"]) == 2
    assert "budget='int2'" in capsys.readouterr().err
