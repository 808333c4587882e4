"""CompiledModel: inputs and outputs, stages, explain(), memory_report(), buffer plan."""

import numpy as np
import pytest

import needle as ndl
from needle_qc.pipeline import compile, stage_of
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from tests.needle_qc.quantize.qpass_models import batches, convnet, mlp

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

STATIC = QConfig(weight="int8", activation="static")


@pytest.fixture(scope="module")
def prepared():
    return quantize_pass(mlp(), STATIC)


@pytest.fixture(scope="module")
def model(prepared):
    return compile(prepared, calibration=batches((5, 4)), force_int8=True)


def x_of(batch, seed=3):
    return np.random.default_rng(seed).standard_normal((batch, 4)).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_numpy_in_numpy_out_any_batch(model, batch):
    y = model(x_of(batch))
    assert isinstance(y, np.ndarray) and y.shape == (batch, 3) and y.dtype == np.float32


def test_tensor_in_tensor_out_same_numbers(model):
    x = x_of(7)
    t = ndl.Tensor(x, device=ndl.cpu_numpy(), requires_grad=True)
    y = model(t)
    assert isinstance(y, ndl.Tensor) and y.device == t.device and not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), model(x))


def test_wrong_input_shape_names_the_input(model):
    with pytest.raises(ValueError, match=r"input %x: shape \(2, 5\).*dim 5 should be 4"):
        model(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="takes 1 inputs"):
        model(x_of(2), x_of(2))


@pytest.mark.parametrize("stage", ["float", "observed", "qdq", "int8"])
def test_stop_after_returns_the_runner_of_that_stage(prepared, stage):
    cal = batches((5, 4)) if stage in ("qdq", "int8") else None
    graph = prepared if stage != "observed" else quantize_pass(mlp(), STATIC)
    cm = compile(graph, stop_after=stage, calibration=cal)
    assert cm.stage == stage and stage_of(cm.graph) == stage
    x = x_of(7)
    np.testing.assert_allclose(cm(x), cm.graph(x).numpy(), rtol=1e-6, atol=1e-6)


def test_observed_runner_records_statistics():
    graph = quantize_pass(mlp(), STATIC)
    cm = compile(graph, stop_after="observed")
    cm(x_of(4))
    assert all(obs.n_updates == 1 for obs in graph.observers.values())


def test_stage_errors_are_clear(prepared):
    with pytest.raises(ValueError, match="stop_after='int4'; valid"):
        compile(prepared, stop_after="int4")
    with pytest.raises(ValueError, match="no calibration statistics.*calibration=batches"):
        compile(quantize_pass(mlp(), STATIC))
    with pytest.raises(ValueError, match="float graph cannot reach stage 'int8'"):
        compile(mlp(), stop_after="int8")
    with pytest.raises(ValueError, match="calibration= only applies to an observed graph"):
        compile(mlp(), calibration=batches((5, 4)))


def test_calibration_for_a_graph_without_observers_is_ignored_and_noted():
    weight_only = quantize_pass(mlp(), QConfig(weight="int4", group_size=2))
    cm = compile(weight_only, calibration=batches((5, 4)))
    assert cm.config["calibration"] == "ignored: the graph was already at stage 'int8'"


def test_explain_names_kernel_reason_and_times(prepared):
    model = compile(prepared, calibration=batches((5, 4)), force_int8=True, autotune=True)
    text = str(model.explain())
    assert "gemm_u8s8_requant" in text and "quantize_f32" in text
    row = model.explain().row("fc1")
    assert row["op"] == "qlinear" and row["status"] in ("int8", "int8 (forced, slower)")
    assert row["int8_us"] > 0 and row["float_us"] > 0
    assert "exact path" in row["why"] or "fast path proven" in row["why"]


def test_memory_report_measures_packed_buffers(model):
    report = model.memory_report(batch_size=10)
    int8 = report.weights["int8"]
    assert int8["weights"] == 4 * 8 + 8 * 3
    assert int8["theoretical_bytes"] == 56
    assert int8["measured_bytes"] >= 56  # padded panels as allocated
    assert int8["qparam_bytes"] > 0
    assert int8["bits_per_weight"] == 8 * (int8["measured_bytes"] + int8["qparam_bytes"]) / 56
    # the batch-10 plan: x (f32) and x_q live, then x_q and fc1 (u8), ...
    assert report.peak_activation_bytes == model.program.peak_activation_bytes(10)
    assert model.memory_report(batch_size=20).peak_activation_bytes == \
        2 * report.peak_activation_bytes
    assert "int8" in str(report) and "peak activations" in str(report)


def test_buffer_plan_frees_values_after_their_last_use(model):
    frees = dict(zip([s.node for s in model.program.steps], model.program.frees()))
    assert frees["x_q"] == ["x"] and frees["fc1"] == ["x_q"] and frees["fc2"] == ["fc1"]
    assert frees["fc2_dq"] == ["fc2"]


def test_float_memory_report_counts_fp32_weights():
    cm = compile(convnet())
    f32 = cm.memory_report().weights["float32"]
    assert f32["weights"] == 3 * 3 * 4 + 3 * 3 * 4 * 4 + 36 * 3
    # the direct conv's packed panels pad Cout up to 8 columns: 4 -> 8 here (twice the bytes)
    padding = 4 * (3 * 3 * 4 + 3 * 3 * 4 * 4) if "direct" in cm.explain().row("conv1")[
        "kernel"] else 0
    assert f32["measured_bytes"] == 4 * f32["weights"] + padding


EMBED = """\
%x = placeholder() : f32[N,3]
%emb.weight = param() {tensor="emb.weight"} : f32[10,4]
%emb = embedding(%x, %emb.weight) : f32[N,3,4]
return %emb"""


def test_timing_inputs_for_token_ids_are_valid_rows():
    from needle_qc.ir.graph import Graph
    from needle_qc.lower.driver import lower
    from needle_qc.pipeline import _example_inputs

    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    g = Graph.parse(EMBED, {"emb.weight": table})
    (ids,) = _example_inputs(lower(g), 64)
    assert ids.shape == (64, 3) and ids.dtype == np.float32
    assert (ids == np.round(ids)).all() and ids.min() >= 0 and ids.max() <= 9
    cm = compile(g)
    np.testing.assert_array_equal(cm(ids), g(ids).numpy())
    assert "tuning" not in cm.config
