"""The report's mixed-precision section: the planner's table, test-half scores and plot."""

import json

from needle_qc.tools import report


def test_the_report_plans_each_model_and_draws_its_front(tmp_path):
    rep = report.run(models=["mlp"], schemes=["fp32", "int4-ch"], quick=True, progress=False,
                     layers=False, planner=True)
    found = rep.plans["mlp"]
    chosen = [r for r in found["table"] if r["chosen"]]
    assert len(chosen) == 1 and 0 <= chosen[0]["score"] <= 1 and chosen[0]["latency_ms"] > 0
    assert {"chosen", "uniform int4-ch"} <= set(found["test"])
    written = rep.write(str(tmp_path))
    assert [p.rsplit("/", 1)[-1] for p in written["plots"]["plan"]] == ["plan_mlp.png"]
    text = open(written["markdown"]).read()
    assert "### Mixed precision" in text and "(plan_mlp.png)" in text and "<- chosen" in text
    assert json.load(open(written["json"]))["plans"]["mlp"]["table"]


def test_quick_reports_skip_the_planner_unless_asked():
    rep = report.run(models=["mlp"], schemes=["fp32"], quick=True, progress=False,
                     layers=False)
    assert rep.plans == {}
