"""fuse-qdq: QDQ graph -> integer graph (text, per-node agreement with QDQ, every rule)."""

import numpy as np
import pytest

from needle_qc.ir.graph import Graph
from needle_qc.passes import get_pass
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import calibrate, convert, quantize_pass, to_integer
from tests.needle_qc.quantize.qpass_models import MLP, batches, build, convnet, mlp, node_values

STATIC = QConfig(weight="int8", activation="static")

MLP_INT = "\n".join([
    '%x = placeholder() : f32[N,4]',
    '%x_q = quantize(%x) {dtype="uint8"} : u8[N,4]{s=0.020733773708343506, z=118}',
    '%fc1.weight_q = param() {tensor="fc1.weight_q"} : i8[4,8]',
    '%fc1.weight_scale = param() {tensor="fc1.weight_scale"} : f32[8]',
    '%fc1.bias_q = param() {tensor="fc1.bias_q"} : i32[8]',
    '%fc1 = qlinear(%x_q, %fc1.weight_q, %fc1.weight_scale, %fc1.bias_q) {dtype="uint8",'
    ' activation="relu"} : u8[N,8]{s=0.007795806974172592, z=0}',
    '%fc2.weight_q = param() {tensor="fc2.weight_q"} : i8[8,3]',
    '%fc2.weight_scale = param() {tensor="fc2.weight_scale"} : f32[3]',
    '%fc2.bias_q = param() {tensor="fc2.bias_q"} : i32[3]',
    '%fc2 = qlinear(%fc1, %fc2.weight_q, %fc2.weight_scale, %fc2.bias_q) {dtype="uint8"}'
    ' : u8[N,3]{s=0.005650700069963932, z=178}',
    '%fc2_dq = dequantize(%fc2) {axis=-1, group_size=0} : f32[N,3]',
    'return %fc2_dq',
])

CONV_INT = "\n".join([
    '%x = placeholder() : f32[N,1,6,6]',
    '%x_q = quantize(%x) {dtype="uint8"} : u8[N,1,6,6]{s=0.024895211681723595, z=130}',
    '%conv1.weight_q = param() {tensor="conv1.weight_q"} : i8[3,3,1,4]',
    '%conv1.weight_scale = param() {tensor="conv1.weight_scale"} : f32[4]',
    '%conv1.bias_q = param() {tensor="conv1.bias_q"} : i32[4]',
    '%conv1 = qconv2d(%x_q, %conv1.weight_q, %conv1.weight_scale, %conv1.bias_q) {stride=1,'
    ' padding=1, dtype="uint8", activation="relu"} : u8[N,4,6,6]{s=0.00731323566287756, z=0}',
    '%conv2.weight_q = param() {tensor="conv2.weight_q"} : i8[3,3,4,4]',
    '%conv2.weight_scale = param() {tensor="conv2.weight_scale"} : f32[4]',
    '%conv2.bias_q = param() {tensor="conv2.bias_q"} : i32[4]',
    '%conv2 = qconv2d(%conv1, %conv2.weight_q, %conv2.weight_scale, %conv2.bias_q)'
    ' {stride=2, padding=1, dtype="uint8", activation="relu"}'
    ' : u8[N,4,3,3]{s=0.0035107650328427553, z=0}',
    '%flatten = reshape(%conv2) {shape=(N, 36)} : u8[N,36]{s=0.0035107650328427553, z=0}',
    '%fc.weight_q = param() {tensor="fc.weight_q"} : i8[36,3]',
    '%fc.weight_scale = param() {tensor="fc.weight_scale"} : f32[3]',
    '%fc.bias_q = param() {tensor="fc.bias_q"} : i32[3]',
    '%fc = qlinear(%flatten, %fc.weight_q, %fc.weight_scale, %fc.bias_q) {dtype="uint8"}'
    ' : u8[N,3]{s=0.0047082058154046535, z=158}',
    '%fc_dq = dequantize(%fc) {axis=-1, group_size=0} : f32[N,3]',
    'return %fc_dq',
])

RESIDUAL = """\
%x = placeholder() : f32[N,4]
%fc1.weight = param() {tensor="fc1.weight"} : f32[4,4]
%fc1 = linear(%x, %fc1.weight) : f32[N,4]
%add = add(%fc1, %x) : f32[N,4]
%relu = relu(%add) : f32[N,4]
%tanh = tanh(%relu) : f32[N,4]
%fc2.weight = param() {tensor="fc2.weight"} : f32[4,3]
%fc2 = linear(%tanh, %fc2.weight) : f32[N,3]
return %fc2"""

