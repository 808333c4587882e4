"""The generated straight-line run function: same calls, same order, same frees as the loop."""

import numpy as np
import pytest

import needle_qc as qc
from needle_qc.runtime.codegen import straight_line


def _plan():
    calls = []

    def record(name, fn):
        def call(*args):
            calls.append((name, len(args)))
            return fn(*args)
        return call

    plan = [
        (record("add", np.add), ("x", "w.0"), "a", ()),
        (record("mul", np.multiply), ("a", "x"), "b", ("x",)),
        (record("neg", np.negative), ("b",), "c", ("a", "b")),
    ]
    return plan, calls


def test_generated_source_unrolls_the_plan_with_frees():
    plan, calls = _plan()
    w = np.full(3, 2.0)
    run = straight_line(plan, ["x"], {"w.0": w}, ["c", "w.0"])
    assert run.source == (
        "def run(v0, f0=f0, c0=c0, f1=f1, f2=f2):\n"
        "    v1 = f0(v0, c0)\n"
        "    v2 = f1(v1, v0)\n"
        "    del v0\n"
        "    v3 = f2(v2)\n"
        "    del v1, v2\n"
        "    return [v3, c0]\n")
    out, const = run(np.arange(3.0))
    np.testing.assert_array_equal(out, -(np.arange(3.0) + 2.0) * np.arange(3.0))
    assert const is w
    assert calls == [("add", 2), ("mul", 2), ("neg", 1)]


def test_names_that_are_not_identifiers_and_a_passthrough_output():
    plan = [(np.negative, ("in.0",), "1st value", ())]
    run = straight_line(plan, ["in.0"], {}, ["1st value", "in.0"])
    x = np.ones(2)
    y, same = run(x)
    np.testing.assert_array_equal(y, -x)
    assert same is x


def test_a_step_reading_a_value_nobody_computed_is_a_clear_error():
    plan = [(np.negative, ("ghost",), "y", ())]
    with pytest.raises(ValueError, match="%ghost is used before any step computes it"):
        straight_line(plan, ["x"], {}, ["y"])


def _compiled(name, scheme):
    model = qc.zoo.load_pretrained(name)
    entry = qc.zoo.get(name)
    graph = qc.trace(model, qc.zoo.example_input(name, 4), batch_dims=entry.input.batch_dim)
    if scheme is None:
        qc.run_passes(graph, qc.FLOAT_PIPELINE)
        return qc.compile(graph, tune_kernels=False)
    prepared = qc.quantize_pass(graph, qc.QConfig.preset(scheme))
    qc.calibrate(prepared, [qc.zoo.example_input(name, 4, seed=s) for s in (2, 3)],
                 progress=False)
    return qc.compile(prepared, tune_kernels=False)


@pytest.mark.parametrize("scheme", [None, "int8-static", "int8-dyn"])
@pytest.mark.parametrize("name", qc.zoo.list_models())
def test_generated_run_equals_the_loop_on_every_zoo_model(name, scheme):
    cm = _compiled(name, scheme)
    assert f"= f{len(cm.program.steps) - 1}(" in cm.code  # every step is one line
    for batch in (1, 3):
        x = qc.zoo.example_input(name, batch, seed=7)
        fast, loop = cm.run_arrays(x), cm.run_loop(x)
        assert len(fast) == len(loop)
        for a, b in zip(fast, loop):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
