"""The planner's choice on its Pareto front (budget or accuracy drop) and its measured table."""
from __future__ import annotations

import math

from needle_qc.quantize import planner_measure as pm


def check_options(budget, max_drop, evaluate, measure, evaluations, timing_reps):
    """Clear errors for option values :func:`planner.plan` cannot use."""
    if evaluate is not None and not callable(evaluate):
        raise ValueError(f"plan: evaluate={evaluate!r} must be a callable "
                         "(compiled model -> score, higher is better)")
    if max_drop is not None:
        if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) \
                or not 0 <= max_drop < math.inf:
            raise ValueError(f"plan: max_drop={max_drop!r} must be a number >= 0 (score units)")
        if evaluate is None:
            raise ValueError("plan: max_drop needs evaluate= (compiled model -> score) to "
                             "measure the drop")
    elif budget is None:
        raise ValueError("plan: budget=None (no byte limit) needs max_drop=")
    for name, value, low in (("measure", measure, 0), ("evaluations", evaluations, 1),
                             ("timing_reps", timing_reps, 1)):
        if value is None and name == "measure":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"plan: {name}={value!r} must be an int >= {low}")


def checked_scan(scan, layers, candidates):
    """``scan`` (a previous plan's sensitivity) if it covers these layers and candidates."""
    if not isinstance(scan, dict) or set(scan) != set(layers):
        got = sorted(scan) if isinstance(scan, dict) else type(scan).__name__
        raise ValueError(f"plan: scan= covers {got}, the graph's weight layers are "
                         f"{sorted(layers)}")
    for path, row in scan.items():
        missing = set(candidates) - set(row)
        if missing:
            raise ValueError(f"plan: scan=[{path!r}] has no cost for {sorted(missing)}")
    return {p: {s: float(row[s]) for s in candidates} for p, row in scan.items()}


class Meter:
    """Compiles and measures assignments once each: SQNR on the batches, latency, score."""

    def __init__(self, graph, batches, candidates, evaluate, timing_reps):
        self.graph, self.batches, self.candidates = graph, batches, candidates
        self.evaluate, self.reps = evaluate, timing_reps
        self.ref = pm.float_outputs(graph, batches)
        self._done = {}
        self._reference = None

    def __call__(self, pick):
        """``{"sqnr_db", "latency_ms", "score"}`` of the assignment ``pick``."""
        from needle_qc.quantize.planner import config_of

        key = tuple(sorted(pick.items()))
        if key not in self._done:
            cm = pm.compile_config(self.graph, config_of(pick, self.candidates), self.batches)
            self._done[key] = {
                "sqnr_db": pm.sqnr_db(self.ref, pm.compiled_outputs(cm, self.batches)),
                "latency_ms": pm.latency_ms(cm, self.batches[0], self.reps),
                "score": None if self.evaluate is None else float(self.evaluate(cm))}
        return self._done[key]

    def measured(self, pick):
        return self._done.get(tuple(sorted(pick.items())))

    def reference_score(self):
        """``evaluate`` of the float model (compiled the same way), None without it."""
        if self.evaluate is None:
            return None
        if self._reference is None:
            from needle_qc.quantize.qconfig import QConfig

            cm = pm.compile_config(self.graph, QConfig(weight=None), self.batches)
            self._reference = float(self.evaluate(cm))
        return self._reference


def exact_pareto(sens, cost):
    """The exact Pareto set ``[(bytes, noise, {path: scheme})]`` by bytes, by dynamic
    programming over the layers: each layer's schemes are merged into the partial
    assignments and a partial one that another beats on bytes and noise is dropped (costs
    add up, so it cannot be part of a Pareto point)."""
    paths = sorted(sens)
    partial = [(0, 0.0, ())]
    for p in paths:
        merged = sorted(((b + cost[p][s], n + sens[p][s], pick + (s,))
                         for b, n, pick in partial for s in sens[p]), key=lambda t: t[:2])
        partial, best = [], math.inf
        for t in merged:
            if t[1] < best:
                partial.append(t)
                best = t[1]
    return [(b, n, dict(zip(paths, pick))) for b, n, pick in partial]


