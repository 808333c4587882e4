"""Activation QAT: the fake-quant op (forward, clipped STE, LSQ), prepare_qat with static
activations, convert() writing the trained qparams, and a seeded end-to-end run."""

import numpy as np
import pytest

import needle as ndl
from needle_qc.ir.graph import Graph
from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from needle_qc.quantize.fake_quant import (
    activation_fake_quant_op,
    clipped_ste_grad,
    fake_quantize,
    lsq_grad_scale,
    lsq_scale_grad,
)
from needle_qc.quantize.qat import prepare_qat
from needle_qc.quantize.qparams import qrange
from tests.needle_qc.quantize import qpass_models

QDQ = """\
%x = placeholder() : f32[N,{n}]
%x_q = quantize(%x) {{dtype="{dtype}"}} : {short}[N,{n}]{{s={s}, z={z}}}
%x_dq = dequantize(%x_q) {{axis=-1, group_size=0}} : f32[N,{n}]
return %x_dq"""

CASES = [("uint8", "u8", 0.1, 3), ("uint8", "u8", 0.0078125, 128), ("int8", "i8", 0.05, -7)]


def _extremes(s, z, dtype, n=64, seed=0):
    """Values on both sides of the grid, exact ties (k + 0.5) * s, 0, and huge magnitudes."""
    qmin, qmax = qrange(dtype)
    rng = np.random.default_rng(seed)
    x = rng.uniform((qmin - z - 20) * s, (qmax - z + 20) * s, n)
    ties = (np.arange(qmin - z - 2, qmax - z + 2, 17) + 0.5) * s
    return np.concatenate([x, ties, [0.0, -0.0, 1e30, -1e30, (qmax - z) * s,
                                     (qmin - z) * s]]).astype(np.float32).reshape(1, -1)


def _op(z, dtype, g=1.0):
    return activation_fake_quant_op(ndl)(z, dtype, g, ndl.cpu())


@pytest.mark.parametrize("dtype,short,s,z", CASES)
def test_fake_quant_forward_is_the_op_tables_quantize_dequantize(dtype, short, s, z):
    x = _extremes(s, z, dtype)
    g = Graph.parse(QDQ.format(n=x.shape[1], dtype=dtype, short=short, s=s, z=z))
    want = g(x).numpy()
    np.testing.assert_array_equal(fake_quantize(x, s, z, dtype), want)
    scale = ndl.Tensor(np.array([s], np.float32), device=ndl.cpu(), requires_grad=False)
    got = _op(z, dtype)(ndl.Tensor(x, device=ndl.cpu()), scale).numpy()
    np.testing.assert_array_equal(got, want)


def test_clipped_ste_passes_the_gradient_inside_the_range_only():
    # uint8, s = 0.5, z = 2: the grid covers x in [-1.0, 126.5]
    x = np.array([[-3.0, -1.0, -0.9, 0.2, 60.25, 126.5, 126.6, 500.0]], np.float32)
    w = np.arange(1, 9, dtype=np.float32).reshape(1, -1)  # d loss / d y
    xt = ndl.Tensor(x, device=ndl.cpu())
    s = ndl.Tensor(np.array([0.5], np.float32), device=ndl.cpu())
    (_op(2, "uint8")(xt, s) * ndl.Tensor(w, device=ndl.cpu())).sum().backward()
    want = w * np.array([0, 1, 1, 1, 1, 1, 0, 0], np.float32)
    np.testing.assert_array_equal(xt.grad.numpy(), want)
    np.testing.assert_array_equal(clipped_ste_grad(w, x, 0.5, 2, "uint8"), want)


def test_lsq_scale_gradient_closed_form_and_gradient_scale():
    # s = 0.5, z = 0, uint8: v = x / s = [-2, 0.6, 1.48, 400] -> below, inside, inside, above
    x = np.array([[-1.0, 0.3, 0.74, 200.0]], np.float32)
    w = np.array([[1.0, 2.0, -1.0, 0.5]], np.float32)
    v = x / np.float32(0.5)
    local = [0 - 0, np.rint(v[0, 1]) - v[0, 1], np.rint(v[0, 2]) - v[0, 2], 255 - 0]
    want = float(np.sum(w * np.array(local, np.float64)))
    assert lsq_scale_grad(w, x, 0.5, 0, "uint8") == pytest.approx(want, rel=1e-6)
    g = lsq_grad_scale(4, "uint8")
    assert g == pytest.approx(1 / np.sqrt(4 * 255))
    s = ndl.nn.Parameter(ndl.Tensor(np.array([0.5], np.float32), device=ndl.cpu()))
    out = _op(0, "uint8", g)(ndl.Tensor(x, device=ndl.cpu(), requires_grad=False), s)
    (out * ndl.Tensor(w, device=ndl.cpu())).sum().backward()
    assert s.grad.numpy()[0] == pytest.approx(g * want, rel=1e-6)


