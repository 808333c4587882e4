"""lower(): kernel choice per node, bit-exact vs the interpreter, layouts, proofs, never-slower."""

import numpy as np
import pytest

from needle_qc.ir.graph import Graph
from needle_qc.lower import driver as lowering
from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from tests.needle_qc.quantize.qpass_models import batches, build, convnet, mlp, node_values

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

MODELS = {"mlp": (mlp, (4,)), "convnet": (convnet, (1, 6, 6))}
STATIC = dict(weight="int8", activation="static")


def compiled(model, cfg=None, **kw):
    make, tail = MODELS[model]
    cfg = QConfig(**(cfg or STATIC))
    cal = batches((5,) + tail) if cfg.activation == "static" else None
    return compile(quantize_pass(make(), cfg), calibration=cal, **kw)


def inputs(model, batch, seed=9):
    return batches((batch,) + MODELS[model][1], 1, seed=seed)[0]


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_int8_matches_interpreter_bit_for_bit_on_every_integer_node(model, batch):
    cm = compiled(model, force_int8=True)
    x = inputs(model, batch)
    want = node_values(cm.graph, x)
    got = cm.node_values(x)
    integer = [n.name for n in cm.graph.nodes if n.op != "param"
               and n.meta.get("dtype") in ("uint8", "int8")]
    assert integer, "the integer graph has integer nodes"
    for name in integer:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"%{name}")
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())


@pytest.mark.parametrize("cfg", [
    dict(weight="int8", activation="dynamic"),
    dict(weight="int8", activation="dynamic", activation_granularity="per_token"),
    dict(weight="int8", activation="static", activation_dtype="int8"),
    dict(weight="int4", group_size=2),
    dict(weight="fp16"),
    dict(weight="bf16"),
    dict(weight="uint4", weight_symmetric=False, group_size=2),
], ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_other_quantization_modes_match_the_interpreter(model, cfg):
    cm = compiled(model, cfg, force_int8=True)
    x = inputs(model, 7)
    want = cm.graph(x).numpy()
    if cfg.get("activation"):  # integer arithmetic: the same bits
        np.testing.assert_array_equal(cm(x), want)
    else:  # weight-only: fp32 accumulation order is the kernel's
        np.testing.assert_allclose(cm(x), want, rtol=1e-5, atol=1e-6)


def test_kernels_chosen_per_node():
    cm = compiled("convnet", force_int8=True)
    kernels = {r["node"]: r["kernel"] for r in cm.explain().rows if r["op"] != "layout"}
    assert kernels["x_q"] == "quantize_f32"
    assert kernels["conv1"].startswith(("conv2d_u8s8_requant", "conv2d_direct_u8s8_requant"))
    assert kernels["fc"] == "gemm_u8s8_requant"
    assert kernels["fc_dq"] == "dequantize"


def test_int8_activations_run_the_conv_kernel_shifted_to_uint8():
    cm = compiled("convnet", dict(STATIC, activation_dtype="int8"), force_int8=True)
    rows = {r["node"]: r for r in cm.explain().rows if r["op"] == "qconv2d"}
    assert rows and all(r["kernel"].startswith(("conv2d_u8s8", "conv2d_direct_u8s8"))
                        for r in rows.values())
    assert all("int8 input shifted to uint8" in r["why"] for r in rows.values())
    x = inputs("convnet", 7)
    want = node_values(cm.graph, x)
    got = cm.node_values(x)
    for name in rows:
        assert got[name].dtype == np.int8 or got[name].dtype == np.uint8
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"%{name}")


RESIDUAL = """\
%x = placeholder() : f32[N,4]
%fc1.weight = param() {tensor="fc1.weight"} : f32[4,4]
%fc1.bias = param() {tensor="fc1.bias"} : f32[4]
%fc1 = linear(%x, %fc1.weight, %fc1.bias) : f32[N,4]
%add = add(%fc1, %x) : f32[N,4]
%relu = relu(%add) : f32[N,4]
%fc2.weight = param() {tensor="fc2.weight"} : f32[4,3]
%fc2.bias = param() {tensor="fc2.bias"} : f32[3]
%fc2 = linear(%relu, %fc2.weight, %fc2.bias) : f32[N,3]
return %fc2"""


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_qadd_runs_on_the_quantize_kernels_bit_for_bit(act):
    cfg = QConfig(**dict(STATIC, activation_dtype=act))
    prepared = quantize_pass(build(RESIDUAL, seed=3), cfg)
    cm = compile(prepared, calibration=batches((5, 4)), force_int8=True)
    kernels = {r["node"]: r["kernel"] for r in cm.explain().rows}
    qadds = [n.name for n in cm.graph.nodes if n.op == "qadd"]
    assert qadds and all(kernels[n].startswith("qadd (dequantize + add") for n in qadds)
    x = batches((9, 4), 1, seed=4)[0] * 3  # beyond the calibrated range: clamping too
    want, got = node_values(cm.graph, x), cm.node_values(x)
    for name in qadds:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"%{name}")
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())


def test_consecutive_qconv2d_stay_nhwc_transposes_only_at_boundaries():
    cm = compiled("convnet", force_int8=True)
    steps = [(s.op, s.node) for s in cm.program.steps]
    layouts = [node for op, node in steps if op == "layout"]
    assert layouts == ["x_q", "conv2"]  # into the first conv, out of the last one
    ops = [op for op, _ in steps]
    assert ops.index("qconv2d") + 1 == ops.index("qconv2d", ops.index("qconv2d") + 1)


