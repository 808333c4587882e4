"""``needle-qc plan``: the Pareto table, the chosen point, the QConfig written as JSON."""

import json

from needle_qc.quantize import QConfig
from needle_qc.tools import cli


def test_plan_prints_the_front_and_writes_the_chosen_qconfig(capsys, tmp_path):
    out = tmp_path / "plan.json"
    assert cli.main(["plan", "mlp", "--calibration-batches", "1", "--no-progress",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "<- chosen" in text and "uniform int4-g32" in text
    cfg = QConfig.from_dict(json.loads(out.read_text()))
    assert cfg.weight is None and cfg.module_paths


def test_plan_rejects_an_unknown_budget_in_one_line(capsys):
    assert cli.main(["plan", "mlp", "--budget", "int2", "--calibration-batches", "1"]) == 2
    assert "budget='int2'" in capsys.readouterr().err
