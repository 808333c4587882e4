"""fuse-activations: add+relu -> add_relu always; linear/conv2d+relu -> activation attr."""

import numpy as np

from needle_qc.passes import get_pass
from tests.needle_qc.passes.conftest import assert_same_numbers, parse

ADD_RELU = """\
%x = placeholder() : f32[N,3]
%y = placeholder() : f32[N,3]
%add = add(%x, %y) : f32[N,3]
%relu = relu(%add) : f32[N,3]
%out = negate(%relu) : f32[N,3]
return %out"""

ADD_RELU_FUSED = """\
%x = placeholder() : f32[N,3]
%y = placeholder() : f32[N,3]
%add_relu = add_relu(%x, %y) : f32[N,3]
%out = negate(%add_relu) : f32[N,3]
return %out"""


def test_add_then_relu_becomes_add_relu(rng):
    g = parse(ADD_RELU)
    before = g.copy()
    assert get_pass("fuse-activations")(g) is True
    assert str(g) == ADD_RELU_FUSED
    x, y = (rng.standard_normal((4, 3)).astype(np.float32) for _ in range(2))
    assert_same_numbers(before, g, x, y, rtol=0, atol=0)


def test_add_with_another_user_is_not_fused():
    text = ADD_RELU.replace("%out = negate(%relu)", "%out = add(%relu, %add)")
    g = parse(text)
    assert get_pass("fuse-activations")(g) is False
    assert str(g) == text


LINEAR_RELU = """\
%x = placeholder() : f32[N,4]
%fc.weight = param() {tensor="fc.weight"} : f32[4,3]
%fc = linear(%x, %fc.weight) : f32[N,3]
%relu = relu(%fc) : f32[N,3]
return %relu"""

LINEAR_RELU_FUSED = """\
%x = placeholder() : f32[N,4]
%fc.weight = param() {tensor="fc.weight"} : f32[4,3]
%fc = linear(%x, %fc.weight) {activation="relu"} : f32[N,3]
return %fc"""

def test_linear_then_relu_gets_the_activation_attr(rng):
    g = parse(LINEAR_RELU, **{"fc.weight": rng.standard_normal((4, 3))})
    before = g.copy()
    assert get_pass("fuse-activations")(g) is True
    assert str(g) == LINEAR_RELU_FUSED
    x = rng.standard_normal((5, 4)).astype(np.float32)
    assert_same_numbers(before, g, x, rtol=0, atol=0)


def test_conv2d_then_relu_gets_the_activation_attr(rng):
    text = """\
%x = placeholder() : f32[N,2,4,4]
%w = param() {tensor="w"} : f32[3,3,2,3]
%conv = conv2d(%x, %w) {stride=1, padding=1} : f32[N,3,4,4]
%relu = relu(%conv) : f32[N,3,4,4]
return %relu"""
    g = parse(text, w=rng.standard_normal((3, 3, 2, 3)))
    before = g.copy()
    assert get_pass("fuse-activations")(g) is True
    assert str(g).splitlines()[2] == \
        '%conv = conv2d(%x, %w) {stride=1, padding=1, activation="relu"} : f32[N,3,4,4]'
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    assert_same_numbers(before, g, x, rtol=0, atol=0)


def test_layer_with_activation_already_set_is_not_fused_twice(rng):
    g = parse(LINEAR_RELU, **{"fc.weight": rng.standard_normal((4, 3))})
    g.node("fc").attrs["activation"] = "relu"
    assert get_pass("fuse-activations")(g) is False
