"""Mixed precision: ``plan(graph, batches, budget=...)`` picks each layer's weight scheme.

1. **Sensitivity scan.** For every weight layer (linear/conv2d with a module path) and every
   candidate scheme, only that layer is quantized (the rest stays float32), compiled on the
   same kernels and run on ``batches``; its cost is the mean KL divergence of the output
   softmax from the float one (or the output noise power, ``metric="mse"``). Small
   independent errors add up (approximately), so an assignment's predicted cost is the sum of
   its layers' costs.
2. **Pareto front.** For a sweep of ``lam``, every layer takes the scheme minimizing
   ``noise + lam * bytes`` (the Lagrangian relaxation of the multiple-choice knapsack);
   the distinct assignments are the Pareto points (bytes, predicted noise).
3. **Choice.** The point with the least predicted noise within the budget, compiled and
   measured (output SQNR on ``batches``), returned as a QConfig with one ``module_paths``
   override per layer, with the whole front as a table.

Bytes are the weight payload plus fp32 scales, as stored (int4 two per byte).
Candidates are the schemes with kernels (weight-only int8 per channel, int4 per channel,
int4 per group, fp16); an int3/int2 grid saves no bytes in int4 storage, so it is not one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from needle_qc.quantize.qconfig import QConfig

CANDIDATES = {
    "fp16": QConfig(weight="fp16"),
    "int8-ch": QConfig(weight="int8", weight_granularity="per_channel"),
    "int4-g32": QConfig(weight="int4", group_size=32),
    "int4-ch": QConfig(weight="int4", weight_granularity="per_channel"),
}
"""Default candidate schemes (weight-only; every one has CPU kernels)."""


@dataclass
class Plan:
    """What :func:`plan` chose: ``qconfig`` (overrides per module path), ``assignment``
    (path -> scheme name), ``bytes`` and ``sqnr_db`` measured on the batches, the Pareto
    ``table`` (list of dicts) and the per-layer ``sensitivity`` (path -> scheme -> noise)."""

    qconfig: QConfig
    assignment: dict
    bytes: int
    sqnr_db: float
    table: list = field(default_factory=list)
    sensitivity: dict = field(default_factory=dict)

    def __str__(self):
        lines = [f"{'bytes':>10} {'bits/w':>7} {'pred. cost':>12} {'SQNR dB':>8}  mix"]
        for row in self.table:
            mark = "  <- chosen" if row["chosen"] else ""
            sqnr = "" if row.get("sqnr_db") is None else f"{row['sqnr_db']:.2f}"
            lines.append(f"{row['bytes']:>10} {row['bits_per_weight']:>7.2f} "
                         f"{row['noise']:>12.4g} {sqnr:>8}  {row['mix']}{mark}")
        return "\n".join(lines)


def weight_layers(graph):
    """``{module path: (weight count, [weight shapes])}`` of the float graph's weight layers
    (a path is one entry however many layers use it, e.g. an unrolled LSTM cell; its distinct
    weight tensors are counted once each)."""
    from needle_qc import passes

    g = graph.copy()
    passes.run_passes(g, passes.FLOAT_PIPELINE)
    tensors = {}
    for node in g.nodes:
        if node.op in ("linear", "conv2d", "matmul") and len(node.inputs) > 1 \
                and node.inputs[1].op == "param" and len(node.inputs[1].meta["shape"]) in (2, 4):
            path = node.meta.get("module_path")
            if path:
                w = node.inputs[1]
                tensors.setdefault(path, {})[w.attrs["tensor"]] = tuple(w.meta["shape"])
    return {path: (sum(int(np.prod(s)) for s in shapes.values()), list(shapes.values()))
            for path, shapes in tensors.items()}


def layer_bytes(cfg, shapes):
    """Stored bytes of a layer's weights under ``cfg``."""
    return sum(scheme_bytes(cfg, shape) for shape in shapes)


def scheme_bytes(cfg, shape):
    """Stored bytes of one weight of ``shape`` under ``cfg`` (payload + fp32 scales)."""
    n, count = shape[-1], int(np.prod(shape))
    if cfg is None:
        return 4 * count
    if cfg.weight in ("fp16", "bf16"):
        return 2 * count
    bits = 4 if cfg.weight in ("int4", "uint4") else 8
    red = shape[-2]
    taps = count // (red * n)
    gran = cfg.resolved_weight_granularity
    scales = taps * n * math.ceil(red / cfg.group_size) if gran == "per_group" else \
        (taps * n if bits == 4 else n)
    return math.ceil(count * bits / 8) + 4 * scales


def _run(graph, cfg, batches):
    from needle_qc.pipeline import compile
    from needle_qc.quantize.api import calibrate, quantize_pass

    prepared = quantize_pass(graph, cfg)
    if any(n.op == "observer" for n in prepared.nodes):
        calibrate(prepared, batches, progress=False)
    cm = compile(prepared)
    return [np.asarray(cm.run_arrays(*_inputs(b))[0], np.float64) for b in batches]


def _inputs(batch):
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def _float_outputs(graph, batches):
    out = []
    for b in batches:
        y = graph(*_inputs(b))
        while isinstance(y, (tuple, list)):
            y = y[0]
        out.append(np.asarray(y.numpy() if hasattr(y, "numpy") else y, np.float64))
    return out


def _noise(ref, out, metric="kl"):
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


def _sqnr(ref, out):
    signal = float(np.mean([np.mean(r ** 2) for r in ref]))
    noise = _noise(ref, out, "mse")
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def _only(path, cfg):
    return QConfig(weight=None, module_paths={path: cfg})


