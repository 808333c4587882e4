"""needle_qc.prepare: one call from a model to its observed graph, equal to the two-step path."""
import numpy as np
import pytest

import needle_qc as qc


def test_prepare_equals_trace_then_quantize_pass():
    model = qc.zoo.load_pretrained("mlp")
    x = qc.zoo.example_input("mlp", 8)
    batches = [qc.zoo.example_input("mlp", 8, seed=s) for s in range(1, 4)]
    one_call = qc.prepare(model, "int8-static", x)
    two_steps = qc.quantize_pass(qc.trace(model, x), qc.QConfig.preset("int8-static"))
    assert str(one_call) == str(two_steps)
    a = qc.compile(one_call, calibration=batches)(x)
    b = qc.compile(two_steps, calibration=batches)(x)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "qlinear" in {n.op for n in qc.compile(one_call, calibration=batches).graph.nodes}


def test_prepare_refuses_what_is_not_a_config():
    model = qc.zoo.load_pretrained("mlp")
    with pytest.raises(TypeError, match="QConfig or a scheme name"):
        qc.prepare(model, {"weight": "int8"}, qc.zoo.example_input("mlp", 2))
    with pytest.raises(ValueError, match="int8-static"):
        qc.prepare(model, "int8-statik", qc.zoo.example_input("mlp", 2))
