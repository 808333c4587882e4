"""Mixed-precision planner: the front against brute force, the accuracy-driven choice,
max_drop, the latency column and clear errors for bad budgets (issue 16)."""

import itertools
import math

import numpy as np
import pytest

from needle_qc.quantize.planner import (
    CANDIDATES,
    budget_bytes,
    byte_costs,
    pareto,
    plan,
    weight_layers,
)
from needle_qc.quantize.planner_choice import exact_pareto, within_budget
from tests.needle_qc.quantize import qpass_models

SCHEMES = ("int4-ch", "int4-g32", "int8-ch")
LAYERS = {"a": (4096, [(64, 64)]), "b": (4096, [(64, 64)]), "c": (2048, [(32, 64)])}


def _brute_force(sens, cost):
    """Every assignment as (bytes, noise, pick) and the exact Pareto set (no other point as
    cheap and less noisy)."""
    paths = sorted(sens)
    points = []
    for combo in itertools.product(*(sorted(sens[p]) for p in paths)):
        pick = dict(zip(paths, combo))
        points.append((sum(cost[p][s] for p, s in pick.items()),
                       sum(sens[p][s] for p, s in pick.items()), pick))
    exact = [pt for pt in points if not any(
        q[0] <= pt[0] and q[1] <= pt[1] and (q[0], q[1]) != (pt[0], pt[1]) for q in points)]
    return points, sorted(exact, key=lambda t: t[0])


def _lower_hull(points):
    """Vertices of the lower convex hull of (bytes, noise) points sorted by bytes."""
    hull = []
    for pt in points:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], pt) <= 0:
            hull.pop()
        hull.append(pt)
    return hull


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _sens(values):
    return {p: dict(zip(SCHEMES, row)) for p, row in zip(sorted(LAYERS), values)}


def test_front_equals_the_brute_force_pareto_set_when_it_is_convex():
    # equal layers with two schemes: every upgrade costs the same bytes, so the exact set is
    # "the k largest gains" for k = 0..3, convex, and the Lagrangian reaches all of it
    layers = {p: (4096, [(64, 64)]) for p in "abc"}
    sens = {"a": {"int4-ch": 9.0, "int8-ch": 0.5}, "b": {"int4-ch": 4.0, "int8-ch": 0.2},
            "c": {"int4-ch": 2.0, "int8-ch": 1.1}}
    _, exact = _brute_force(sens, byte_costs(sens, layers, CANDIDATES))
    front = pareto(sens, layers, CANDIDATES)
    assert len(exact) == 4
    assert [(b, pytest.approx(n), p) for b, n, p in front] == exact


def test_front_is_the_lower_hull_and_the_dp_the_whole_brute_force_pareto_set():
    # layer a gains little from int4-g32 but much from int8: concave dents the Lagrangian
    # cannot reach; the exact set (dynamic programming) has them, and the budget choice too
    sens = _sens([(9.0, 8.5, 0.5), (4.0, 1.0, 0.2), (2.0, 1.9, 0.1)])
    cost = byte_costs(sens, LAYERS, CANDIDATES)
    points, exact = _brute_force(sens, cost)
    front = pareto(sens, LAYERS, CANDIDATES)
    assert [p for _, _, p in front] == [p for _, _, p in _lower_hull(exact)]
    assert len(front) < len(exact)
    assert [(b, pytest.approx(n), p) for b, n, p in exact_pareto(sens, cost)] == exact
    for limit in sorted({b for b, _, _ in points}):
        chosen, _ = within_budget(front, limit, sens, LAYERS, CANDIDATES, _NoEvaluate, 1)
        assert chosen[0] <= limit
        assert chosen[1] == pytest.approx(min(n for b, n, _ in points if b <= limit))


class _NoEvaluate:
    evaluate = None


def _batches():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((32, 1, 6, 6)).astype(np.float32) for _ in range(2)]


@pytest.fixture(scope="module")
def scanned():
    g = qpass_models.convnet()
    return g, plan(g, _batches(), budget=12.0, measure=None)