# the residual add+relu runs as qadd; tanh has no integer version and stays float between
# dequantize and quantize
RESIDUAL_INT_OPS = ["placeholder", "quantize", "param", "param", "qlinear", "qadd", "dequantize",
                    "tanh", "quantize", "param", "param", "qlinear", "dequantize", "output"]

ATTENTION_LIKE = """\
%x = placeholder() : f32[N,4,4]
%fc1.weight = param() {tensor="fc1.weight"} : f32[4,4]
%fc1 = linear(%x, %fc1.weight) : f32[N,4,4]
%t = transpose(%x) {axes=None} : f32[N,4,4]
%mm = matmul(%fc1, %t) : f32[N,4,4]
%mx = maximum(%mm, %mm) : f32[N,4,4]
return %mx"""

ATTENTION_LIKE_INT_TAIL = [
    '%t = transpose(%x_q) {axes=None} : u8[N,4,4]{s=0.023897724226117134, z=125}',
    '%mm = qmatmul(%fc1, %t) {dtype="uint8"} : u8[N,4,4]{s=0.04907563328742981, z=109}',
    '%mx = maximum(%mm, %mm) : u8[N,4,4]{s=0.04907563328742981, z=109}',
    '%mx_dq = dequantize(%mx) {axis=-1, group_size=0} : f32[N,4,4]',
    'return %mx_dq',
]

REQUANT_QDQ = """\
%x = placeholder() : f32[N,64]
%a = quantize(%x) {dtype="uint8"} : u8[N,64]{s=0.02, z=128}
%b = dequantize(%a) {axis=-1, group_size=0} : f32[N,64]
%c = quantize(%b) {dtype="int8"} : i8[N,64]{s=0.05, z=3}
%d = dequantize(%c) {axis=-1, group_size=0} : f32[N,64]
%e = quantize(%d) {dtype="int8"} : i8[N,64]{s=0.05, z=3}
%f = dequantize(%e) {axis=-1, group_size=0} : f32[N,64]
return %f"""

REQUANT_INT = """\
%x = placeholder() : f32[N,64]
%a = quantize(%x) {dtype="uint8"} : u8[N,64]{s=0.02, z=128}
%c = requantize(%a) {dtype="int8"} : i8[N,64]{s=0.05, z=3}
%f = dequantize(%c) {axis=-1, group_size=0} : f32[N,64]
return %f"""


def stages(graph, shape, cfg=STATIC):
    prepared = quantize_pass(graph, cfg)
    calibrate(prepared, batches(shape), progress=False)
    qdq = convert(prepared)
    return qdq, to_integer(qdq)


def _twin(qdq, node):
    """The QDQ quantize node an integer node stands for (None for a shared op on integers)."""
    names = {n.name for n in qdq.nodes}
    if node.name in names and qdq.node(node.name).op == "quantize":
        return node.name
    if node.name + "_q" in names:
        return node.name + "_q"
    if node.op in ("qlinear", "qconv2d"):  # a separate relu was folded: its quantize
        same = [q.name for q in qdq.find("quantize") if q.meta["qparams"] == node.meta["qparams"]
                and q.inputs[0].op == "relu"]
        return same[0] if len(same) == 1 else None
    return None


def assert_within_one_step(qdq, integer, x):
    """Every integer node equals the QDQ graph's quantized value within one step."""
    vq, vi = node_values(qdq, x), node_values(integer, x)
    checked = 0
    for node in integer.nodes:
        if node.meta.get("qparams") is None or node.op == "param":
            continue
        twin = _twin(qdq, node)
        if twin is not None:
            assert qdq.node(twin).meta["qparams"] == node.meta["qparams"], node.name
            diff = np.abs(vi[node.name].astype(np.int64) - vq[twin].astype(np.int64))
        else:  # a shared op ran on integers where the QDQ graph ran it on dequantized floats
            s, z = node.meta["qparams"]["s"], node.meta["qparams"]["z"]
            diff = np.abs((vi[node.name].astype(np.float64) - z) * s - vq[node.name]) / s
        assert diff.max() <= 1, (node.name, diff.max())
        checked += 1
    return checked


def test_mlp_integer_text():
    qdq, integer = stages(mlp(), (8, 4))
    assert str(integer) == MLP_INT
    assert str(qdq) != str(integer), "to_integer must leave the QDQ graph alone"
    integer.lint()


