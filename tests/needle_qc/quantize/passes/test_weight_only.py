"""weight-only: fp16/bf16/int8/uint8/int4/uint4 weights (text, numbers, byte counts, errors)."""

import numpy as np
import pytest

from needle_qc.passes import get_pass
from needle_qc.quantize import QConfig, bf16_to_float32, quantize_weight, unpack_int4
from needle_qc.quantize.api import quantize_pass
from tests.needle_qc.quantize.qpass_models import MLP, batches, build, convnet, mlp, node_values

MLP_INT4 = "\n".join([
    '%x = placeholder() : f32[N,4]',
    '%fc1.bias = param() {tensor="fc1.bias"} : f32[8]',
    '%fc1.weight_q = param() {tensor="fc1.weight_q"} : u8[2,8]',
    '%fc1.weight_scale = param() {tensor="fc1.weight_scale"} : f32[2,8]',
    '%fc1 = linear_weight_only(%x, %fc1.weight_q, %fc1.weight_scale, %fc1.bias)'
    ' {weight_dtype="int4", granularity="per_group", group_size=2, has_zero_point=False,'
    ' has_bias=True} : f32[N,8]',
    '%fc1_relu = relu(%fc1) : f32[N,8]',
    '%fc2.bias = param() {tensor="fc2.bias"} : f32[3]',
    '%fc2.weight_q = param() {tensor="fc2.weight_q"} : u8[4,3]',
    '%fc2.weight_scale = param() {tensor="fc2.weight_scale"} : f32[4,3]',
    '%fc2 = linear_weight_only(%fc1_relu, %fc2.weight_q, %fc2.weight_scale, %fc2.bias)'
    ' {weight_dtype="int4", granularity="per_group", group_size=2, has_zero_point=False,'
    ' has_bias=True} : f32[N,3]',
    'return %fc2'])

CONV_BF16_LAYER = (
    '%conv2 = conv2d_weight_only(%conv1_relu, %conv2.weight_bf16, %conv2.bias) {stride=2,'
    ' padding=1, weight_dtype="bfloat16", granularity="none", group_size=0,'
    ' has_zero_point=False, has_bias=True} : f32[N,4,3,3]')

# a wide layer so that per-channel/per-group metadata is small next to the payload
WIDE = MLP.replace("[4,8]", "[64,32]").replace("f32[8]", "f32[32]").replace("[N,8]", "[N,32]") \
    .replace("[8,3]", "[32,16]").replace("f32[3]", "f32[16]").replace("[N,3]", "[N,16]") \
    .replace("[N,4]", "[N,64]")

# weight bytes as a fraction of float32, and the relative output error allowed
FORMATS = {
    "fp16": (QConfig(weight="fp16"), 1 / 2, 1e-3),
    "bf16": (QConfig(weight="bf16"), 1 / 2, 1e-2),
    "int8": (QConfig(weight="int8"), 1 / 4, 2e-2),
    "uint8": (QConfig(weight="uint8", weight_symmetric=False), 1 / 4, 2e-2),
    "int4": (QConfig(weight="int4"), 1 / 8, 0.25),
    "uint4": (QConfig(weight="uint4", weight_symmetric=False), 1 / 8, 0.25),
}


def payload_and_meta_bytes(graph, layer):
    """(weight payload bytes, scale + zero point bytes) of one rewritten layer."""
    node = graph.node(layer)
    arrays = [graph.tensors[i.attrs["tensor"]] for i in node.inputs[1:]]
    if node.attrs["has_bias"]:
        arrays = arrays[:-1]
    return arrays[0].nbytes, sum(a.nbytes for a in arrays[1:])


def test_int4_mlp_text():
    assert str(quantize_pass(mlp(), QConfig(weight="int4", group_size=2))) == MLP_INT4


def test_bf16_conv_text():
    lines = str(quantize_pass(convnet(), QConfig(weight="bf16"))).splitlines()
    assert CONV_BF16_LAYER in lines


@pytest.mark.parametrize("name", list(FORMATS))
def test_weight_bytes_and_numbers(name):
    cfg, fraction, tolerance = FORMATS[name]
    g = build(WIDE, seed=4)
    q = quantize_pass(g, cfg).lint()
    for layer, shape in (("fc1", (64, 32)), ("fc2", (32, 16))):
        payload, meta = payload_and_meta_bytes(q, layer)
        assert payload == fraction * 4 * np.prod(shape), (layer, payload)
        if name in ("fp16", "bf16"):
            assert meta == 0
        else:
            assert 0 < meta < payload
    x = batches((16, 64), count=1)[0]
    want, got = g(x).numpy(), q(x).numpy()
    assert np.abs(got - want).max() / np.abs(want).max() < tolerance


