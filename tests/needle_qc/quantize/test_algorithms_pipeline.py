"""GPTQ, bias correction, equalization and SmoothQuant through QConfig -> compile (issue 16)."""

import numpy as np
import pytest

from needle_qc.ir.graph import Graph
from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import calibrate, quantize_pass
from needle_qc.quantize.layer_stats import LayerInputStats
from needle_qc.quantize.observers import observer_from_dict
from tests.needle_qc.quantize import qpass_models

LINEAR = """\
%x = placeholder() : f32[N,16]
%fc.weight = param() {tensor="fc.weight"} : f32[16,8]
%fc.bias = param() {tensor="fc.bias"} : f32[8]
%fc = linear(%x, %fc.weight, %fc.bias) : f32[N,8]
return %fc"""

NORM_LINEAR = """\
%x = placeholder() : f32[N,16]
%ln.weight = param() {tensor="ln.weight"} : f32[16]
%ln.bias = param() {tensor="ln.bias"} : f32[16]
%ln = layer_norm(%x, %ln.weight, %ln.bias) {eps=1e-05} : f32[N,16]
%fc.weight = param() {tensor="fc.weight"} : f32[16,8]
%fc.bias = param() {tensor="fc.bias"} : f32[8]
%fc = linear(%ln, %fc.weight, %fc.bias) : f32[N,8]
return %fc"""

INT4_CH = QConfig(weight="int4", weight_granularity="per_channel")
INT8_STATIC = QConfig(weight="int8", activation="static")


def _linear_graph(seed=0):
    g = Graph.parse(LINEAR)
    rng = np.random.default_rng(seed)
    g.tensors["fc.weight"] = rng.standard_normal((16, 8)).astype(np.float32) * 0.3
    g.tensors["fc.bias"] = rng.standard_normal(8).astype(np.float32) * 0.1
    return g.lint()


