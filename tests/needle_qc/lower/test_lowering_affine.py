"""Static layers with affine (zero-point) weights on the int8 kernels, bit for bit = reference.

The graphs come from ``tests/needle_qc/passes/test_fuse_qdq_affine.py`` (one fused layer with a
chosen weight zero point) and from the zoo (MLP, SmallCNN under the report's ``uint8-affine``).
"""

import numpy as np
import pytest

import needle as ndl
from needle import quantization
from needle_qc.ir.graph import Graph
from needle_qc.lower import driver as lowering
from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from needle_qc.tools import report, zoo
from needle_qc.tools.compare import deviation
from tests.needle_qc.quantize.passes.test_fuse_qdq_affine import affine_layer, fused
from tests.needle_qc.quantize.qpass_models import batches, convnet, mlp, node_values

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

CASES = ["u8 z=0", "u8 z=255", "u8 z=77", "u8 z=128", "u8 per-channel", "i8 z=-128",
         "i8 per-channel"]


def assert_compiled_is_reference(graph, x):
    """Compiled (forced int8) = the op-table evaluation at every integer node and the output."""
    cm = compile(graph, force_int8=True)
    want, got = node_values(cm.graph, x), cm.node_values(x)
    integer = [n.name for n in cm.graph.nodes if n.op != "param"
               and n.meta.get("dtype") in ("uint8", "int8")]
    for name in integer:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"%{name}")
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())
    return cm


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind,kw", [("linear", {"k": 37}), ("linear", {"k": 64, "n": 19}),
                                     ("conv", {"stride": 1}), ("conv", {"stride": 2, "cin": 5})],
                         ids=["linear-k37", "linear-k64", "conv-s1", "conv-s2"])
def test_fused_affine_layer_compiles_to_the_int8_kernel_bit_exact(kind, kw, case):
    g, x = affine_layer(kind, case, seed=3, **kw)
    cm = assert_compiled_is_reference(fused(g), x)
    row = cm.explain().row("fc")
    assert row["status"].startswith("int8"), row
    assert row["kernel"].startswith(("gemm_u8s8_requant",) if kind == "linear" else
                                    ("conv2d_u8s8_requant", "conv2d_direct_u8s8_requant")), row
    if case not in ("u8 z=128", "i8 z=0"):
        assert "weight zero point applied in kernel" in row["why"], row["why"]


@pytest.mark.parametrize("case", ["u8 z=255", "u8 per-channel", "i8 z=-128"])
def test_float_output_and_int8_activations_bit_exact(case):
    g, x = affine_layer("linear", case, float_out=True, relu=False, seed=4)
    cm = compile(fused(g), force_int8=True)
    assert cm.explain().row("fc")["kernel"] == "u8s8 gemm s32 + fp32 scale"
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())
    g, x = affine_layer("linear", case, act_dtype="int8", seed=4)
    cm = assert_compiled_is_reference(fused(g), x)
    assert cm.explain().row("fc")["kernel"] == "gemm_s8s8_requant"


def test_conv_with_batch_one_and_many():
    g, _ = affine_layer("conv", "u8 per-channel", stride=2, seed=5)
    integer = fused(g)
    for batch in (1, 6):
        x = np.random.default_rng(batch).uniform(-4, 4, (batch, 3, 7, 7)).astype(np.float32)
        assert_compiled_is_reference(integer, x)


# A u8 weight whose |w - z_w| is 255 everywhere: with z_x = 128 the true sums stay below 2^31,
# but the activation zero point cannot be folded into the bias (255 * 255 * K > 2^31), so the
# kernel applies both zero points itself.
WIDE = """\
%x = placeholder() : f32[N,{k}]
%x_q = quantize(%x) {{dtype="uint8"}} : u8[N,{k}]{{s=0.03125, z=128}}
%w = param() {{tensor="w"}} : u8[{k},2]
%ws = param() {{tensor="ws"}} : f32[]
%wz = param() {{tensor="wz"}} : u8[2]
%y = qlinear(%x_q, %w, %ws, %wz) {{dtype="float32"}} : f32[N,2]
return %y"""


def wide(k, w_col, zp):
    w = np.tile(np.asarray(w_col, np.uint8), (k, 1))
    return Graph.parse(WIDE.format(k=k), {"w": w, "ws": np.float32(1e-6),
                                          "wz": np.asarray(zp, np.uint8)}).lint()


def test_both_zero_points_applied_in_kernel_when_the_fold_could_overflow():
    k = 40000
    g = wide(k, [255, 0], [0, 255])  # w - z = +255 and -255: z_w = 0 and 255, shifted -128/127
    x = np.random.default_rng(0).uniform(-4, 4, (3, k)).astype(np.float32)
    x[0] = 4  # a row at the top of the range
    cm = compile(g, force_int8=True)
    why = cm.explain().row("y")["why"]
    assert "zero point applied in kernel;" in why and "weight zero point" in why
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())


