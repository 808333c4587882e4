"""Reproduce docs/algorithms.md's measurements (issue 16): schemes on held-out data, QAT, plan.

    python scripts/measure_algorithms.py schemes transformer_lm,resnet9 int4-ch int4-ch-gptq
    python scripts/measure_algorithms.py schemes resnet9 \
        'int4-ch+{"rounding": "gptq", "gptq_sequential": true}'
    python scripts/measure_algorithms.py qat small_cnn \
        '{"weight": "int4", "group_size": 32, "weight_bits": 3}'
    python scripts/measure_algorithms.py qat small_cnn \
        '{"weight": "int4", "activation": "static"}' --lsq
    python scripts/measure_algorithms.py plan mlp,small_cnn,resnet9 int4-ch int4-g32
    python scripts/measure_algorithms.py gptq transformer_lm,resnet9 --calibration 32 \
        int4-ch-gptq 'int3-g32-gptq+{"gptq_sequential": true}'

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


def gptq(names, specs, calibration=8):
    """Each GPTQ scheme against RTN on the same grid, paired per held-out sample.

    The RTN twin of a scheme is its QConfig with ``rounding="nearest"`` and no GPTQ fields.
    Calibration: the first ``calibration`` batches of the train split (64 images / 16 LM
    sequences each), for RTN and GPTQ alike; the held-out split is scored once per setting.
    One JSON line per scheme: score, share of RTN's loss recovered, the paired statistics
    against RTN (discordant images and McNemar's z, or the per-token NLL difference and its
    standard error) and the mean KL divergence of the outputs from fp32's (a steadier signal
    than a few images)."""
    from needle_qc.quantize.planner_measure import compile_config, float_outputs
    from needle_qc.tools import report, zoo

    for name in names:
        start = time.time()
        lm = zoo.get(name).task == "language_model"
        model, _ = report.load_model(name, progress=False)
        graph = report.trace_model(name, model)
        batches = [x for x, _ in zoo.batches(name, "train", 16 if lm else 64,
                                             limit=calibration)]
        held = zoo.batches(name, "heldout", 16 if lm else 250)
        labels = [np.asarray(y).astype(np.int64) for _, y in held]
        ref = float_outputs(graph, [x for x, _ in held])
        fp32 = _per_sample_logits(ref, labels, lm)
        rtn = {}
        for spec in specs:
            t0 = time.time()
            cfg = _scheme(spec).qconfig()
            twin = cfg.replace(rounding="nearest", gptq_act_order=False, gptq_sequential=False)
            for c in (twin, cfg):
                if repr(c) not in rtn:
                    cm = compile_config(graph, c, batches)
                    out = [np.asarray(cm.run_arrays(x)[0], np.float64) for x, _ in held]
                    rtn[repr(c)] = (_per_sample_logits(out, labels, lm), _kl_to(ref, out))
            (base, kl_rtn), (s, kl) = rtn[repr(twin)], rtn[repr(cfg)]
            f, r, g = (_score(v, lm) for v in (fp32, base, s))
            loss, gain = ((r - f), (r - g)) if lm else ((f - r), (g - r))
            line = {"model": name, "scheme": spec, "calibration_batches": calibration,
                    "fp32": f, "rtn": r, "gptq": g,
                    "recovered": round(gain / loss, 3) if loss else None}
            line.update({k.replace("gptq_", "vs_rtn_"): v for k, v in
                         _summary(lm, uniform=base, gptq=s).items()
                         if k in ("gptq_dnll", "gptq_discordant")})
            line.update(kl_rtn=round(kl_rtn, 5), kl_gptq=round(kl, 5),
                        seconds=round(time.time() - t0, 1))
            print(json.dumps(line), flush=True)
        print(json.dumps({"model": name, "seconds": round(time.time() - start, 1)}))


def _per_sample_logits(logits, labels, lm):
    """Per-sample correctness (classifiers) or per-token negative log-likelihood (LMs)."""
    out = []
    for z, y in zip(logits, labels):
        y = np.asarray(y).astype(np.int64)
        if lm:
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            out.append(-logp[np.arange(len(y)), y])
        else:
            out.append((z.argmax(axis=1) == y).astype(np.float64))
    return np.concatenate(out)


def _kl_to(ref, out):
    from needle_qc.quantize.planner_measure import output_cost

    return output_cost(ref, out, "kl")


def qat(name, cfg_json, lr=3e-4, lsq=False):
    """One epoch of QAT; static activations start from the report's 8 calibration batches
    (batch 64 of the train split), frozen or learned with LSQ (``lsq``)."""
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
    static = cfg.activation == "static"
    calibration = [x for x, _ in zoo.batches(name, "train", 64, limit=8)] if static else None
    rtn = zoo.evaluate(name, compile(quantize_pass(graph, cfg),
                                     calibration=calibration))["accuracy"]
    module = prepare_qat(graph, cfg, calibration=calibration, learn_scales=lsq)
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
    print(json.dumps({"model": name, "qconfig": json.loads(cfg_json), "lr": lr, "lsq": lsq,
                      "fp32": fp32, "rtn": rtn, "qat": trained,
                      "train_images": sum(len(b[0]) for b in data),
                      "train_seconds": round(seconds, 1)}))


def plan(names, budgets, calibration=8):
    """Uniform schemes vs the planner's mixes at their bytes, on held-out halves: the mix is
    chosen by ``evaluate`` on one half (validation) and scored on the other (test), both
    ways round, so every held-out sample is a test sample once and never its own validation
    (2-fold cross-fitting). One scan per model serves every budget and fold."""
    for name in names:
        _plan_model(name, budgets, calibration)


def _plan_model(name, budgets, calibration):
    from needle_qc.quantize.planner import CANDIDATES, sensitivity, weight_layers
    from needle_qc.quantize.planner import plan as make_plan
    from needle_qc.quantize.planner_measure import compile_config
    from needle_qc.tools import report, zoo

    start = time.time()
    lm = zoo.get(name).task == "language_model"
    model, _ = report.load_model(name, progress=False)
    graph = report.trace_model(name, model)
    batches = [x for x, _ in zoo.batches(name, "train", 16 if lm else 64, limit=calibration)]
    held = zoo.batches(name, "heldout", 16 if lm else 250)
    halves = [held[: len(held) // 2], held[len(held) // 2:]]
    sens = sensitivity(graph, batches, CANDIDATES, weight_layers(graph))
    scan_s = time.time() - start

    def per_sample(cfg, halves_):
        cm = compile_config(graph, cfg, batches)
        return np.concatenate([_per_sample(cm, h, lm) for h in halves_])

    for budget in budgets:
        base = {"model": name, "budget": budget, "calibration_batches": calibration,
                "scan_seconds": round(scan_s, 1)}
        uniform = per_sample(CANDIDATES[budget], halves)
        by_noise = make_plan(graph, batches, budget, scan=sens, measure=0)
        noise_mix = per_sample(by_noise.qconfig, halves)
        chosen, tested = [], []
        for val, test in ((0, 1), (1, 0)):
            p = make_plan(graph, batches, budget, scan=sens, measure=0,
                          evaluate=_scorer(halves[val], lm))
            chosen.append({"bytes": p.bytes, "val_score": p.score,
                           "mix": next(r["mix"] for r in p.table if r["chosen"])})
            tested.append(per_sample(p.qconfig, [halves[test]]))
        evaluated = np.concatenate(tested[::-1])  # back in held-out order
        gptq = f"{budget}-gptq" if f"{budget}-gptq" in CANDIDATES else None
        line = dict(base)
        extra = {"uniform_gptq": per_sample(CANDIDATES[gptq], halves)} if gptq else {}
        line.update(_summary(lm, uniform=uniform, noise_mix=noise_mix, evaluated=evaluated,
                             **extra))
        line.update(noise_mix_bytes=by_noise.bytes, noise_mix=next(
            r["mix"] for r in by_noise.table if r["chosen"]), folds=chosen,
            uniform_bytes=next(r["bytes"] for r in by_noise.table
                               if r["mix"] == f"uniform {budget}"),
            seconds=round(time.time() - start, 1))
        print(json.dumps(line))


def _per_sample(cm, data, lm):
    """Per-sample correctness (classifiers) or per-token negative log-likelihood (LMs)."""
    return _per_sample_logits([np.asarray(cm.run_arrays(x)[0], np.float64) for x, _ in data],
                              [y for _, y in data], lm)


def _scorer(data, lm):
    """evaluate(compiled model): accuracy, or minus the mean NLL per token, on ``data``."""
    def score(cm):
        s = _per_sample(cm, data, lm)
        return float(-s.mean() if lm else s.mean())
    return score


def _summary(lm, uniform, **mixes):
    """Scores (accuracy or perplexity) and paired differences against ``uniform``: for a
    classifier the discordant counts (mix right / uniform right) and McNemar's z, for an LM
    the per-token NLL difference and its standard error (tokens treated as independent)."""
    key = "perplexity" if lm else "accuracy"
    out = {f"uniform_{key}": _score(uniform, lm)}
    for name, s in mixes.items():
        out[f"{name}_{key}"] = _score(s, lm)
        d = s - uniform
        if lm:
            out[f"{name}_dnll"] = [round(float(d.mean()), 5),
                                   round(float(d.std() / np.sqrt(len(d))), 5)]
        else:
            b, c = int((d > 0).sum()), int((d < 0).sum())
            out[f"{name}_discordant"] = [b, c, round((b - c) / np.sqrt(b + c), 2) if b + c
                                         else 0.0]
    return out


def _score(s, lm):
    return round(float(np.exp(s.mean())), 3) if lm else round(float(s.mean()), 4)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "schemes":
        schemes(args[0].split(","), args[1:])
    elif command == "qat":
        qat(args[0], args[1], *(float(a) for a in args[2:] if a != "--lsq"),
            lsq="--lsq" in args)
    elif command == "gptq":
        calib = int(args[args.index("--calibration") + 1]) if "--calibration" in args else 8
        rest = [a for i, a in enumerate(args[1:], 1)
                if a != "--calibration" and args[i - 1] != "--calibration"]
        gptq(args[0].split(","), rest, calib)
    elif command == "plan":
        plan(args[0].split(","), args[1:] or ["int4-ch", "int4-g32"])
    else:
        sys.exit(__doc__)