def sensitivity(graph, batches, candidates=None, layers=None, metric="kl"):
    """``{path: {scheme: cost}}``: the output cost (:func:`_noise`) with only that layer
    quantized."""
    candidates = CANDIDATES if candidates is None else candidates
    layers = weight_layers(graph) if layers is None else layers
    ref = _float_outputs(graph, batches)
    return {path: {name: _noise(ref, _run(graph, _only(path, cfg), batches), metric)
                   for name, cfg in candidates.items()} for path in layers}


def pareto(sens, layers, candidates):
    """Distinct Lagrangian assignments ``(bytes, noise, {path: scheme})``, by bytes."""
    cost = {p: {s: layer_bytes(candidates[s], layers[p][1]) for s in sens[p]} for p in sens}
    noises = [v for row in sens.values() for v in row.values() if v > 0] or [1.0]
    most = max(max(c.values()) for c in cost.values())
    # from "noise only" to "bytes only": every trade-off slope lies in this range
    lams = [0.0, *np.logspace(math.log10(min(noises) / most) - 3,
                              math.log10(max(noises)) + 3, 400), math.inf]
    points = {}
    for lam in lams:
        pick = {p: min(sens[p], key=lambda s, p=p: _lagrangian(sens[p][s], cost[p][s], lam))
                for p in sens}
        key = tuple(sorted(pick.items()))
        points[key] = (sum(cost[p][pick[p]] for p in pick), sum(sens[p][pick[p]] for p in pick),
                       pick)
    front = sorted(points.values(), key=lambda t: (t[0], t[1]))
    kept, best = [], math.inf
    for b, n, pick in front:
        if n < best:
            kept.append((b, n, pick))
            best = n
    return kept


def _lagrangian(noise, nbytes, lam):
    return (nbytes, noise) if lam == math.inf else (noise + lam * nbytes, nbytes)


def _budget_bytes(budget, layers):
    if isinstance(budget, str):
        cfg = CANDIDATES.get(budget)
        if cfg is None:
            raise ValueError(f"plan: budget={budget!r}; a scheme name of {list(CANDIDATES)}, "
                             "bits per weight (float) or bytes (int)")
        return sum(layer_bytes(cfg, shapes) for _, shapes in layers.values())
    if isinstance(budget, float):
        return budget / 8 * sum(count for count, _ in layers.values())
    if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
        return budget
    raise ValueError(f"plan: budget={budget!r} must be bytes (int > 0), bits per weight "
                     "(float) or a candidate scheme name (its uniform bytes)")


def _mix(pick):
    names = sorted(set(pick.values()))
    return ", ".join(f"{n} x{sum(1 for v in pick.values() if v == n)}" for n in names)


def plan(graph, batches, budget="int4-g32", *, candidates=None, measure=3, metric="kl"):
    """Per-layer weight schemes under a memory budget; returns a :class:`Plan`.

    Parameters
    ----------
    graph : Graph
        The float graph.
    batches : list
        Input batches (arrays or tuples whose first items are the inputs): the scan's data.
    budget : int, float or str
        Bytes of the weights (int), bits per weight (float), or a candidate name: the bytes
        of that scheme used uniformly (default: uniform int4-g32).
    candidates : dict[str, QConfig], optional
        Schemes to choose from (default :data:`CANDIDATES`).
    metric : {"kl", "mse"}
        The per-layer cost: KL divergence of the output softmax (classifiers, language
        models) or the output noise power.
    measure : int
        How many Pareto points around the budget (the chosen one and the next cheaper ones)
        are compiled and measured (SQNR on ``batches``).
    """
    candidates = CANDIDATES if candidates is None else candidates
    layers = weight_layers(graph)
    if not layers:
        raise ValueError("plan: the graph has no weight layer with a module path")
    limit = _budget_bytes(budget, layers)
    sens = sensitivity(graph, batches, candidates, layers, metric)
    front = pareto(sens, layers, candidates)
    fitting = [i for i, (b, _, _) in enumerate(front) if b <= limit]
    if not fitting:
        raise ValueError(f"plan: no assignment fits {limit:.0f} bytes (the smallest needs "
                         f"{front[0][0]} bytes)")
    chosen = fitting[-1]
    ref = _float_outputs(graph, batches)
    weights = sum(count for count, _ in layers.values())
    table = []
    for i, (b, n, pick) in enumerate(front):
        row = {"bytes": int(b), "bits_per_weight": 8 * b / weights, "noise": n,
               "mix": _mix(pick), "assignment": dict(pick), "chosen": i == chosen,
               "sqnr_db": None}
        if chosen - measure < i <= chosen:
            row["sqnr_db"] = _sqnr(ref, _run(graph, _config(pick, candidates), batches))
        table.append(row)
    for name in candidates:  # each scheme used everywhere, for comparison
        uniform = {p: name for p in layers}
        table.append({"bytes": int(sum(layer_bytes(candidates[name], shapes)
                                       for _, shapes in layers.values())),
                      "bits_per_weight": 0.0, "noise": sum(sens[p][name] for p in layers),
                      "mix": f"uniform {name}", "assignment": uniform, "chosen": False,
                      "sqnr_db": _sqnr(ref, _run(graph, _config(uniform, candidates), batches))})
        table[-1]["bits_per_weight"] = 8 * table[-1]["bytes"] / weights
    pick = front[chosen][2]
    return Plan(_config(pick, candidates), dict(pick), int(front[chosen][0]),
                table[chosen]["sqnr_db"], table, sens)


def _config(pick, candidates):
    """One QConfig: float by default, each layer's path overridden with its scheme."""
    return QConfig(weight=None, module_paths={p: candidates[s] for p, s in pick.items()})