def test_conv_integer_text_reshape_runs_on_integers():
    _, integer = stages(convnet(), (8, 1, 6, 6))
    assert str(integer) == CONV_INT
    assert integer.node("flatten").meta["dtype"] == "uint8"


@pytest.mark.parametrize("cfg", [
    STATIC,
    STATIC.replace(activation_dtype="int8"),
    STATIC.replace(activation_dtype="int8", activation_symmetric=True),
    STATIC.replace(weight_granularity="per_tensor"),
], ids=["u8", "s8", "s8-symmetric", "per-tensor-weights"])
@pytest.mark.parametrize("model,shape", [(mlp, (4,)), (convnet, (1, 6, 6))], ids=["mlp", "conv"])
def test_integer_graph_agrees_with_qdq_at_every_node(cfg, model, shape):
    qdq, integer = stages(model(), (8,) + shape, cfg)
    x = batches((32,) + shape, count=1, seed=7)[0] * 1.5  # also beyond the calibrated range
    assert assert_within_one_step(qdq, integer, x) >= 3
    out_step = integer.output_node.inputs[0].inputs[0].meta["qparams"]["s"]
    np.testing.assert_allclose(integer(x).numpy(), qdq(x).numpy(), atol=out_step * 1.001)


def test_wide_mlp_agrees_with_qdq_within_one_step():
    wide = MLP
    for old, new in (("[N,4]", "[N,64]"), ("[4,8]", "[64,256]"), ("f32[8]", "f32[256]"),
                     ("[N,8]", "[N,256]"), ("[8,3]", "[256,10]"), ("f32[3]", "f32[10]"),
                     ("[N,3]", "[N,10]")):
        wide = wide.replace(old, new)
    qdq, integer = stages(build(wide, seed=3), (64, 64))
    assert assert_within_one_step(qdq, integer, batches((128, 64), count=1, seed=7)[0]) == 3


def test_residual_add_relu_becomes_qadd_and_tanh_stays_float():
    g = build(RESIDUAL)
    qdq, integer = stages(g, (8, 4))
    assert [n.op for n in integer.nodes] == RESIDUAL_INT_OPS
    assert integer.node("add_relu").attrs == {"dtype": "uint8", "activation": "relu"}
    x = batches((32, 4), count=1, seed=7)[0]
    assert_within_one_step(qdq, integer, x)
    # qadd is defined as the QDQ add, so with equal inputs it is bit-exact
    vq, vi = node_values(qdq, x), node_values(integer, x)
    np.testing.assert_array_equal(vi["add_relu"], vq["add_relu_q"])


def test_matmul_of_activations_and_shared_transpose_maximum():
    qdq, integer = stages(build(ATTENTION_LIKE), (8, 4, 4))
    assert str(integer).splitlines()[-5:] == ATTENTION_LIKE_INT_TAIL
    x = batches((8, 4, 4), count=1, seed=7)[0]
    assert_within_one_step(qdq, integer, x)


def test_quantize_dequantize_pairs_become_requantize_or_nothing():
    g = Graph.parse(REQUANT_QDQ).lint()
    before = g.copy()
    assert get_pass("fuse-qdq")(g) is True
    assert str(g) == REQUANT_INT
    x = np.random.default_rng(0).uniform(-3, 3, (16, 64)).astype(np.float32)
    got = node_values(g, x)["c"].astype(np.int64)
    want = node_values(before, x)["c"].astype(np.int64)
    assert np.abs(got - want).max() <= 1


def test_fuse_qdq_twice_changes_nothing():
    _, integer = stages(mlp(), (8, 4))
    text = str(integer)
    assert get_pass("fuse-qdq")(integer) is False
    assert str(integer) == text


def test_layers_kept_float_by_override_are_not_fused():
    cfg = STATIC.replace(module_paths={"fc2": None})
    _, integer = stages(mlp(), (8, 4), cfg)
    assert [n.op for n in integer.find(("qlinear", "linear"))] == ["qlinear", "linear"]
    fc2 = integer.node("fc2")
    assert fc2.inputs[0].op == "dequantize"


def test_separate_relu_without_the_float_pipeline_is_folded_into_the_clamp():
    prepared = quantize_pass(mlp(), STATIC, float_pipeline=False)
    calibrate(prepared, batches((8, 4)), progress=False)
    qdq = convert(prepared)
    integer = to_integer(qdq)
    assert integer.node("fc1").attrs["activation"] == "relu"
    assert not integer.find("relu")
    assert_within_one_step(qdq, integer, batches((16, 4), count=1, seed=7)[0])