@pytest.mark.parametrize("z,dtype", [(0, "uint8"), (37, "uint8"), (-3, "int8")])
def test_lsq_scale_gradient_is_the_derivative_of_its_straight_through_surrogate(z, dtype):
    """LSQ's d/ds is the exact derivative of ``s * clip(x / s) + s * c`` with the rounding
    residual ``c = rint(v0) - v0`` held at s0 (rounding passed straight through)."""
    qmin, qmax = qrange(dtype)
    s0 = 0.0371
    x = np.random.default_rng(3).uniform((qmin - z - 30) * s0, (qmax - z + 30) * s0,
                                         (2, 50)).astype(np.float64)
    w = np.random.default_rng(4).standard_normal(x.shape)
    v0 = x / s0
    inside = (v0 >= qmin - z) & (v0 <= qmax - z)
    c = np.where(inside, np.rint(v0) - v0, 0.0)

    def surrogate(s):
        return float(np.sum(w * (s * np.clip(x / s, qmin - z, qmax - z) + s * c)))

    h = 1e-7
    fd = (surrogate(s0 + h) - surrogate(s0 - h)) / (2 * h)
    got = lsq_scale_grad(w, x.astype(np.float32), s0, z, dtype)
    assert got == pytest.approx(fd, rel=1e-4, abs=1e-4)


# ----------------------------------------------------------------------------- prepare_qat

W8A8 = QConfig(weight="int8", activation="static", weight_granularity="per_channel")
W4A8 = QConfig(weight="int4", activation="static")


def _mlp_module(cfg=W4A8, learn_scales=True):
    g = qpass_models.mlp()
    cal = qpass_models.batches((16, 4), 4)
    return g, cal, prepare_qat(g, cfg, calibration=cal, learn_scales=learn_scales)


def test_static_qat_needs_calibration_and_refuses_calibrated_weight_changes():
    g = qpass_models.mlp()
    with pytest.raises(ValueError, match="calibration=batches"):
        prepare_qat(g, W4A8)
    with pytest.raises(ValueError, match="bias_correction"):
        prepare_qat(g, W8A8.replace(bias_correction=True), calibration=[np.zeros((2, 4))])


def test_untrained_static_qat_converts_to_the_calibrated_rtn_model():
    g, cal, module = _mlp_module(learn_scales=False)
    assert module.parameters() and not any(id(p) in {id(s) for s in
                                                     module.activation_scales.values()}
                                            for p in module.parameters())
    prepared = quantize_pass(g, W4A8)
    x = qpass_models.batches((9, 4), 1, seed=5)[0]
    rtn = compile(prepared, calibration=cal)
    qat = compile(module.convert())
    np.testing.assert_array_equal(qat(x), rtn(x))
    y = module(ndl.Tensor(x, device=module.device)).numpy()  # fake-quant forward ~ integer
    np.testing.assert_allclose(y, rtn(x), atol=2 * max(s for s, _ in
                                                       module.trained_activation_qparams()
                                                       .values()))


def test_learned_scales_are_parameters_and_convert_writes_them_into_the_graph():
    _, _, module = _mlp_module()
    names = list(module.activation_scales)
    assert names == ["x_obs", "fc1_obs", "fc2_obs"]  # the relu is fused into fc1
    params = {id(p) for p in module.parameters()}
    assert all(id(s) in params for s in module.activation_scales.values())
    module.activation_scales["fc1_obs"].data = ndl.Tensor(
        np.array([0.03125], np.float32), device=module.device)
    qdq = module.convert()
    assert not qdq.find("observer")
    (q,) = [n for n in qdq.find("quantize") if n.inputs[0].name == "fc1"]
    assert q.meta["qparams"]["s"] == 0.03125
    integer = compile(qdq)
    (node,) = [n for n in integer.graph.nodes if n.name == "fc1"]
    assert node.meta["qparams"]["s"] == 0.03125 and node.attrs["weight_dtype"] == "int4"


def test_lsq_training_moves_the_scales_and_lowers_the_loss():
    g, _, module = _mlp_module(W8A8)
    x = qpass_models.batches((64, 4), 1, seed=7)[0]
    target = g(x).numpy()
    before = module.trained_activation_qparams()
    opt = ndl.optim.Adam(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        opt.reset_grad()
        diff = module(ndl.Tensor(x, device=module.device)) - ndl.Tensor(target,
                                                                         device=module.device)
        loss = (diff * diff).sum() / target.size
        loss.backward()
        opt.step()
        losses.append(float(loss.numpy()))
    after = module.trained_activation_qparams()
    assert any(after[k][0] != before[k][0] for k in before)
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------- end to end

def test_seeded_w4a8_qat_on_the_zoo_mlp_does_not_lose_accuracy_vs_rtn():
    """One short seeded run (16 batches of 64 train images, LSQ scales) on the zoo MLP; scored
    on 1,000 held-out images: QAT >= RTN (calibrated on the same 4 batches)."""
    from needle_qc.tools import report, zoo

    np.random.seed(0)
    model, _ = report.load_model("mlp", progress=False)
    graph = report.trace_model("mlp", model)
    cal = [x for x, _ in zoo.batches("mlp", "train", 64, limit=4)]
    rtn = compile(quantize_pass(graph, W4A8), calibration=cal)
    module = prepare_qat(graph, W4A8, calibration=cal, learn_scales=True)
    opt = ndl.optim.Adam(module.parameters(), lr=3e-4)
    loss_fn = ndl.nn.SoftmaxLoss()
    for x, y in zoo.batches("mlp", "train", 64, limit=16):
        opt.reset_grad()
        loss_fn(module(ndl.Tensor(x, device=module.device)),
                ndl.Tensor(y, device=module.device)).backward()
        opt.step()
    qat = compile(module.convert())
    score = {name: zoo.evaluate("mlp", cm, batch_size=500, limit=2)["accuracy"]
             for name, cm in (("rtn", rtn), ("qat", qat))}
    print(score)
    assert score["qat"] >= score["rtn"], score