def test_overflow_proof_counts_the_weight_zero_point():
    # u8 weight 0 with z_w = 255: |w - z_w| = 255. Stored as int8 it is -128 (|raw| 128), so a
    # bound that forgot the zero point would claim 255 * 128 * K < 2^31 and accept the layer.
    k = 34000
    g = Graph.parse(WIDE.format(k=k).replace("z=128", "z=0"),
                    {"w": np.zeros((k, 2), np.uint8), "ws": np.float32(1e-6),
                     "wz": np.full(2, 255, np.uint8)}).lint()
    with pytest.raises(ValueError, match=r"%y \(qlinear\): the int32 accumulator could overflow"):
        compile(g, force_int8=True)
    x = np.full((1, k), 7.9, np.float32)  # x_q = 253: the reference overflows too
    with pytest.raises(OverflowError, match=r"%y \(qlinear\)"):
        g(x)


def test_float_version_dequantizes_with_the_zero_point(monkeypatch):
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 2.0 if kind == "int8" else 1.0)
    g, x = affine_layer("linear", "u8 per-channel", relu=False, seed=6)
    integer = fused(g)
    cm = compile(integer, autotune=True)
    assert cm.explain().row("fc")["status"] == "kept float (int8 slower)"
    got, want = cm(x), integer(x).numpy()
    step = integer.node("fc").meta["qparams"]["s"]
    np.testing.assert_allclose(got, want, atol=step * 1.001)


# ----------------------------------------------------------------------------- models

CONFIGS = {
    "uint8-affine": report.SCHEMES["uint8-affine"].qconfig_args,
    "u8-affine-channel": dict(weight="uint8", activation="static", weight_symmetric=False),
    "u8-symmetric": dict(weight="uint8", activation="static"),
    "i8-affine": dict(weight="int8", activation="static", weight_symmetric=False),
}


@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("model,tail", [(mlp, (4,)), (convnet, (1, 6, 6))], ids=["mlp", "conv"])
def test_every_layer_is_integer_and_bit_exact(model, tail, cfg):
    cm = compile(quantize_pass(model(), QConfig(**CONFIGS[cfg])),
                 calibration=batches((5,) + tail), force_int8=True)
    layers = [s for s in cm.program.steps if s.op in ("qlinear", "qconv2d")]
    assert len(layers) >= 2 and not any(s.op in ("linear", "conv2d") for s in cm.program.steps)
    assert all(s.active.kind == "int8" for s in layers)
    x = batches((7,) + tail, 1, seed=9)[0]
    want, got = node_values(cm.graph, x), cm.node_values(x)
    for s in layers:
        np.testing.assert_array_equal(got[s.node], want[s.node], err_msg=s.node)
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())


ZOO = ["mlp", "small_cnn"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_uint8_affine_runs_integer_kernels_within_accuracy_bounds(name):
    """The report's uint8-affine scheme: every layer on an int8 kernel, top-1 within 0.3 points
    of float32 and logits SQNR >= 25 dB (the bounds of tests/needle_qc/test_accuracy.py)."""
    model = zoo.load_pretrained(name)
    device = model.parameters()[0].device
    base = zoo.evaluate(name, lambda x: model(ndl.Tensor(x, device=device)), batch_size=500)
    args = dict(report.SCHEMES["uint8-affine"].qconfig_args)
    qm = quantization.quantize(model, args.pop("weight"), args.pop("activation"),
                               calibration_data=zoo.batches(name, "train", 64, limit=8),
                               example_input=zoo.example_input(name, 8), force_int8=True, **args)
    rows = [r for r in qm.compiled.explain().rows if r["op"] in ("qlinear", "qconv2d")]
    floats = [r["node"] for r in qm.compiled.explain().rows if r["op"] in ("linear", "conv2d")]
    assert rows and not floats, floats
    assert all(r["status"].startswith("int8") and "u8s8" in r["kernel"] for r in rows), rows
    score = zoo.evaluate(name, qm, batch_size=500)
    d = deviation(base["logits"], score["logits"])
    change = 100 * (score["accuracy"] - base["accuracy"])
    print(f"{name} uint8-affine: float {base['accuracy']:.4f} quant {score['accuracy']:.4f} "
          f"change {change:+.2f} points, SQNR {d['sqnr_db']:.1f} dB, "
          f"top-1 agreement {d['top1_agreement']:.4f}")
    assert change >= -0.3 and d["sqnr_db"] >= 25.0
