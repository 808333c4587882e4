"""fold-batchnorm: exact IR rewrite, float64 math, guards, and SmallCNN/ResNet9 numbers."""

import numpy as np
import pytest

import needle as ndl
import needle.models as models
from needle_qc.capture.tracer import trace
from needle_qc.passes import get_pass, run_passes
from needle_qc.tools.viz import REMOVED, to_dot
from tests.needle_qc.passes.conftest import assert_same_numbers, parse, randomize_batchnorms, run

CONV_BN = """\
%x = placeholder() : f32[N,2,4,4]
%conv.weight = param() {tensor="conv.weight"} : f32[3,3,2,3]
%conv = conv2d(%x, %conv.weight) {stride=1, padding=1} : f32[N,3,4,4]
%bn.weight = param() {tensor="bn.weight"} : f32[3]
%bn.bias = param() {tensor="bn.bias"} : f32[3]
%bn.running_mean = param() {tensor="bn.running_mean"} : f32[3]
%bn.running_var = param() {tensor="bn.running_var"} : f32[3]
%bn = batch_norm(%conv, %bn.weight, %bn.bias, %bn.running_mean, %bn.running_var) \
{eps=1e-05, dims=2} : f32[N,3,4,4]
%relu = relu(%bn) : f32[N,3,4,4]
return %relu"""

CONV_BN_FOLDED = """\
%x = placeholder() : f32[N,2,4,4]
%conv.weight_folded = param() {tensor="conv.weight_folded"} : f32[3,3,2,3]
%conv.bias_folded = param() {tensor="conv.bias_folded"} : f32[3]
%conv = conv2d(%x, %conv.weight_folded, %conv.bias_folded) {stride=1, padding=1} : f32[N,3,4,4]
%relu = relu(%conv) : f32[N,3,4,4]
return %relu"""


def bn_tensors(rng, c):
    return {"bn.weight": rng.uniform(0.5, 1.5, c), "bn.bias": rng.standard_normal(c),
            "bn.running_mean": rng.standard_normal(c), "bn.running_var": rng.uniform(0.5, 2, c)}


def test_conv_without_bias_gets_folded_weight_and_new_bias(rng):
    w = rng.standard_normal((3, 3, 2, 3))
    stats = bn_tensors(rng, 3)
    g = parse(CONV_BN, **{"conv.weight": w}, **stats)
    g.node("conv").meta["module_path"] = "conv"
    before = g.copy()
    assert get_pass("fold-batchnorm")(g) is True
    assert str(g) == CONV_BN_FOLDED
    s = stats["bn.weight"] / np.sqrt(stats["bn.running_var"].astype(np.float32) + 1e-5)
    np.testing.assert_allclose(g.tensors["conv.weight_folded"], w * s, rtol=1e-6)
    want_bias = -stats["bn.running_mean"] * s + stats["bn.bias"]
    np.testing.assert_allclose(g.tensors["conv.bias_folded"], want_bias, rtol=1e-5, atol=1e-6)
    assert g.node("conv.weight_folded").meta["module_path"] == "conv"
    assert g.tensors["conv.weight_folded"].dtype == np.float32
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    assert_same_numbers(before, g, x, rtol=1e-5, atol=1e-5)


LINEAR_BN = """\
%x = placeholder() : f32[N,4]
%fc.weight = param() {tensor="fc.weight"} : f32[4,3]
%fc.bias = param() {tensor="fc.bias"} : f32[1,3]
%fc = linear(%x, %fc.weight, %fc.bias) : f32[N,3]
%bn.weight = param() {tensor="bn.weight"} : f32[3]
%bn.bias = param() {tensor="bn.bias"} : f32[3]
%bn.running_mean = param() {tensor="bn.running_mean"} : f32[3]
%bn.running_var = param() {tensor="bn.running_var"} : f32[3]
%bn = batch_norm(%fc, %bn.weight, %bn.bias, %bn.running_mean, %bn.running_var) \
{eps=1e-05, dims=1} : f32[N,3]
return %bn"""

LINEAR_BN_FOLDED = """\
%x = placeholder() : f32[N,4]
%fc.weight_folded = param() {tensor="fc.weight_folded"} : f32[4,3]
%fc.bias_folded = param() {tensor="fc.bias_folded"} : f32[1,3]
%fc = linear(%x, %fc.weight_folded, %fc.bias_folded) : f32[N,3]
return %fc"""


def test_linear_bias_is_folded_along_axis_1_keeping_its_shape(rng):
    tensors = {"fc.weight": rng.standard_normal((4, 3)), "fc.bias": rng.standard_normal((1, 3))}
    g = parse(LINEAR_BN, **tensors, **bn_tensors(rng, 3))
    before = g.copy()
    assert get_pass("fold-batchnorm")(g) is True
    assert str(g) == LINEAR_BN_FOLDED
    x = rng.standard_normal((5, 4)).astype(np.float32)
    assert_same_numbers(before, g, x, rtol=1e-5, atol=1e-5)


def test_conv_output_used_elsewhere_is_not_folded(rng):
    text = CONV_BN.replace("return %relu", "%sum = add(%relu, %conv) : f32[N,3,4,4]\nreturn %sum")
    g = parse(text, **{"conv.weight": rng.standard_normal((3, 3, 2, 3))}, **bn_tensors(rng, 3))
    assert get_pass("fold-batchnorm")(g) is False
    assert str(g) == text


@pytest.mark.parametrize("name, shape", [("SmallCNN", (3, 1, 28, 28)),
                                         ("ResNet9", (3, 3, 32, 32))])
def test_models_match_within_1e5_relative(name, shape):
    np.random.seed(0)
    model = randomize_batchnorms(getattr(models, name)(device=ndl.cpu_numpy()))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    g = trace(model, x)
    before = g.copy()
    result = run_passes(g, ["fold-batchnorm", "dce"])
    assert result.changed["fold-batchnorm"]
    assert not g.find("batch_norm")
    want, got = run(before, x), run(g, x)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_resnet9_drawing_marks_the_folded_batchnorms_removed():
    np.random.seed(0)
    model = randomize_batchnorms(models.ResNet9(device=ndl.cpu_numpy()))
    g = trace(model, np.zeros((2, 3, 32, 32), np.float32))
    before = g.copy()
    run_passes(g, ["fold-batchnorm"])
    source = to_dot(g, compare=before).source
    bns = before.find("batch_norm")
    assert len(bns) == 8
    # a removed batch norm is listed on the conv it followed, not drawn as a ghost node
    for bn in bns:
        conv = bn.inputs[0].name
        line = next(line for line in source.splitlines() if line.strip().startswith(f'"{conv}"'))
        assert "removed after it: batch_norm" in line and REMOVED in line, line
        assert not any(ln.strip().startswith(f'"{bn.name}"') for ln in source.splitlines())
    assert "8 batch_norm" in source