def test_every_point_has_a_positive_latency_and_an_sqnr(scanned):
    _, p = scanned
    assert p.latency_ms > 0 and math.isfinite(p.sqnr_db)
    for row in p.table:
        assert row["latency_ms"] > 0 and row["sqnr_db"] is not None
        assert row["score"] is None
    header = str(p).splitlines()[0]
    assert "ms" in header and "SQNR dB" in header


def test_evaluate_picks_the_point_it_prefers_within_the_budget(scanned):
    g, by_noise = scanned
    calls = []

    def evaluate(cm):  # prefers the second point it sees, whatever it is
        calls.append(cm)
        return 0.9 if len(calls) == 2 else 0.1

    p = plan(g, _batches(), budget=12.0, evaluate=evaluate, evaluations=3, measure=0,
             scan=by_noise.sensitivity)
    assert p.score == 0.9
    chosen = next(r for r in p.table if r["chosen"])
    assert chosen["bytes"] <= budget_bytes(12.0, weight_layers(g)) == 12.0 / 8 * 288
    assert chosen["assignment"] != by_noise.assignment  # not the least predicted noise
    assert chosen["noise"] > next(r for r in by_noise.table if r["chosen"])["noise"]


def test_max_drop_picks_the_smallest_mix_within_the_drop(scanned):
    g, by_noise = scanned
    x = _batches()[0]
    ref = g(x).numpy()

    def evaluate(cm):  # minus the output error: 0 for the float model
        return -float(np.mean((cm.run_arrays(x)[0] - ref) ** 2))

    errors = {}
    for drop in (1e-4, 1e-6):
        p = plan(g, _batches(), budget=None, max_drop=drop, evaluate=evaluate, measure=None,
                 scan=by_noise.sensitivity)
        front = [r for r in p.table if r["kind"] == "front"]
        ok = [r for r in front if p.reference_score - r["score"] <= drop]
        assert p.bytes == min(r["bytes"] for r in ok)
        errors[drop] = p.bytes
    assert errors[1e-6] > errors[1e-4] >= min(r["bytes"] for r in p.table)
    scores = iter([1.0])  # the float model first, then every mix 1 point worse

    with pytest.raises(ValueError, match=r"no front point within max_drop=0.5 of the float "
                       r"score 1 \(the best drop is 1 at \d+ bytes\)"):
        plan(g, _batches(), budget=None, max_drop=0.5, evaluate=lambda cm: next(scores, 0.0),
             scan=by_noise.sensitivity)


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 0}, r"budget=0 must be bytes"),
    ({"budget": -3.5}, r"budget=-3.5 must be bytes"),
    ({"budget": float("nan")}, r"budget=nan must be bytes"),
    ({"budget": True}, r"budget=True must be bytes"),
    ({"budget": "int2"}, r"budget='int2'; a scheme name"),
    ({"budget": None}, r"budget=None \(no byte limit\) needs max_drop"),
    ({"max_drop": 0.01}, r"max_drop needs evaluate="),
    ({"max_drop": -1, "evaluate": len}, r"max_drop=-1 must be a number >= 0"),
    ({"evaluate": 3}, r"evaluate=3 must be a callable"),
    ({"measure": -1}, r"measure=-1 must be an int >= 0"),
    ({"evaluations": 0}, r"evaluations=0 must be an int >= 1"),
    ({"scan": {"fc": {}}}, r"scan= covers \['fc'\]"),
])
def test_bad_options_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan(qpass_models.convnet(), _batches(), **kwargs)


def test_lstm_layers_are_paths_an_override_accepts_with_all_their_weights():
    from needle_qc.quantize import QConfig
    from needle_qc.quantize.api import quantize_pass
    from needle_qc.tools import report

    model, _ = report.load_model("lstm_lm", progress=False)
    g = report.trace_model("lstm_lm", model)
    layers = weight_layers(g)
    assert "linear" in layers
    for path in layers:  # the plan's QConfig names each of them: none may be refused
        quantize_pass(g, QConfig(weight=None, module_paths={path: CANDIDATES["int8-ch"]}))
    cell = layers.get("seq_model.lstm_cells.0")  # listed once the quantizer accepts its path
    assert cell is None or cell == (2 * 32 * 128, [(32, 128), (32, 128)])