def _correlated_batches(seed=1, n=4, rows=128):
    """Inputs with strongly correlated features and a non-zero mean (GPTQ and bias correction
    have something to exploit)."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((4, 16))
    return [(rng.standard_normal((rows, 4)) @ mix + 0.5).astype(np.float32) for _ in range(n)]


def _compiled(graph, cfg, batches):
    prepared = quantize_pass(graph, cfg)
    calibrate(prepared, batches, progress=False)
    return compile(prepared)


def _outputs(fn, batches):
    return np.concatenate([np.asarray(_first(fn(b)), np.float64) for b in batches])


def _first(value):
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value.numpy() if hasattr(value, "numpy") else value


def _ops(cm):
    return sorted({n.op for n in cm.graph.nodes})


# ----------------------------------------------------------------------------- QConfig


def test_qconfig_algorithm_fields_round_trip_and_validate():
    cfg = QConfig(weight="int8", activation="static", rounding="gptq", gptq_percdamp=0.05,
                  gptq_act_order=True, bias_correction=True, equalization=True,
                  smoothquant="auto")
    assert QConfig.from_dict(cfg.to_dict()) == cfg
    assert QConfig().rounding == "nearest" and QConfig().smoothquant is None
    with pytest.raises(ValueError, match="rounding='rtn' is not valid"):
        QConfig(rounding="rtn")
    with pytest.raises(ValueError, match="smoothquant=1.5"):
        QConfig(weight="int8", activation="static", smoothquant=1.5)
    with pytest.raises(ValueError, match="smoothquant=0.5 needs activation='static'"):
        QConfig(weight="int8", smoothquant=0.5)
    with pytest.raises(ValueError, match="rounding='gptq' needs integer weights"):
        QConfig(weight="fp16", rounding="gptq")
    with pytest.raises(ValueError, match="bias_correction=True needs integer weights"):
        QConfig(weight="int8", activation="dynamic", bias_correction=True)


# ----------------------------------------------------------------------------- GPTQ


@pytest.mark.parametrize("cfg", [INT4_CH, QConfig(weight="int4", group_size=8),
                                 QConfig(weight="int8", activation="static")],
                         ids=["int4-ch", "int4-g8", "int8-static"])
def test_gptq_runs_on_the_same_kernels_with_lower_error_than_rtn(cfg):
    g, batches = _linear_graph(), _correlated_batches()
    ref = _outputs(g, batches)
    rtn = _compiled(g, cfg, batches)
    gptq = _compiled(g, cfg.replace(rounding="gptq"), batches)
    assert _ops(gptq) == _ops(rtn)
    err_rtn = np.mean((_outputs(rtn.run_arrays, batches) - ref) ** 2)
    err_gptq = np.mean((_outputs(gptq.run_arrays, batches) - ref) ** 2)
    # static: the uint8 activations' error is the same for both and dominates
    assert err_gptq < (0.7 if cfg.activation is None else 1.0) * err_rtn, (err_gptq, err_rtn)


def test_gptq_on_uncorrelated_unit_inputs_changes_little_and_needs_calibration():
    g = _linear_graph()
    prepared = quantize_pass(g, INT4_CH.replace(rounding="gptq"))
    with pytest.raises(ValueError, match="no calibration statistics|saw 0 batches"):
        compile(prepared)


def test_layer_stats_survive_copy_and_dict_round_trip():
    g, batches = _linear_graph(), _correlated_batches()
    prepared = quantize_pass(g, INT4_CH.replace(rounding="gptq"))
    calibrate(prepared, batches, progress=False)
    (name, stats), = [(k, v) for k, v in prepared.observers.items()
                      if isinstance(v, LayerInputStats)]
    again = observer_from_dict(stats.to_dict())
    assert np.array_equal(again.moments["linear"].xtx, stats.moments["linear"].xtx)
    x = np.concatenate(batches).astype(np.float64)
    assert np.allclose(stats.moments["linear"].hessian, 2 * x.T @ x / len(x))
    a = _compiled(g, INT4_CH.replace(rounding="gptq"), batches)
    b = compile(prepared.copy())
    assert np.array_equal(a.run_arrays(batches[0])[0], b.run_arrays(batches[0])[0])


# ----------------------------------------------------------------------------- bias correction


@pytest.mark.parametrize("cfg", [INT4_CH, QConfig(weight="int8", activation="static",
                                                  weight_granularity="per_tensor")],
                         ids=["int4-ch", "int8-static-tensor"])
def test_bias_correction_removes_the_mean_output_shift(cfg):
    g, batches = _linear_graph(), _correlated_batches()
    ref = _outputs(g, batches)
    shift = {}
    for bc in (False, True):
        cm = _compiled(g, cfg.replace(bias_correction=bc), batches)
        shift[bc] = np.abs(np.mean(_outputs(cm.run_arrays, batches) - ref, axis=0)).max()
    assert shift[True] < 0.25 * shift[False], shift
    if cfg.activation is None:  # weight-only: exact on the calibration data up to fp32
        assert shift[True] < 1e-4


def test_bias_correction_matches_the_analytic_shift_on_a_conv_net():
    g = qpass_models.convnet()
    rng = np.random.default_rng(3)
    batches = [(rng.standard_normal((8, 1, 6, 6)) + 1.0).astype(np.float32) for _ in range(3)]
    cm = _compiled(g, INT4_CH.replace(bias_correction=True), batches)
    conv1 = [n for n in cm.graph.nodes if n.name == "conv1"][0]
    bias = cm.graph.tensors[conv1.inputs[-1].attrs["tensor"]]
    x = np.concatenate(batches).astype(np.float64)
    from needle_qc.quantize.algorithms import unfold_nchw
    from needle_qc.quantize.lowbit import quantize_weight

    w = g.tensors["conv1.weight"]
    wq = quantize_weight(w, "int4", "per_channel").dequantize()
    want = g.tensors["conv1.bias"] + unfold_nchw(x, 3, 1, 1).mean(0) @ (w - wq).reshape(-1, 4)
    assert np.allclose(bias, want, atol=1e-6)


# ----------------------------------------------------------------------------- equalization


def test_equalization_keeps_float_outputs_and_balances_ranges():
    g = qpass_models.convnet()
    rng = np.random.default_rng(4)
    g.tensors["conv1.weight"] = g.tensors["conv1.weight"] * np.array([8, 1, 0.1, 2], np.float32)
    x = rng.standard_normal((8, 1, 6, 6)).astype(np.float32)
    prepared = quantize_pass(g, INT8_STATIC.replace(equalization=True))
    fp = compile(prepared, stop_after="float")
    assert np.allclose(fp.run_arrays(x)[0], _first(g(x)), rtol=1e-4, atol=1e-5)
    conv1, conv2 = (prepared.node(n) for n in ("conv1", "conv2"))
    w1 = prepared.tensors[conv1.inputs[1].attrs["tensor"]]
    w2 = prepared.tensors[conv2.inputs[1].attrs["tensor"]]
    r1 = np.abs(w1).reshape(-1, 4).max(0)
    r2 = np.abs(np.moveaxis(w2, 2, 0)).reshape(4, -1).max(1)
    assert np.allclose(r1, r2, rtol=1e-5)
    assert not np.allclose(w1, g.tensors["conv1.weight"])


def test_equalization_skips_layers_read_by_anything_else():
    g = qpass_models.mlp()
    cfg = INT8_STATIC.replace(equalization=True)
    kept = quantize_pass(g, cfg.replace(module_paths={"fc2": None}))
    assert kept.node("fc1").inputs[1].name == "fc1.weight"
    assert quantize_pass(g, cfg).node("fc1").inputs[1].name == "fc1.weight_eq"


# ----------------------------------------------------------------------------- SmoothQuant


def _norm_linear_graph():
    g = Graph.parse(NORM_LINEAR)
    rng = np.random.default_rng(5)
    gamma = np.ones(16, np.float32)
    gamma[[2, 9]] = 40.0  # two outlier channels, as in LLM activations
    g.tensors.update({"ln.weight": gamma, "ln.bias": np.zeros(16, np.float32),
                      "fc.weight": (rng.standard_normal((16, 8)) * 0.2).astype(np.float32),
                      "fc.bias": np.zeros(8, np.float32)})
    return g.lint()


@pytest.mark.parametrize("alpha", [0.5, "auto"])
def test_smoothquant_keeps_float_outputs_and_lowers_w8a8_error(alpha):
    g = _norm_linear_graph()
    rng = np.random.default_rng(6)
    batches = [rng.standard_normal((64, 16)).astype(np.float32) for _ in range(3)]
    ref = _outputs(g, batches)
    cfg = QConfig(weight="int8", activation="static")
    prepared = quantize_pass(g, cfg.replace(smoothquant=alpha))
    calibrate(prepared, batches, progress=False)
    smoothed = compile(prepared, stop_after="float")
    assert np.allclose(_outputs(smoothed.run_arrays, batches), ref, rtol=1e-4, atol=1e-4)
    info = prepared.node("ln").meta["smoothquant"]
    assert info["outliers"] == 2 and info["max_median_ratio"] > 10
    err = {}
    for name, c in (("plain", cfg), ("smooth", cfg.replace(smoothquant=alpha))):
        cm = _compiled(g, c, batches)
        assert "qlinear" in _ops(cm)
        err[name] = np.mean((_outputs(cm.run_arrays, batches) - ref) ** 2)
    assert err["smooth"] < 0.5 * err["plain"], err


# ----------------------------------------------------------------------------- int3 / int2 grids


@pytest.mark.parametrize("bits", [2, 3])
def test_narrow_grids_run_in_int4_storage_and_gptq_lowers_their_error(bits):
    g, batches = _linear_graph(), _correlated_batches()
    ref = _outputs(g, batches)
    cfg = QConfig(weight="int4", group_size=8, weight_bits=bits)
    rtn = _compiled(g, cfg, batches)
    fc = rtn.graph.node("fc")
    assert fc.attrs["weight_dtype"] == "int4"
    from needle_qc.quantize import unpack_int4

    q = unpack_int4(rtn.graph.tensors[fc.inputs[1].attrs["tensor"]], 16, axis=0, signed=True)
    assert np.abs(q).max() == 2 ** (bits - 1) - 1
    gptq = _compiled(g, cfg.replace(rounding="gptq"), batches)
    err_rtn = np.mean((_outputs(rtn.run_arrays, batches) - ref) ** 2)
    err_gptq = np.mean((_outputs(gptq.run_arrays, batches) - ref) ** 2)
    assert err_gptq < 0.7 * err_rtn, (err_gptq, err_rtn)


def test_weight_bits_is_refused_outside_4bit_weight_only():
    with pytest.raises(ValueError, match="weight_bits=3 is a grid inside 4-bit"):
        QConfig(weight="int8", weight_bits=3)
    with pytest.raises(ValueError, match="weight_bits=5 is not valid"):
        QConfig(weight="int4", weight_bits=5)


# ----------------------------------------------------------------------------- QAT


def _qat_setup():
    import needle as ndl
    from needle_qc import prepare_qat

    g = qpass_models.mlp()
    cfg = QConfig(weight="int4", weight_granularity="per_channel", weight_bits=2)
    x = np.random.default_rng(7).standard_normal((64, 4)).astype(np.float32)
    return ndl, g, cfg, prepare_qat(g, cfg), x


def test_qat_forward_is_what_convert_compiles():
    ndl, g, cfg, module, x = _qat_setup()
    cm = compile(module.convert())
    out = module(ndl.Tensor(x, device=module.device)).numpy()
    assert np.allclose(out, cm.run_arrays(x)[0], atol=1e-5)
    rtn = compile(quantize_pass(g, cfg))
    assert np.array_equal(cm.run_arrays(x)[0], rtn.run_arrays(x)[0])  # untrained: RTN


def test_qat_trains_through_the_fake_quant_and_beats_rtn():
    ndl, g, cfg, module, x = _qat_setup()
    target = _first(g(x))
    opt = ndl.optim.Adam(module.parameters(), lr=3e-3)
    for _ in range(60):
        opt.reset_grad()
        diff = module(ndl.Tensor(x, device=module.device)) - ndl.Tensor(target,
                                                                         device=module.device)
        ((diff * diff).sum() / target.size).backward()
        opt.step()
    qat = compile(module.convert())
    rtn = compile(quantize_pass(g, cfg))
    err_qat = np.mean((qat.run_arrays(x)[0] - target) ** 2)
    err_rtn = np.mean((rtn.run_arrays(x)[0] - target) ** 2)
    assert err_qat < 0.8 * err_rtn, (err_qat, err_rtn)


# ----------------------------------------------------------------------------- sequential GPTQ


def test_sequential_gptq_measures_each_layer_after_the_rounded_prefix():
    g = qpass_models.mlp()
    rng = np.random.default_rng(8)
    batches = [rng.standard_normal((64, 4)).astype(np.float32) for _ in range(2)]
    cfg = INT4_CH.replace(rounding="gptq", gptq_sequential=True)
    prepared = quantize_pass(g, cfg)
    calibrate(prepared, batches, progress=False)
    fc2_stats = prepared.observers[prepared.node("fc2").inputs[0].name]
    fc1_stats = prepared.observers[prepared.node("fc1").inputs[0].name]
    x = np.concatenate(batches).astype(np.float64)
    assert np.allclose(fc1_stats.frozen["fc1"].hessian, 2 * x.T @ x / len(x))
    from needle_qc.quantize.algorithms import gptq_quantize_weight
    from needle_qc.quantize.algorithms.gptq import CLIP_SHRINKS  # gptq_clip_search=True

    w1q = gptq_quantize_weight(g.tensors["fc1.weight"], fc1_stats.frozen["fc1"].hessian, "int4",
                               "per_channel", shrink=CLIP_SHRINKS).dequantize()
    h = np.maximum(np.concatenate(batches) @ w1q + g.tensors["fc1.bias"], 0).astype(np.float64)
    assert np.allclose(fc2_stats.frozen["fc2"].hessian, 2 * h.T @ h / len(h), rtol=1e-5,
                       atol=1e-7)
    assert prepared.node("fc1").inputs[1].name == "fc1.weight"  # float weights restored
    seq = compile(prepared)  # convert rounds fc2 from its frozen (prefix-rounded) moments
    from needle_qc.quantize import unpack_int4

    fc2 = seq.graph.node("fc2")
    q = unpack_int4(seq.graph.tensors[fc2.inputs[1].attrs["tensor"]], 8, axis=0, signed=True)
    want = gptq_quantize_weight(g.tensors["fc2.weight"], fc2_stats.frozen["fc2"].hessian, "int4",
                                "per_channel", shrink=CLIP_SHRINKS).q
    assert np.array_equal(q, want)


def test_sequential_gptq_is_weight_only():
    with pytest.raises(ValueError, match="gptq_sequential=True needs rounding='gptq'"):
        QConfig(weight="int8", activation="static", rounding="gptq", gptq_sequential=True)
