"""insert-observers / quantize_pass: where observers go, per-module overrides, shared qparams."""

import numpy as np
import pytest

from needle_qc.errors import IRError
from needle_qc.passes import get_pass
from needle_qc.quantize import MinMaxObserver, QConfig
from needle_qc.quantize.annotate import annotate_qconfig
from needle_qc.quantize.api import quantize_pass
from tests.needle_qc.quantize.qpass_models import MLP, batches, build, convnet, mlp

STATIC = QConfig(weight="int8", activation="static")

MLP_OBSERVED = """\
%x = placeholder() : f32[N,4]
%x_obs = observer(%x) {dtype="uint8", symmetric=False} : f32[N,4]
%fc1.weight = param() {tensor="fc1.weight"} : f32[4,8]
%fc1.bias = param() {tensor="fc1.bias"} : f32[8]
%fc1 = linear(%x_obs, %fc1.weight, %fc1.bias) {activation="relu"} : f32[N,8]
%fc1_obs = observer(%fc1) {dtype="uint8", symmetric=False} : f32[N,8]
%fc2.weight = param() {tensor="fc2.weight"} : f32[8,3]
%fc2.bias = param() {tensor="fc2.bias"} : f32[3]
%fc2 = linear(%fc1_obs, %fc2.weight, %fc2.bias) : f32[N,3]
%fc2_obs = observer(%fc2) {dtype="uint8", symmetric=False} : f32[N,3]
return %fc2_obs"""

# conv1 kept float by a path override, fc by a type override: conv2 alone is static, so only its
# input and its output are observed (its u8 output is dequantized again before the float fc).
CONV_OVERRIDDEN = "\n".join([
    '%x = placeholder() : f32[N,1,6,6]',
    '%conv1.weight = param() {tensor="conv1.weight"} : f32[3,3,1,4]',
    '%conv1.bias = param() {tensor="conv1.bias"} : f32[4]',
    '%conv1 = conv2d(%x, %conv1.weight, %conv1.bias) {stride=1, padding=1, activation="relu"}'
    ' : f32[N,4,6,6]',
    '%conv1_obs = observer(%conv1) {dtype="int8", symmetric=True} : f32[N,4,6,6]',
    '%conv2.weight = param() {tensor="conv2.weight"} : f32[3,3,4,4]',
    '%conv2.bias = param() {tensor="conv2.bias"} : f32[4]',
    '%conv2 = conv2d(%conv1_obs, %conv2.weight, %conv2.bias) {stride=2, padding=1,'
    ' activation="relu"} : f32[N,4,3,3]',
    '%conv2_obs = observer(%conv2) {dtype="int8", symmetric=True} : f32[N,4,3,3]',
    '%flatten = reshape(%conv2_obs) {shape=(N, 36)} : f32[N,36]',
    '%fc.weight = param() {tensor="fc.weight"} : f32[36,3]',
    '%fc.bias = param() {tensor="fc.bias"} : f32[3]',
    '%fc = linear(%flatten, %fc.weight, %fc.bias) : f32[N,3]',
    'return %fc'])


def test_mlp_observed_text():
    g = mlp()
    before = str(g)
    prepared = quantize_pass(g, STATIC)
    assert str(g) == before, "quantize_pass must leave its argument alone"
    assert str(prepared) == MLP_OBSERVED
    assert sorted(prepared.observers) == ["fc1_obs", "fc2_obs", "x_obs"]
    assert all(isinstance(o, MinMaxObserver) for o in prepared.observers.values())


def test_observed_graph_is_the_float_model_and_records():
    rng = np.random.default_rng(0)
    g = mlp()
    prepared = quantize_pass(g, STATIC)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(prepared(x).numpy(), g(x).numpy(), rtol=1e-6, atol=1e-6)
    stats = prepared.observers["x_obs"]
    assert stats.n_updates == 1
    assert stats.range() == (pytest.approx(float(x.min())), pytest.approx(float(x.max())))


