"""Mixed precision: ``plan(graph, batches, budget=...)`` picks each layer's weight scheme.

1. **Sensitivity scan.** For every weight layer (linear/conv2d with a module path) and every
   candidate scheme, only that layer is quantized (the rest stays float32), compiled on the
   same kernels and run on ``batches``; its cost is the mean KL divergence of the output
   softmax from the float one (or the output noise power, ``metric="mse"``): the layer's
   error propagated through the rest of the network. Small independent errors add up
   (approximately), so an assignment's predicted cost is the sum of its layers' costs.
2. **Pareto front.** For a sweep of ``lam``, every layer takes the scheme minimizing
   ``noise + lam * bytes`` (the Lagrangian relaxation of the multiple-choice knapsack);
   the distinct assignments are the supported Pareto points (bytes, predicted noise): the
   lower convex hull of the exact Pareto set, the table's and the plot's front.
3. **Choice** (:mod:`needle_qc.quantize.planner_choice`): under a byte budget, the least
   predicted noise within it (exact: the Pareto set by dynamic programming over the layers),
   or, with ``evaluate``, the best measured score among it and the hull points below it
   (``evaluations`` points in all).
   Under ``max_drop``, the cheapest hull point whose score is within the drop (NNCF's
   accuracy control: layers go up to higher precision in order of noise saved per byte).
4. **Table.** Every point compiled and measured: output SQNR on ``batches``, latency (best of
   ``timing_reps`` calls on the first batch), and ``evaluate``'s score; uniform schemes beside.

Bytes are the weight payload plus fp32 scales, as stored (int4 two per byte).
Candidates are schemes with kernels (weight-only int8 per channel, int4 per channel and per
group of 32, each int4 also with GPTQ rounding, fp16); an int3/int2 grid saves no bytes in
int4 storage, so it is not one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from needle_qc.quantize import planner_measure as pm
from needle_qc.quantize.qconfig import QConfig

_GPTQ = {"rounding": "gptq", "gptq_act_order": True}
CANDIDATES = {
    "fp16": QConfig(weight="fp16"),
    "int8-ch": QConfig(weight="int8", weight_granularity="per_channel"),
    "int4-g32": QConfig(weight="int4", group_size=32),
    "int4-g32-gptq": QConfig(weight="int4", group_size=32, **_GPTQ),
    "int4-ch": QConfig(weight="int4", weight_granularity="per_channel"),
    "int4-ch-gptq": QConfig(weight="int4", weight_granularity="per_channel", **_GPTQ),
}
"""Default candidate schemes (weight-only; every one runs on the CPU kernels; the GPTQ ones
are the report's ``*-gptq`` schemes and are calibrated on the scan's batches)."""


@dataclass
class Plan:
    """What :func:`plan` chose: ``qconfig`` (overrides per module path), ``assignment``
    (path -> scheme name), ``bytes``, ``sqnr_db`` (on the batches), ``latency_ms``, ``score``
    (``evaluate``'s, None without it; ``reference_score`` is the float model's), the
    ``table`` (list of dicts, one per point, ``kind`` "front", "exact" (the exact optimum
    between two hull points) or "uniform") and the
    per-layer ``sensitivity`` (path -> scheme -> cost)."""

    qconfig: QConfig
    assignment: dict
    bytes: int
    sqnr_db: float
    latency_ms: float
    score: float | None = None
    reference_score: float | None = None
    table: list = field(default_factory=list)
    sensitivity: dict = field(default_factory=dict)

    def __str__(self):
        lines = [f"{'bytes':>10} {'bits/w':>7} {'pred. cost':>11} {'SQNR dB':>8} {'ms':>8} "
                 f"{'score':>8}  mix"]
        for row in self.table:
            mark = "  <- chosen" if row["chosen"] else ""
            lines.append(f"{row['bytes']:>10} {row['bits_per_weight']:>7.2f} "
                         f"{row['noise']:>11.4g} {_fmt(row['sqnr_db'], '.2f'):>8} "
                         f"{_fmt(row['latency_ms'], '.3f'):>8} {_fmt(row['score'], '.4f'):>8}"
                         f"  {row['mix']}{mark}")
        if self.reference_score is not None:
            lines.append(f"float32 score {self.reference_score:.4f}")
        return "\n".join(lines)


def _fmt(value, spec):
    return "" if value is None else format(value, spec)


def weight_layers(graph):
    """``{module path: (weight count, [weight shapes])}`` of the float graph's weight layers
    (a path is one entry however many layers use it, e.g. an unrolled LSTM cell; its distinct
    weight tensors are counted once each). Only paths a ``module_paths`` override may name
    (the quantizer's candidates) are listed: the plan is a QConfig of such overrides."""
    from needle_qc import passes
    from needle_qc.quantize.overrides import candidates

    g = graph.copy()
    passes.run_passes(g, passes.FLOAT_PIPELINE)
    configurable = {c.path for c in candidates(g)}
    tensors = {}
    for node in g.nodes:
        path = node.meta.get("module_path")
        for w in _weights_of(node) if path in configurable else ():
            tensors.setdefault(path, {})[w.attrs["tensor"]] = tuple(w.meta["shape"])
    return {path: (sum(int(np.prod(s)) for s in shapes.values()), list(shapes.values()))
            for path, shapes in tensors.items()}


def _weights_of(node):
    """The weight params a layer quantizes: a linear/conv2d/matmul's second input, an
    ``lstm_cell``'s ``w_ih`` and ``w_hh`` (inputs 3 and 4; the fused float cell)."""
    if node.op in ("linear", "conv2d", "matmul"):
        found = node.inputs[1:2]
    elif node.op == "lstm_cell":
        found = node.inputs[3:5]
    else:
        return []
    return [w for w in found if w.op == "param" and len(w.meta["shape"]) in (2, 4)]


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


def config_of(pick, candidates):
    """One QConfig: float by default, each layer's path overridden with its scheme."""
    return QConfig(weight=None, module_paths={p: candidates[s] for p, s in pick.items()})


def sensitivity(graph, batches, candidates=None, layers=None, metric="kl"):
    """``{path: {scheme: cost}}``: the output cost (:func:`planner_measure.output_cost`) with
    only that layer quantized."""
    candidates = CANDIDATES if candidates is None else candidates
    layers = weight_layers(graph) if layers is None else layers
    ref = pm.float_outputs(graph, batches)

    def cost(path, cfg):
        cm = pm.compile_config(graph, config_of({path: "s"}, {"s": cfg}), batches)
        return pm.output_cost(ref, pm.compiled_outputs(cm, batches), metric)

    return {path: {name: cost(path, cfg) for name, cfg in candidates.items()}
            for path in layers}


def byte_costs(sens, layers, candidates):
    """``{path: {scheme: bytes}}`` for the layers and schemes of ``sens``."""
    return {p: {s: layer_bytes(candidates[s], layers[p][1]) for s in sens[p]} for p in sens}


def pareto(sens, layers, candidates):
    """Distinct Lagrangian assignments ``(bytes, noise, {path: scheme})``, by bytes: the
    supported points of the Pareto set (a point inside a concave dent of the exact set is
    not one: :func:`planner_choice.exact_pareto` has them all)."""
    cost = byte_costs(sens, layers, candidates)
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


def budget_bytes(budget, layers, candidates=None):
    """The byte limit of ``budget``: bytes (int > 0), bits per weight (float > 0), a
    candidate's name (the bytes of that scheme used everywhere), or None (no limit)."""
    candidates = CANDIDATES if candidates is None else candidates
    if budget is None:
        return math.inf
    if isinstance(budget, str):
        cfg = candidates.get(budget)
        if cfg is None:
            raise ValueError(f"plan: budget={budget!r}; a scheme name of {list(candidates)}, "
                             "bits per weight (float) or bytes (int)")
        return sum(layer_bytes(cfg, shapes) for _, shapes in layers.values())
    if isinstance(budget, float) and math.isfinite(budget) and budget > 0:
        return budget / 8 * sum(count for count, _ in layers.values())
    if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
        return budget
    raise ValueError(f"plan: budget={budget!r} must be bytes (int > 0), bits per weight "
                     "(float > 0), a candidate scheme name (its uniform bytes) or None")


def plan(graph, batches, budget="int4-g32", *, max_drop=None, evaluate=None, candidates=None,
         metric="kl", measure=None, evaluations=4, timing_reps=3, scan=None):
    """Per-layer weight schemes under a memory budget or an accuracy drop; a :class:`Plan`.

    Parameters
    ----------
    graph : Graph
        The float graph.
    batches : list
        Input batches (arrays or tuples whose first items are the inputs): the scan's data,
        the GPTQ calibration data and the SQNR column's.
    budget : int, float, str or None
        Bytes of the weights (int), bits per weight (float), a candidate name (the bytes of
        that scheme used everywhere; default uniform int4-g32), or None (no byte limit: only
        with ``max_drop``).
    max_drop : float, optional
        Accuracy-driven mode: the cheapest front point (within ``budget``) whose score is at
        most ``max_drop`` below the float model's (needs ``evaluate``).
    evaluate : callable, optional
        ``evaluate(compiled model) -> score`` (higher is better, e.g. accuracy on a validation
        split disjoint from the test split, or minus the loss). Given, the choice within the
        budget is the best score of ``evaluations`` points (the exact optimum within it and
        the hull points below).
    candidates : dict[str, QConfig], optional
        Schemes to choose from (default :data:`CANDIDATES`).
    metric : {"kl", "mse"}
        The per-layer cost: KL divergence of the output softmax or the output noise power.
    measure : int, optional
        Compile and measure only the chosen point and this many front points either side of it
        (and the uniform rows unless 0); default None measures every point.
    evaluations : int
        How many points within the budget ``evaluate`` compares (default 4).
    timing_reps : int
        Timed calls per point (the best is the latency column).
    scan : dict, optional
        A previous plan's ``sensitivity`` for the same graph, batches and candidates (skips
        the scan).
    """
    from needle_qc.quantize import planner_choice as choice

    candidates = CANDIDATES if candidates is None else candidates
    choice.check_options(budget, max_drop, evaluate, measure, evaluations, timing_reps)
    layers = weight_layers(graph)
    if not layers:
        raise ValueError("plan: the graph has no weight layer with a module path")
    limit = budget_bytes(budget, layers, candidates)
    if scan is None:
        sens = sensitivity(graph, batches, candidates, layers, metric)
    else:
        sens = choice.checked_scan(scan, layers, candidates)
    front = pareto(sens, layers, candidates)
    meter = choice.Meter(graph, batches, candidates, evaluate, timing_reps)
    if max_drop is None:
        chosen, options = choice.within_budget(front, limit, sens, layers, candidates, meter,
                                               evaluations)
    else:
        chosen, options = choice.within_drop(front, limit, max_drop, meter)
    table = choice.table(front, options, chosen, sens, layers, candidates, meter, measure)
    row = next(r for r in table if r["chosen"])
    return Plan(config_of(chosen[2], candidates), dict(chosen[2]), int(chosen[0]),
                row["sqnr_db"], row["latency_ms"], row["score"], meter.reference_score(),
                table, sens)
