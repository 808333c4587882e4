"""dynamic: linear -> linear_dynamic (text, exact numbers per tensor and per token, errors)."""

import numpy as np
import pytest

from needle_qc.quantize import QConfig, dynamic_quantize_per_token, quantize_weight
from needle_qc.quantize.api import quantize_pass
from needle_qc.quantize.reference import dynamic_quantize_linear
from tests.needle_qc.quantize.qpass_models import batches, build, convnet, mlp, node_values

DYNAMIC = QConfig(weight="int8", activation="dynamic")

MLP_DYNAMIC = "\n".join([
    '%x = placeholder() : f32[N,4]',
    '%fc1.bias = param() {tensor="fc1.bias"} : f32[8]',
    '%fc1.weight_q = param() {tensor="fc1.weight_q"} : i8[4,8]',
    '%fc1.weight_scale = param() {tensor="fc1.weight_scale"} : f32[8]',
    '%fc1 = linear_dynamic(%x, %fc1.weight_q, %fc1.weight_scale, %fc1.bias)'
    ' {granularity="per_tensor"} : f32[N,8]',
    '%fc1_relu = relu(%fc1) : f32[N,8]',
    '%fc2.bias = param() {tensor="fc2.bias"} : f32[3]',
    '%fc2.weight_q = param() {tensor="fc2.weight_q"} : i8[8,3]',
    '%fc2.weight_scale = param() {tensor="fc2.weight_scale"} : f32[3]',
    '%fc2 = linear_dynamic(%fc1_relu, %fc2.weight_q, %fc2.weight_scale, %fc2.bias)'
    ' {granularity="per_tensor"} : f32[N,3]',
    'return %fc2'])


def expected_fc1(g, x, per_token):
    """The documented formula, written out: fp32(acc) * fp32(s_x * s_w[j]) + bias[j]."""
    qw = quantize_weight(g.tensors["fc1.weight"], "int8")
    if per_token:
        xq, s, z = dynamic_quantize_per_token(x)
        centred, s = xq.astype(np.int64) - z.astype(np.int64)[:, None], s[:, None]
    else:
        xq, s, z = dynamic_quantize_linear(x)
        centred = xq.astype(np.int64) - int(z)
    acc = (centred @ qw.q.astype(np.int64)).astype(np.int32)
    y = acc.astype(np.float32) * np.multiply(s, qw.scale, dtype=np.float32)
    return np.maximum(y + g.tensors["fc1.bias"], 0)


def test_mlp_dynamic_text():
    assert str(quantize_pass(mlp(), DYNAMIC)) == MLP_DYNAMIC


@pytest.mark.parametrize("per_token", [False, True], ids=["per-tensor", "per-token"])
def test_dynamic_numbers_are_the_documented_formula(per_token):
    g = mlp()
    cfg = DYNAMIC.replace(activation_granularity="per_token") if per_token else DYNAMIC
    q = quantize_pass(g, cfg)
    assert q.node("fc1").attrs["granularity"] == ("per_token" if per_token else "per_tensor")
    x = batches((6, 4), count=1)[0]
    np.testing.assert_array_equal(node_values(q, x)["fc1_relu"], expected_fc1(g, x, per_token))
    want = g(x).numpy()
    assert np.abs(q(x).numpy() - want).max() / np.abs(want).max() < 0.03


def test_conv_becomes_conv2d_dynamic():
    q = quantize_pass(convnet(), DYNAMIC)
    assert [n.op for n in q.find(("conv2d", "conv2d_dynamic", "linear_dynamic"))] == \
        ["conv2d_dynamic", "conv2d_dynamic", "linear_dynamic"]


def test_per_token_conv_stays_float():
    q = quantize_pass(convnet(), QConfig(weight="int8", activation="dynamic",
                                         activation_granularity="per_token"))
    assert [n.op for n in q.find(("conv2d", "linear_dynamic"))] == \
        ["conv2d", "conv2d", "linear_dynamic"]


def test_dynamic_needs_symmetric_int8_weights():
    with pytest.raises(ValueError, match="dynamic activations need symmetric int8.*'uint8'"):
        QConfig(weight="uint8", activation="dynamic", weight_symmetric=False)


def test_nan_input_names_the_node():
    q = quantize_pass(mlp(), DYNAMIC)
    x = batches((2, 4), count=1)[0]
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"%fc1 \(linear_dynamic\): DynamicQuantizeLinear"):
        q(x)


CELL = """\
%x = placeholder() : f32[N,4]
%cell.W_ih = param() {tensor="cell.W_ih"} : f32[4,6]
%matmul = matmul(%x, %cell.W_ih) : f32[N,6]
%tanh = tanh(%matmul) : f32[N,6]
return %tanh"""


def test_matmul_by_a_weight_is_quantized_like_a_linear():
    g = build(CELL)
    g.node("matmul").meta["module_path"] = "cell"
    q = quantize_pass(g, DYNAMIC)
    assert q.node("matmul").op == "linear_dynamic"
    x = batches((5, 4), count=1)[0]
    np.testing.assert_allclose(q(x).numpy(), g(x).numpy(), atol=0.02)
    kept = quantize_pass(g, DYNAMIC.replace(module_paths={"cell": None}))
    assert kept.node("matmul").op == "matmul"
