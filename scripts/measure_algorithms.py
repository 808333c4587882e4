"""Reproduce docs/algorithms.md's measurements (issue 16): schemes on held-out data, QAT, plan.

    python scripts/measure_algorithms.py schemes transformer_lm,resnet9 int4-ch int4-ch-gptq
    python scripts/measure_algorithms.py schemes resnet9 \
        'int4-ch+{"rounding": "gptq", "gptq_sequential": true}'
    python scripts/measure_algorithms.py qat small_cnn \
        '{"weight": "int4", "group_size": 32, "weight_bits": 3}'
    python scripts/measure_algorithms.py plan resnet9 int4-g32

Models are comma-separated, schemes are separate arguments. A scheme is a report scheme
name, or ``NAME+JSON``: that scheme's QConfig with the JSON's fields changed. Everything is
seeded (seed 0); numbers print one line per row.
"""
import json
import sys
import time

import numpy as np


def _scheme(spec):
    from needle_qc.tools.report import SCHEMES, Scheme

    name, _, extra = spec.partition("+")
    base = SCHEMES[name]
    if not extra:
        return base
    return Scheme(spec, base.data_type + " " + extra, {**base.qconfig_args, **json.loads(extra)})


def schemes(models, specs):
    from needle_qc.tools import report

    for spec in specs:
        report.SCHEMES.setdefault(spec, _scheme(spec))
    start = time.time()
    rep = report.run(models=models, schemes=["fp32", *specs], progress=False, layers=False)
    for r in rep:
        score = "error" if r.score is None else f"{r.score:.4f}"
        print(f"{r.model:15s} {r.scheme:40s} {r.metric}={score} sqnr_db={r.sqnr_db:.2f}"
              + (f" error={r.error}" if r.error else ""))
    print(f"seconds {time.time() - start:.0f}")


def qat(name, cfg_json, lr=3e-4):
    import needle as ndl
    from needle_qc.pipeline import compile
    from needle_qc.quantize import QConfig
    from needle_qc.quantize.api import quantize_pass
    from needle_qc.quantize.qat import prepare_qat
    from needle_qc.tools import report, zoo

    cfg = QConfig(**json.loads(cfg_json))
    np.random.seed(0)
    model, _ = report.load_model(name, progress=False)
    graph = report.trace_model(name, model)
    fp32 = zoo.evaluate(name, graph)["accuracy"]
    rtn = zoo.evaluate(name, compile(quantize_pass(graph, cfg)))["accuracy"]
    module = prepare_qat(graph, cfg)
    opt = ndl.optim.Adam(module.parameters(), lr=lr)
    loss_fn = ndl.nn.SoftmaxLoss()
    data = zoo.batches(name, "train", 64)
    start = time.time()
    for i in np.random.default_rng(0).permutation(len(data)):
        x, y = data[i]
        opt.reset_grad()
        loss_fn(module(ndl.Tensor(x, device=module.device)),
                ndl.Tensor(y, device=module.device)).backward()
        opt.step()
    seconds = time.time() - start
    trained = zoo.evaluate(name, compile(module.convert()))["accuracy"]
    print(json.dumps({"model": name, "qconfig": json.loads(cfg_json), "lr": lr, "fp32": fp32,
                      "rtn": rtn, "qat": trained, "train_images": sum(len(b[0]) for b in data),
                      "train_seconds": round(seconds, 1)}))


def plan(name, budget):
    from needle_qc.pipeline import compile
    from needle_qc.quantize.api import quantize_pass
    from needle_qc.quantize.planner import CANDIDATES
    from needle_qc.quantize.planner import plan as make_plan
    from needle_qc.tools import report, zoo

    model, _ = report.load_model(name, progress=False)
    graph = report.trace_model(name, model)
    size = 16 if zoo.get(name).task == "language_model" else 64
    batches = [x for x, _ in zoo.batches(name, "train", size, limit=4)]
    result = make_plan(graph, batches, budget=budget)
    print(result)
    key = "perplexity" if zoo.get(name).task == "language_model" else "accuracy"
    mix = zoo.evaluate(name, compile(quantize_pass(graph, result.qconfig)))[key]
    line = {"model": name, "budget": budget, "mix_bytes": result.bytes, f"mix_{key}": mix}
    if budget in CANDIDATES:
        line[f"uniform_{key}"] = zoo.evaluate(
            name, compile(quantize_pass(graph, CANDIDATES[budget])))[key]
    print(json.dumps(line))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "schemes":
        schemes(args[0].split(","), args[1:])
    elif command == "qat":
        qat(args[0], args[1], *(float(a) for a in args[2:]))
    elif command == "plan":
        plan(args[0], args[1] if len(args) > 1 else "int4-g32")
    else:
        sys.exit(__doc__)