def test_overrides_keep_first_conv_and_last_linear_float():
    cfg = QConfig(weight="int8", activation="static", activation_dtype="int8",
                  activation_symmetric=True, module_paths={"conv1": None},
                  module_types={"Linear": None})
    prepared = quantize_pass(convnet(), cfg)
    assert str(prepared) == CONV_OVERRIDDEN
    assert [n.name for n in prepared.nodes if "qconfig" in n.meta] == ["conv2"]


def test_shared_reshape_gets_no_observer():
    prepared = quantize_pass(convnet(), STATIC)
    flatten = prepared.node("flatten")
    assert flatten.inputs[0].name == "conv2_obs"
    assert [u.op for u in flatten.users] == ["linear"]
    assert sorted(prepared.observers) == ["conv1_obs", "conv2_obs", "fc_obs", "x_obs"]


def test_histogram_observer_from_config():
    prepared = quantize_pass(mlp(), STATIC.replace(observer="percentile", percentile=99.0))
    stats = prepared.observers["fc1_obs"]
    assert stats.kind == "histogram" and stats.method == "percentile"
    assert stats.percentile == 99.0


def test_insert_observers_twice_adds_nothing():
    prepared = quantize_pass(mlp(), STATIC)
    text = str(prepared)
    assert get_pass("insert-observers")(prepared) is False
    assert str(prepared) == text


def test_weight_only_config_inserts_no_observer():
    prepared = quantize_pass(mlp(), QConfig(weight="int8"))
    assert not prepared.find("observer")


def test_without_float_pipeline_a_separate_relu_is_observed_after_it():
    prepared = quantize_pass(mlp(), STATIC, float_pipeline=False)
    assert prepared.node("relu_obs").inputs[0].name == "relu"
    assert "fc1_obs" not in prepared.observers


def test_observer_without_statistics_is_an_error():
    prepared = quantize_pass(mlp(), STATIC)
    del prepared.observers["fc1_obs"]
    with pytest.raises(IRError, match="fc1_obs: observer has no statistics"):
        prepared(batches((2, 4), 1)[0])


def test_annotate_rejects_non_config():
    with pytest.raises(ValueError, match="config must be a QConfig"):
        annotate_qconfig(build(MLP), {"weight": "int8"})


CONV_BN = """\
%x = placeholder() : f32[N,1,6,6]
%conv.weight = param() {tensor="conv.weight"} : f32[3,3,1,4]
%conv = conv2d(%x, %conv.weight) {stride=1, padding=1} : f32[N,4,6,6]
%bn.weight = param() {tensor="bn.weight"} : f32[4]
%bn.bias = param() {tensor="bn.bias"} : f32[4]
%bn.running_mean = param() {tensor="bn.running_mean"} : f32[4]
%bn.running_var = param() {tensor="bn.running_var"} : f32[4]
%bn = batch_norm(%conv, %bn.weight, %bn.bias, %bn.running_mean, %bn.running_var) \
{eps=1e-05, dims=2} : f32[N,4,6,6]
%relu = relu(%bn) : f32[N,4,6,6]
return %relu"""


def test_batchnorm_is_folded_before_observing():
    g = build(CONV_BN.replace("\\\n", ""))
    g.tensors["bn.running_var"] = np.abs(g.tensors["bn.running_var"]) + 0.5
    prepared = quantize_pass(g, STATIC)
    assert [n.op for n in prepared.nodes if n.op not in ("param", "placeholder")] == \
        ["observer", "conv2d", "observer", "output"]
    conv = prepared.node("conv")
    assert conv.attrs["activation"] == "relu" and len(conv.inputs) == 3  # folded bias added
    x = batches((3, 1, 6, 6), count=1)[0]
    np.testing.assert_allclose(prepared(x).numpy(), g(x).numpy(), rtol=1e-4, atol=1e-5)
