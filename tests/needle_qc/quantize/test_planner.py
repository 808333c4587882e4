"""Mixed-precision planner: byte counts, sensitivity scan, Pareto front, budget (issue 16)."""

import numpy as np
import pytest

from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from needle_qc.quantize.planner import CANDIDATES, pareto, plan, scheme_bytes, weight_layers
from tests.needle_qc.quantize import qpass_models


def _batches():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((32, 1, 6, 6)).astype(np.float32) for _ in range(2)]


def test_scheme_bytes_count_payload_and_fp32_scales():
    assert scheme_bytes(None, (64, 16)) == 4 * 64 * 16
    assert scheme_bytes(QConfig(weight="fp16"), (64, 16)) == 2 * 64 * 16
    assert scheme_bytes(CANDIDATES["int8-ch"], (64, 16)) == 64 * 16 + 4 * 16
    assert scheme_bytes(CANDIDATES["int4-g32"], (64, 16)) == 64 * 16 // 2 + 4 * 16 * 2
    # conv per channel on the int4 kernels: one scale per tap and output channel
    assert scheme_bytes(CANDIDATES["int4-ch"], (3, 3, 4, 8)) == 3 * 3 * 4 * 8 // 2 + 4 * 9 * 8


def test_pareto_front_is_monotone_and_spans_cheapest_to_best():
    layers = {"a": (64, [(8, 8)]), "b": (64, [(8, 8)])}
    sens = {"a": {"int8-ch": 1.0, "int4-ch": 4.0}, "b": {"int8-ch": 0.1, "int4-ch": 9.0}}
    front = pareto(sens, layers, CANDIDATES)
    assert [p for _, _, p in front] == [{"a": "int4-ch", "b": "int4-ch"},
                                        {"a": "int4-ch", "b": "int8-ch"},
                                        {"a": "int8-ch", "b": "int8-ch"}]
    costs = [c for _, c, _ in front]
    assert costs == sorted(costs, reverse=True)


def test_plan_fits_the_budget_beats_uniform_and_compiles():
    g = qpass_models.convnet()
    batches = _batches()
    assert set(weight_layers(g)) == {"conv1", "conv2", "fc"}
    p = plan(g, batches, budget="int4-g32")
    uniform = next(r for r in p.table if r["mix"] == "uniform int4-g32")
    assert p.bytes <= uniform["bytes"]
    chosen = next(r for r in p.table if r["chosen"])
    assert chosen["noise"] <= uniform["noise"]
    assert set(p.qconfig.module_paths) == {"conv1", "conv2", "fc"}
    cm = compile(quantize_pass(g, p.qconfig))
    assert cm.run_arrays(batches[0])[0].shape == (32, 3)
    assert "<- chosen" in str(p)


def test_plan_refuses_a_budget_nothing_fits():
    with pytest.raises(ValueError, match="no assignment fits 10 bytes"):
        plan(qpass_models.convnet(), _batches(), budget=10)
    with pytest.raises(ValueError, match="budget='int2'"):
        plan(qpass_models.convnet(), _batches(), budget="int2")