def test_weights_packed_once_and_zero_point_folded_into_bias(monkeypatch):
    import needle_qc._quant_cpu as q

    cm = compiled("convnet", force_int8=True)
    step = next(s for s in cm.program.steps if s.node == "fc")
    assert "zero point folded into int32 bias" in step.impl.why
    calls = []
    for name in ("pack_weight_s8", "pack_conv_weight_s8", "pack_conv_direct_s8"):
        original = getattr(q, name)
        monkeypatch.setattr(q, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    x = inputs("convnet", 3)
    cm(x)
    cm(x)
    assert calls == []  # nothing is packed per call
    compiled("convnet", force_int8=True)
    conv_packer = {"pack_conv_weight_s8", "pack_conv_direct_s8"} & set(calls)  # the spy works
    assert "pack_weight_s8" in calls and len(conv_packer) == 1


INT_MLP = """\
%x = placeholder() : f32[N,{k}]
%x_q = quantize(%x) {{dtype="uint8"}} : u8[N,{k}]{{s=0.05, z=128}}
%w = param() {{tensor="w"}} : i8[{k},{n}]
%ws = param() {{tensor="ws"}} : f32[{n}]
%y = qlinear(%x_q, %w, %ws) {{dtype="uint8"}} : u8[N,{n}]{{s=0.5, z=100}}
%y_dq = dequantize(%y) {{axis=-1, group_size=0}} : f32[N,{n}]
return %y_dq"""


def int_graph(k, n, w):
    scales = np.full(n, 0.01, np.float32)
    return Graph.parse(INT_MLP.format(k=k, n=n), {"w": w, "ws": scales})


def test_fast_path_only_when_the_saturation_proof_holds():
    rng = np.random.default_rng(0)
    small = rng.integers(-64, 65, (32, 8)).astype(np.int8)  # pairs <= 128: 255*128 <= 32767
    small[0, 0], small[1, 0] = 64, 64
    cm = compile(int_graph(32, 8, small), force_int8=True)
    why = cm.explain().row("y")["why"]
    assert "fast path proven: 255 x max_pair_abs 128 = 32640 <= 32767" in why
    x = rng.standard_normal((9, 32)).astype(np.float32)
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())
    big = small.copy()
    big[0, 0], big[1, 0] = 100, 100
    why = compile(int_graph(32, 8, big), force_int8=True).explain().row("y")["why"]
    assert why.startswith("exact path: 255 x max_pair_abs 200 = 51000 > 32767")


def test_layer_whose_accumulator_could_overflow_is_refused_naming_it():
    k = 140000  # (x - z_x) in [-128, 127]: 128 * 127 * 140000 > 2^31
    w = np.full((k, 1), 127, np.int8)
    with pytest.raises(ValueError, match=r"%y \(qlinear\): the int32 accumulator could overflow"):
        compile(int_graph(k, 1, w))


def test_never_slower_keeps_float_when_int8_measures_slower(monkeypatch):
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 2.0 if kind == "int8" else 1.0)
    cm = compiled("mlp", autotune=True)
    rows = {r["node"]: r for r in cm.explain().rows}
    for name in ("fc1", "fc2"):
        assert rows[name]["status"] == "kept float (int8 slower)"
        assert "kept float: int8 was slower" in rows[name]["why"]
        assert rows[name]["int8_us"] == 2e6 and rows[name]["float_us"] == 1e6
    x = inputs("mlp", 7)
    np.testing.assert_allclose(cm(x), cm.graph(x).numpy(), atol=0.05)  # the QDQ numbers
    forced = compiled("mlp", force_int8=True, autotune=True)
    for name in ("fc1", "fc2"):
        assert forced.explain().row(name)["status"] == "int8 (forced, slower)"
    np.testing.assert_array_equal(forced(x), forced.graph(x).numpy())


def test_never_slower_keeps_int8_when_faster(monkeypatch):
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 1.0 if kind == "int8" else 2.0)
    cm = compiled("convnet", autotune=True)
    assert cm.explain().row("conv1")["status"] == "int8"
    assert cm.choices() == {"conv1": "primary", "conv2": "primary", "fc": "primary"}


def test_reference_target_is_the_interpreter():
    cm = compiled("convnet", target="reference")
    assert {r["status"] for r in cm.explain().rows} == {"reference"}
    x = inputs("convnet", 7)
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())


def test_cuda_target_needs_kernels_and_a_gpu():
    import needle

    if needle.cuda().enabled():
        pytest.skip("a GPU is present: the CUDA lowering is exercised by the CUDA tests")
    with pytest.raises(ValueError, match="target='cuda'"):
        compiled("mlp", target="cuda")


def test_bad_target_is_refused():
    with pytest.raises(ValueError, match="target='tpu'; valid"):
        compiled("mlp", target="tpu")


def test_float_graph_compiles_to_fp32_kernels():
    g = convnet()
    cm = compile(g)
    x = inputs("convnet", 7)
    np.testing.assert_allclose(cm(x), g(x).numpy(), rtol=1e-5, atol=1e-6)
    assert cm.stage == "float"
    assert cm.explain().row("conv1")["kernel"].startswith(("fp32 direct conv", "fp32 im2col gemm"))