def test_int4_storage_is_packed_and_dequantizes_like_quantize_weight():
    g = build(WIDE, seed=4)
    q = quantize_pass(g, QConfig(weight="int4", group_size=16))
    w = g.tensors["fc1.weight"]
    qw = quantize_weight(w, "int4", group_size=16)
    np.testing.assert_array_equal(unpack_int4(q.tensors["fc1.weight_q"], 64, axis=0), qw.q)
    np.testing.assert_array_equal(q.tensors["fc1.weight_scale"], qw.scale)
    assert q.tensors["fc1.weight_scale"].shape == (4, 32)
    x = batches((4, 64), count=1)[0]
    relu = np.maximum(x @ qw.dequantize() + g.tensors["fc1.bias"], 0)
    np.testing.assert_allclose(node_values(q, x)["fc1_relu"], relu, rtol=1e-5, atol=1e-5)


def test_bf16_storage_is_raw_bits():
    g = mlp()
    q = quantize_pass(g, QConfig(weight="bf16"))
    bits = q.tensors["fc1.weight_bf16"]
    assert bits.dtype == np.uint16
    np.testing.assert_allclose(bf16_to_float32(bits), g.tensors["fc1.weight"], rtol=2 ** -8)


def test_conv_int8_weight_only_numbers():
    g = convnet()
    q = quantize_pass(g, QConfig(weight="int8"))
    assert [n.op for n in q.find(("conv2d_weight_only", "linear_weight_only"))] == \
        ["conv2d_weight_only", "conv2d_weight_only", "linear_weight_only"]
    x = batches((4, 1, 6, 6), count=1)[0]
    np.testing.assert_allclose(q(x).numpy(), g(x).numpy(), atol=0.02)


def test_overrides_keep_layers_float():
    q = quantize_pass(mlp(), QConfig(weight="int4", module_paths={"fc2": None}))
    assert q.node("fc1").op == "linear_weight_only"
    assert q.node("fc2").op == "linear"


def test_per_type_override_mixes_formats():
    cfg = QConfig(weight="int8", module_types={"Conv": QConfig(weight="fp16")})
    q = quantize_pass(convnet(), cfg)
    assert q.node("conv1").attrs["weight_dtype"] == "float16"
    assert q.node("fc").attrs["weight_dtype"] == "int8"


def test_int4_per_tensor_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match="int4 weights are per_group or per_channel"):
        QConfig(weight="int4", weight_granularity="per_tensor")


def test_int4_per_channel_runs_as_one_group_over_the_reduction_axis():
    g = convnet()
    q = quantize_pass(g, QConfig(weight="int4", weight_granularity="per_channel"))
    conv2, fc = q.node("conv2"), q.node("fc")
    assert (conv2.attrs["granularity"], conv2.attrs["group_size"]) == ("per_group", 4)
    assert (fc.attrs["granularity"], fc.attrs["group_size"]) == ("per_group", 36)
    scale = q.tensors[conv2.inputs[2].attrs["tensor"]]
    want = quantize_weight(g.tensors["conv2.weight"], "int4", "per_channel").scale
    assert scale.shape == (3, 3, 1, 4)
    assert np.array_equal(scale, np.broadcast_to(want, (3, 3, 1, 4)))


def test_weight_only_pass_on_an_unannotated_graph_does_nothing():
    g = mlp()
    assert get_pass("weight-only")(g) is False


def test_conv_int4_is_packed_along_input_channels():
    g = convnet()
    q = quantize_pass(g, QConfig(weight="int4", group_size=2))
    assert q.tensors["conv2.weight_q"].shape == (3, 3, 2, 4)  # Cin 4 -> 2 bytes
    assert q.tensors["conv2.weight_scale"].shape == (3, 3, 2, 4)  # ceil(4 / 2) groups
    assert q.tensors["conv1.weight_q"].shape == (3, 3, 1, 4)  # Cin 1 -> 1 byte, zero padded
    qw = quantize_weight(g.tensors["conv2.weight"], "int4", group_size=2)
    np.testing.assert_array_equal(unpack_int4(q.tensors["conv2.weight_q"], 4, axis=2), qw.q)
    x = batches((4, 1, 6, 6), count=1)[0]
    want = g(x).numpy()
    assert np.abs(q(x).numpy() - want).max() / np.abs(want).max() < 0.3
