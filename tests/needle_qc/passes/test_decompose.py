"""decompose: high-level ops -> Needle primitives with the same numbers (1e-6)."""

import numpy as np

import needle as ndl
import needle.models as models
from needle import nn
from needle_qc.capture.tracer import trace
from needle_qc.passes import get_pass
from tests.needle_qc.passes.conftest import assert_same_numbers, parse, randomize_batchnorms

LINEAR = """\
%x = placeholder() : f32[N,4]
%fc.weight = param() {tensor="fc.weight"} : f32[4,3]
%fc.bias = param() {tensor="fc.bias"} : f32[1,3]
%fc = linear(%x, %fc.weight, %fc.bias) : f32[N,3]
return %fc"""

LINEAR_DECOMPOSED = """\
%x = placeholder() : f32[N,4]
%fc.weight = param() {tensor="fc.weight"} : f32[4,3]
%fc.bias = param() {tensor="fc.bias"} : f32[1,3]
%fc.matmul = matmul(%x, %fc.weight) : f32[N,3]
%fc.bias_broadcast = broadcast_to(%fc.bias) {shape=(N, 3)} : f32[N,3]
%fc.add_bias = add(%fc.matmul, %fc.bias_broadcast) : f32[N,3]
return %fc.add_bias"""


def test_linear_becomes_matmul_broadcast_add(rng):
    g = parse(LINEAR, **{"fc.weight": rng.standard_normal((4, 3)),
                         "fc.bias": rng.standard_normal((1, 3))})
    before = g.copy()
    assert get_pass("decompose")(g) is True
    assert str(g) == LINEAR_DECOMPOSED
    x = rng.standard_normal((5, 4)).astype(np.float32)
    assert_same_numbers(before, g, x)
    assert get_pass("decompose")(g) is False


CONV = """\
%x = placeholder() : f32[N,2,5,5]
%w = param() {tensor="w"} : f32[3,3,2,4]
%b = param() {tensor="b"} : f32[4]
%c = conv2d(%x, %w, %b) {stride=2, padding=1} : f32[N,4,3,3]
return %c"""

CONV_DECOMPOSED = """\
%x = placeholder() : f32[N,2,5,5]
%w = param() {tensor="w"} : f32[3,3,2,4]
%b = param() {tensor="b"} : f32[4]
%c.to_nhwc_1 = transpose(%x) {axes=(1, 2)} : f32[N,5,2,5]
%c.to_nhwc = transpose(%c.to_nhwc_1) {axes=(2, 3)} : f32[N,5,5,2]
%c.conv = conv(%c.to_nhwc, %w) {stride=2, padding=1} : f32[N,3,3,4]
%c.bias_reshape = reshape(%b) {shape=(1, 1, 1, 4)} : f32[1,1,1,4]
%c.bias_broadcast = broadcast_to(%c.bias_reshape) {shape=(N, 3, 3, 4)} : f32[N,3,3,4]
%c.add_bias = add(%c.conv, %c.bias_broadcast) : f32[N,3,3,4]
%c.to_nchw_1 = transpose(%c.add_bias) {axes=(2, 3)} : f32[N,3,4,3]
%c.to_nchw = transpose(%c.to_nchw_1) {axes=(1, 2)} : f32[N,4,3,3]
return %c.to_nchw"""


def test_conv2d_becomes_transposes_around_conv(rng):
    g = parse(CONV, w=rng.standard_normal((3, 3, 2, 4)), b=rng.standard_normal(4))
    before = g.copy()
    assert get_pass("decompose")(g) is True
    assert str(g) == CONV_DECOMPOSED
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    assert_same_numbers(before, g, x)


def test_batch_norm_and_relu_models_decompose_exactly():
    np.random.seed(0)
    model = randomize_batchnorms(models.SmallCNN(device=ndl.cpu_numpy()))
    x = np.random.default_rng(2).standard_normal((2, 1, 28, 28)).astype(np.float32)
    g = trace(model, x)
    before = g.copy()
    get_pass("decompose")(g)
    g.lint()
    assert not g.find(["linear", "conv2d", "batch_norm"])
    assert len(g.find("relu")) == len(before.find("relu")) > 0
    assert_same_numbers(before, g, x)


def test_layer_norm_on_3d_input_decomposes(rng):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm1d(4, device=ndl.cpu_numpy())
            self.fc = nn.Linear(4, 3, device=ndl.cpu_numpy())

        def forward(self, x):
            return self.fc(self.norm(x))

    np.random.seed(0)
    block = Block()
    block.norm.weight = ndl.Tensor(rng.uniform(0.5, 1.5, 4).astype(np.float32))
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    g = trace(block, x)
    before = g.copy()
    get_pass("decompose")(g)
    g.lint()
    assert not g.find(["linear", "layer_norm"])
    assert_same_numbers(before, g, x)


def test_fused_activation_becomes_a_relu_node():
    from needle_qc.passes import FLOAT_PIPELINE, run_passes

    np.random.seed(0)
    model = randomize_batchnorms(models.SmallCNN(device=ndl.cpu_numpy()))
    x = np.random.default_rng(4).standard_normal((2, 1, 28, 28)).astype(np.float32)
    g = trace(model, x)
    run_passes(g, FLOAT_PIPELINE)
    fused = g.copy()
    assert not g.find("relu")
    convs = [n.name for n in fused.find("conv2d") if n.attrs.get("activation") == "relu"]
    assert convs
    run_passes(g, ["decompose"])
    assert [n.name for n in g.find("relu")] == [f"{name}.relu" for name in convs]
    assert_same_numbers(fused, g, x)
