"""convert: observed graph -> QDQ graph (text, qparams, integer weights/biases, numbers, errors)."""

import numpy as np
import pytest

from needle_qc.quantize import QConfig, choose_qparams, quantize_bias, quantize_weight
from needle_qc.quantize.api import calibrate, convert, quantize_pass
from tests.needle_qc.quantize.qpass_models import batches, convnet, mlp

STATIC = QConfig(weight="int8", activation="static")

MLP_QDQ = "\n".join([
    '%x = placeholder() : f32[N,4]',
    '%x_q = quantize(%x) {dtype="uint8"} : u8[N,4]{s=0.020733773708343506, z=118}',
    '%x_dq = dequantize(%x_q) {axis=-1, group_size=0} : f32[N,4]',
    '%fc1.weight_q = param() {tensor="fc1.weight_q"} : i8[4,8]',
    '%fc1.weight_scale = param() {tensor="fc1.weight_scale"} : f32[8]',
    '%fc1.weight_dq = dequantize(%fc1.weight_q, %fc1.weight_scale) {axis=-1, group_size=0} :'
    ' f32[4,8]',
    '%fc1.bias_q = param() {tensor="fc1.bias_q"} : i32[8]',
    '%fc1.bias_scale = param() {tensor="fc1.bias_scale"} : f32[8]',
    '%fc1.bias_dq = dequantize(%fc1.bias_q, %fc1.bias_scale) {axis=0, group_size=0} : f32[8]',
    '%fc1 = linear(%x_dq, %fc1.weight_dq, %fc1.bias_dq) {activation="relu"} : f32[N,8]',
    '%fc1_q = quantize(%fc1) {dtype="uint8"} : u8[N,8]{s=0.007795806974172592, z=0}',
    '%fc1_dq = dequantize(%fc1_q) {axis=-1, group_size=0} : f32[N,8]',
    '%fc2.weight_q = param() {tensor="fc2.weight_q"} : i8[8,3]',
    '%fc2.weight_scale = param() {tensor="fc2.weight_scale"} : f32[3]',
    '%fc2.weight_dq = dequantize(%fc2.weight_q, %fc2.weight_scale) {axis=-1, group_size=0} :'
    ' f32[8,3]',
    '%fc2.bias_q = param() {tensor="fc2.bias_q"} : i32[3]',
    '%fc2.bias_scale = param() {tensor="fc2.bias_scale"} : f32[3]',
    '%fc2.bias_dq = dequantize(%fc2.bias_q, %fc2.bias_scale) {axis=0, group_size=0} : f32[3]',
    '%fc2 = linear(%fc1_dq, %fc2.weight_dq, %fc2.bias_dq) : f32[N,3]',
    '%fc2_q = quantize(%fc2) {dtype="uint8"} : u8[N,3]{s=0.005650700069963932, z=178}',
    '%fc2_dq = dequantize(%fc2_q) {axis=-1, group_size=0} : f32[N,3]',
    'return %fc2_dq',
])

CONV_QDQ = "\n".join([
    '%x = placeholder() : f32[N,1,6,6]',
    '%x_q = quantize(%x) {dtype="uint8"} : u8[N,1,6,6]{s=0.024895211681723595, z=130}',
    '%x_dq = dequantize(%x_q) {axis=-1, group_size=0} : f32[N,1,6,6]',
    '%conv1.weight_q = param() {tensor="conv1.weight_q"} : i8[3,3,1,4]',
    '%conv1.weight_scale = param() {tensor="conv1.weight_scale"} : f32[4]',
    '%conv1.weight_dq = dequantize(%conv1.weight_q, %conv1.weight_scale) {axis=-1,'
    ' group_size=0} : f32[3,3,1,4]',
    '%conv1.bias_q = param() {tensor="conv1.bias_q"} : i32[4]',
    '%conv1.bias_scale = param() {tensor="conv1.bias_scale"} : f32[4]',
    '%conv1.bias_dq = dequantize(%conv1.bias_q, %conv1.bias_scale) {axis=0, group_size=0} :'
    ' f32[4]',
    '%conv1 = conv2d(%x_dq, %conv1.weight_dq, %conv1.bias_dq) {stride=1, padding=1,'
    ' activation="relu"} : f32[N,4,6,6]',
    '%conv1_q = quantize(%conv1) {dtype="uint8"} : u8[N,4,6,6]{s=0.00731323566287756, z=0}',
    '%conv1_dq = dequantize(%conv1_q) {axis=-1, group_size=0} : f32[N,4,6,6]',
    '%conv2.weight_q = param() {tensor="conv2.weight_q"} : i8[3,3,4,4]',
    '%conv2.weight_scale = param() {tensor="conv2.weight_scale"} : f32[4]',
    '%conv2.weight_dq = dequantize(%conv2.weight_q, %conv2.weight_scale) {axis=-1,'
    ' group_size=0} : f32[3,3,4,4]',
    '%conv2.bias_q = param() {tensor="conv2.bias_q"} : i32[4]',
    '%conv2.bias_scale = param() {tensor="conv2.bias_scale"} : f32[4]',
    '%conv2.bias_dq = dequantize(%conv2.bias_q, %conv2.bias_scale) {axis=0, group_size=0} :'
    ' f32[4]',
    '%conv2 = conv2d(%conv1_dq, %conv2.weight_dq, %conv2.bias_dq) {stride=2, padding=1,'
    ' activation="relu"} : f32[N,4,3,3]',
    '%conv2_q = quantize(%conv2) {dtype="uint8"} : u8[N,4,3,3]{s=0.0035107650328427553, z=0}',
    '%conv2_dq = dequantize(%conv2_q) {axis=-1, group_size=0} : f32[N,4,3,3]',
    '%flatten = reshape(%conv2_dq) {shape=(N, 36)} : f32[N,36]',
    '%flatten_q = quantize(%flatten) {dtype="uint8"} : u8[N,36]{s=0.0035107650328427553, z=0}',
    '%flatten_dq = dequantize(%flatten_q) {axis=-1, group_size=0} : f32[N,36]',
    '%fc.weight_q = param() {tensor="fc.weight_q"} : i8[36,3]',
    '%fc.weight_scale = param() {tensor="fc.weight_scale"} : f32[3]',
    '%fc.weight_dq = dequantize(%fc.weight_q, %fc.weight_scale) {axis=-1, group_size=0} :'
    ' f32[36,3]',
    '%fc.bias_q = param() {tensor="fc.bias_q"} : i32[3]',
    '%fc.bias_scale = param() {tensor="fc.bias_scale"} : f32[3]',
    '%fc.bias_dq = dequantize(%fc.bias_q, %fc.bias_scale) {axis=0, group_size=0} : f32[3]',
    '%fc = linear(%flatten_dq, %fc.weight_dq, %fc.bias_dq) : f32[N,3]',
    '%fc_q = quantize(%fc) {dtype="uint8"} : u8[N,3]{s=0.0047082058154046535, z=158}',
    '%fc_dq = dequantize(%fc_q) {axis=-1, group_size=0} : f32[N,3]',
    'return %fc_dq',
])


