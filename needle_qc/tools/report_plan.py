"""The report's mixed-precision section: ``needle_qc.plan`` on each model at int4 bytes."""
from __future__ import annotations

import numpy as np

PLAN_BUDGET = "int4-ch"
"""The report plans at the bytes of uniform int4 per channel (the hardest uniform setting)."""
PLAN_MEASURE = 4
"""Front points measured either side of the chosen one (each is compiled, timed, scored)."""


def plan_model(ctx):
    """``{"table", "text", "caption", "score_label", "sign", "test"}`` for the report: the
    planner chooses by the score on the first half of the held-out batches (validation), and
    the chosen mix and uniform int4 are scored on the other half (test); models without data
    are planned by output cost alone (SQNR on the plot)."""
    from needle_qc.quantize.planner import CANDIDATES, plan
    from needle_qc.quantize.planner_measure import compile_config
    from needle_qc.tools import zoo

    lm = ctx.entry.task == "language_model"
    held = zoo.batches(ctx.name, "heldout", 16 if lm else 256,
                       ctx.settings.eval_batches) if ctx.entry.dataset is not None else []
    half = max(1, len(held) // 2)
    val, test = held[:half], held[half:] or held  # one batch (quick): both are that batch
    evaluate = (lambda cm: _score(cm, val, lm)) if held else None
    result = plan(ctx.graph, ctx.calibration, budget=PLAN_BUDGET, evaluate=evaluate,
                  measure=PLAN_MEASURE)
    out = {"table": result.table, "text": str(result), "score_label": None, "sign": 1.0,
           "caption": f"budget = uniform {PLAN_BUDGET} bytes", "test": None}
    if held:
        out.update(score_label=("validation perplexity" if lm else "validation accuracy")
                   + f" (held-out batches 1-{len(val)})", sign=-1.0 if lm else 1.0)
        mine = compile_config(ctx.graph, result.qconfig, ctx.calibration)
        uniform = compile_config(ctx.graph, CANDIDATES[PLAN_BUDGET], ctx.calibration)
        out["test"] = {"chosen": out["sign"] * _score(mine, test, lm),
                       f"uniform {PLAN_BUDGET}": out["sign"] * _score(uniform, test, lm),
                       "batches": f"{len(held) - len(test) + 1}-{len(held)}"
                       + (", the validation batch too: quick" if len(held) < 2 else "")}
    return out


def _score(cm, data, lm):
    """Accuracy, or minus the perplexity (higher is better either way), on ``data``."""
    hits, nll, count = 0.0, 0.0, 0
    for x, y in data:
        z = np.asarray(cm.run_arrays(x)[0], np.float64)
        y = np.asarray(y).astype(np.int64)
        if lm:
            z = z - z.max(axis=1, keepdims=True)
            nll -= float((z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[
                np.arange(len(y)), y].sum())
        else:
            hits += float((z.argmax(axis=1) == y).sum())
        count += len(y)
    return -float(np.exp(nll / count)) if lm else hits / count


def markdown_lines(plans, model, plots):
    """The model's mixed-precision paragraph: table, test-half scores, plot."""
    import os

    found = plans.get(model)
    if found is None:
        return []
    lines = ["### Mixed precision (`needle_qc.plan`)", ""]
    if "error" in found:
        return lines + [f"The planner failed: {found['error']}", ""]
    lines += [f"Budget: the bytes of uniform {PLAN_BUDGET}; scan and GPTQ calibration on the "
              "calibration batches; the choice by the score on the validation half of the "
              "held-out data; ms = best of 3 calls on one calibration batch.", "", "```",
              found["text"], "```", ""]
    if found["test"]:
        test = dict(found["test"])
        lines += ["Test half (held-out batches " + test.pop("batches") + "): " + ", ".join(
            f"{k} {v:.4f}" for k, v in test.items()) + ".", ""]
    for path in plots.get("plan", []):
        if os.path.basename(path).endswith(f"_{model}.png"):
            lines += [f"![plan {model}]({os.path.basename(path)})", ""]
    return lines
