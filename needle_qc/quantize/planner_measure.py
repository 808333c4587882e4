"""Measuring a planner point: compile an assignment, its output cost, SQNR and latency."""
from __future__ import annotations

import math
import time

import numpy as np


def compile_config(graph, cfg, batches):
    """``graph`` quantized under ``cfg`` (calibrated on ``batches`` when it has observers:
    GPTQ and bias correction read layer statistics) and compiled."""
    from needle_qc.pipeline import compile
    from needle_qc.quantize.api import calibrate, quantize_pass

    prepared = quantize_pass(graph, cfg)
    if any(n.op == "observer" for n in prepared.nodes):
        calibrate(prepared, batches, progress=False)
    return compile(prepared)


def inputs(batch):
    """The graph inputs of one batch (an array, or a tuple whose first items are inputs)."""
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def compiled_outputs(cm, batches):
    return [np.asarray(cm.run_arrays(*inputs(b))[0], np.float64) for b in batches]


def float_outputs(graph, batches):
    out = []
    for b in batches:
        y = graph(*inputs(b))
        while isinstance(y, (tuple, list)):
            y = y[0]
        out.append(np.asarray(y.numpy() if hasattr(y, "numpy") else y, np.float64))
    return out


def output_cost(ref, out, metric="kl"):
    """The cost of an output: ``"mse"`` (noise power) or ``"kl"`` (mean KL divergence of the
    quantized softmax from the float one over the last axis: what perplexity and accuracy
    feel, while the MSE weighs every logit alike)."""
    if metric == "mse":
        return float(np.mean([np.mean((o - r) ** 2) for r, o in zip(ref, out)]))
    return float(np.mean([np.mean(_kl(r, o)) for r, o in zip(ref, out)]))


def _kl(ref, out):
    lp, lq = _log_softmax(ref), _log_softmax(out)
    return np.sum(np.exp(lp) * (lp - lq), axis=-1)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sqnr_db(ref, out):
    """Output SQNR in dB over all batches (inf when exact)."""
    signal = float(np.mean([np.mean(r ** 2) for r in ref]))
    noise = output_cost(ref, out, "mse")
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def latency_ms(cm, batch, reps=3):
    """Best of ``reps`` timed calls ``cm(*inputs)`` on one batch, after one untimed call."""
    args = inputs(batch)
    cm(*args)
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        cm(*args)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best