def calibrated(graph, shape, cfg=STATIC):
    prepared = quantize_pass(graph, cfg)
    calibrate(prepared, batches(shape), progress=False)
    return prepared


def test_mlp_qdq_text():
    prepared = calibrated(mlp(), (8, 4))
    observed_text = str(prepared)
    qdq = convert(prepared)
    assert str(qdq) == MLP_QDQ
    assert str(prepared) == observed_text, "convert must leave the observed graph alone"
    qdq.lint()


def test_conv_qdq_text_reshape_reuses_the_conv_qparams():
    qdq = convert(calibrated(convnet(), (8, 1, 6, 6)))
    assert str(qdq) == CONV_QDQ
    assert qdq.node("flatten_q").meta["qparams"] == qdq.node("conv2_q").meta["qparams"]


def test_activation_qparams_come_from_the_data():
    data = np.concatenate(batches((8, 4)))
    qdq = convert(calibrated(mlp(), (8, 4)))
    s, z = choose_qparams(data.min(), data.max(), "uint8")
    assert qdq.node("x_q").meta["qparams"] == {"s": float(s), "z": int(z)}


def test_integer_weights_and_int32_bias():
    g = mlp()
    qdq = convert(calibrated(g, (8, 4)))
    qw = quantize_weight(g.tensors["fc1.weight"], "int8")
    np.testing.assert_array_equal(qdq.tensors["fc1.weight_q"], qw.q)
    np.testing.assert_array_equal(qdq.tensors["fc1.weight_scale"], qw.scale)
    s_x = np.float32(qdq.node("x_q").meta["qparams"]["s"])
    bias = quantize_bias(g.tensors["fc1.bias"], s_x, qw.scale)
    np.testing.assert_array_equal(qdq.tensors["fc1.bias_q"], bias)
    np.testing.assert_array_equal(qdq.tensors["fc1.bias_scale"],
                                  np.multiply(s_x, qw.scale, dtype=np.float32))
    assert "fc1.weight" not in qdq.tensors, "the float weight is dead and removed"


def test_qdq_numbers_are_close_to_float():
    for graph, shape in ((mlp(), (16, 4)), (convnet(), (16, 1, 6, 6))):
        qdq = convert(calibrated(graph, shape))
        x = batches(shape, count=1, seed=9)[0]
        want, got = graph(x).numpy(), qdq(x).numpy()
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 0.05, err


def test_asymmetric_uint8_weights_get_a_zero_point():
    cfg = QConfig(weight="uint8", activation="static", weight_symmetric=False)
    qdq = convert(calibrated(mlp(), (8, 4), cfg))
    w_dq = qdq.node("fc1.weight_dq")
    assert [i.name for i in w_dq.inputs] == ["fc1.weight_q", "fc1.weight_scale", "fc1.weight_zp"]
    assert qdq.tensors["fc1.weight_zp"].dtype == np.uint8


def test_per_tensor_weights_have_a_scalar_scale():
    cfg = STATIC.replace(weight_granularity="per_tensor")
    qdq = convert(calibrated(mlp(), (8, 4), cfg))
    assert qdq.tensors["fc1.weight_scale"].shape == ()
    assert qdq.tensors["fc1.bias_scale"].shape == (8,)


def test_static_group_wise_int4_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match="W4A8 .* per_channel"):
        QConfig(weight="int4", activation="static", weight_granularity="per_group")


def test_bias_overflow_names_the_layer():
    g = mlp()
    g.tensors["fc1.bias"] = np.full(8, 3e7, np.float32)
    g.tensors["fc1.weight"] = np.full((4, 8), 1e-3, np.float32)
    prepared = quantize_pass(g, STATIC)
    calibrate(prepared, [np.full((2, 4), 0.01, np.float32)], progress=False)
    with pytest.raises(OverflowError, match="bias of %fc1: .*does not fit int32"):
        convert(prepared)