def within_budget(front, limit, sens, layers, candidates, meter, evaluations):
    """``(chosen, options)``: the least predicted noise within ``limit`` (exact, from
    :func:`exact_pareto`: it may lie between two hull points), then the hull points below it,
    most expensive first; with an ``evaluate``, the best score among ``evaluations`` of them
    (ties: the lower predicted noise)."""
    from needle_qc.quantize.planner import byte_costs

    exact = [pt for pt in exact_pareto(sens, byte_costs(sens, layers, candidates))
             if pt[0] <= limit]
    if not exact:
        raise ValueError(f"plan: no assignment fits {limit:.0f} bytes (the smallest needs "
                         f"{front[0][0]} bytes)")
    options, seen = [], set()
    for pt in [exact[-1], *reversed([pt for pt in front if pt[0] <= limit])]:
        key = tuple(sorted(pt[2].items()))
        if key not in seen and len(options) < (evaluations if meter.evaluate else 1):
            seen.add(key)
            options.append(pt)
    if meter.evaluate is None:
        return options[0], options
    return max(options, key=lambda o: (meter(o[2])["score"], -o[1])), options


def within_drop(front, limit, max_drop, meter):
    """``(chosen, evaluated)``: the cheapest hull point within ``limit`` whose score is at most
    ``max_drop`` below the float model's, walking the front from the cheapest point."""
    reference = meter.reference_score()
    tried = []
    for pt in front:
        if pt[0] > limit:
            break
        tried.append(pt)
        if reference - meter(pt[2])["score"] <= max_drop:
            return pt, tried
    best = max(tried, key=lambda pt: meter(pt[2])["score"]) if tried else None
    found = "no point fits the budget" if best is None else \
        f"the best drop is {reference - meter(best[2])['score']:.4g} at {best[0]} bytes"
    raise ValueError(f"plan: no front point within max_drop={max_drop} of the float score "
                     f"{reference:.4g} ({found})")


def table(front, options, chosen, sens, layers, candidates, meter, measure):
    """Rows (dicts) of the front, the exact options off it and each scheme used uniformly;
    measured: the chosen point, ``measure`` rows either side of it (all with None) and,
    unless ``measure`` is 0, the uniform rows (points measured anyway keep their figures)."""
    from needle_qc.quantize.planner import byte_costs

    cost = byte_costs(sens, layers, candidates)
    weights = sum(count for count, _ in layers.values())
    keyed = {tuple(sorted(pt[2].items())): ("front", pt) for pt in front}
    for pt in options:
        keyed.setdefault(tuple(sorted(pt[2].items())), ("exact", pt))
    points = sorted(keyed.values(), key=lambda kp: (kp[1][0], kp[1][1]))
    chosen_key = tuple(sorted(chosen[2].items()))
    at = next(i for i, (_, pt) in enumerate(points)
              if tuple(sorted(pt[2].items())) == chosen_key)
    rows = []
    for i, (kind, (nbytes, noise, pick)) in enumerate(points):
        near = measure is None or abs(i - at) <= measure
        rows.append(_row(kind, nbytes, noise, pick, _mix(pick), i == at, weights, meter, near))
    for name in candidates:
        pick = {p: name for p in layers}
        rows.append(_row("uniform", sum(cost[p][name] for p in layers),
                         sum(sens[p][name] for p in layers), pick, f"uniform {name}", False,
                         weights, meter, measure != 0))
    return rows


def _row(kind, nbytes, noise, pick, mix, chosen, weights, meter, measure):
    got = meter(pick) if measure else (meter.measured(pick) or {})
    return {"kind": kind, "bytes": int(nbytes), "bits_per_weight": 8 * nbytes / weights,
            "noise": noise, "sqnr_db": got.get("sqnr_db"), "latency_ms": got.get("latency_ms"),
            "score": got.get("score"), "mix": mix, "assignment": dict(pick), "chosen": chosen}


def _mix(pick):
    names = sorted(set(pick.values()))
    return ", ".join(f"{n} x{sum(1 for v in pick.values() if v == n)}" for n in names)
