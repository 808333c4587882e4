"""conv2d_dynamic: u8 activation quantized per call, int8 weights, exact int32 conv, f32 out."""

import numpy as np
import pytest

import needle_qc as qc
from needle_qc.errors import IRError
from needle_qc.ir.graph import Graph
from needle_qc.lower.common import _kernels
from needle_qc.opset.quant_eval import conv_acc
from needle_qc.quantize import QConfig, quantize_weight
from needle_qc.quantize.api import quantize_pass
from needle_qc.quantize.reference import dynamic_quantize_linear
from tests.needle_qc.quantize.qpass_models import convnet, node_values

DYNAMIC = QConfig(weight="int8", activation="dynamic")
PER_TOKEN = QConfig(weight="int8", activation="dynamic", activation_granularity="per_token")


def _x(seed=3, n=2):
    return np.random.default_rng(seed).standard_normal((n, 1, 6, 6)).astype(np.float32)


def expected_conv1(g, x):
    """The documented formula: fp32(acc) * fp32(s_x * s_w[co]) + bias[co] (a separate add)."""
    qw = quantize_weight(g.tensors["conv1.weight"], "int8")
    xq, s_x, z_x = dynamic_quantize_linear(x)
    acc = conv_acc(xq, int(z_x), qw.q, None, 1, 1).astype(np.int32)
    scale = np.multiply(np.float32(s_x), qw.scale, dtype=np.float32).reshape(-1, 1, 1)
    y = np.multiply(acc.astype(np.float32), scale, dtype=np.float32)
    return np.add(y, g.tensors["conv1.bias"].reshape(-1, 1, 1), dtype=np.float32)


def test_dynamic_pass_rewrites_convs():
    q = quantize_pass(convnet(), DYNAMIC)
    conv = q.node("conv1")
    assert conv.op == "conv2d_dynamic"
    assert conv.attrs == {"stride": 1, "padding": 1}
    assert [i.meta["dtype"] for i in conv.inputs] == ["float32", "int8", "float32", "float32"]
    assert q.node("conv1_relu").inputs[0] is conv  # the fused relu, separate again


def test_reference_is_the_documented_formula():
    g = convnet()
    x = _x()
    got = node_values(quantize_pass(g, DYNAMIC), x)["conv1"]
    np.testing.assert_array_equal(got, expected_conv1(g, x))


def test_reference_is_close_to_float():
    g = convnet()
    x = _x()
    want = node_values(g, x)["fc"]
    got = node_values(quantize_pass(g, DYNAMIC), x)["fc"]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_cpu_kernel_matches_reference():
    if _kernels() is None:
        pytest.skip("native _quant_cpu module not built")
    q = quantize_pass(convnet(), DYNAMIC)
    x = _x(n=5)
    ref = qc.compile(q, target="reference", tune_kernels=False)(x)
    cm = qc.compile(q, target="cpu", force_int8=True, tune_kernels=False)
    assert "conv2d_u8s8_f32" in cm.explain().row("conv1")["kernel"]
    np.testing.assert_allclose(np.asarray(cm(x)), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_memory_report_counts_conv_weights_as_int8():
    if _kernels() is None:
        pytest.skip("native _quant_cpu module not built")
    g = convnet()
    rows = qc.compile(quantize_pass(g, DYNAMIC), tune_kernels=False).memory_report().weights
    conv_weights = g.tensors["conv1.weight"].size + g.tensors["conv2.weight"].size
    assert rows["int8"]["weights"] == conv_weights + g.tensors["fc.weight"].size
    assert "float32" not in rows


def test_per_token_conv_stays_float_and_explain_says_so():
    q = quantize_pass(convnet(), PER_TOKEN)
    assert q.node("conv1").op == "conv2d"
    row = qc.compile(q, tune_kernels=False).explain().row("conv1")
    assert "no conv2d form" in row["why"]


def test_shape_rule_names_the_problem():
    text = "\n".join([
        '%x = placeholder() : f32[N,2,6,6]',
        '%w = param() {tensor="w"} : i8[3,3,1,4]',
        '%s = param() {tensor="s"} : f32[4]',
        '%y = conv2d_dynamic(%x, %w, %s) {stride=1, padding=1} : f32[N,4,6,6]',
        'return %y'])
    with pytest.raises(IRError, match="conv2d_dynamic: bad shapes"):
        Graph.parse(text).lint()


def test_printed_text_round_trips():
    q = quantize_pass(convnet(), DYNAMIC)
    text = str(q)
    assert 'conv2d_dynamic(%x, %conv1.weight_q, %conv1.weight_scale, %conv1.bias)' \
        ' {stride=1, padding=1} : f32[N,4,6,6]' in text
    assert str(Graph.parse(text)) == text
