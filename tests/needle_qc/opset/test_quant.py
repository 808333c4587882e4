"""The quantization IR ops: evaluation against the numpy reference, shape rules, text form."""

import numpy as np
import pytest

from needle_qc.errors import IRError
from needle_qc.ir.graph import Graph
from needle_qc.quantize import (
    MinMaxObserver,
    qlinear_ref,
    quantize_weight,
    requant_multiplier,
    requantize,
)
from needle_qc.quantize.reference import (
    dequantize_linear,
    qlinear_conv,
    qlinear_matmul,
    quantize_linear,
)

RNG = np.random.default_rng(42)


@pytest.fixture(autouse=True)
def _reseed():
    # every test draws the same data whatever ran before it (also under xdist)
    global RNG
    RNG = np.random.default_rng(42)


def qp(node, s, z):
    node.meta["qparams"] = {"s": float(np.float32(s)), "z": int(z)}
    return node


def quantized_input(g, name, shape, s=0.05, z=128, dtype="uint8"):
    x = g.placeholder(name, ("N",) + shape)
    return qp(g.call("quantize", [x], {"dtype": dtype}, name=f"{name}_q"), s, z)


def run(g, *inputs):
    out = g(*inputs)
    return [o.numpy() for o in out] if isinstance(out, tuple) else out.numpy()


def floats(*shape, scale=2.0):
    return RNG.uniform(-scale, scale, shape).astype(np.float32)


def test_quantize_dequantize_match_the_reference():
    g = Graph()
    q = quantized_input(g, "x", (5,), s=0.03, z=7, dtype="int8")
    g.output((q, g.call("dequantize", [q])))
    x = floats(3, 5)
    got_q, got_dq = run(g, x)
    want = quantize_linear(x, np.float32(0.03), np.int8(7))
    np.testing.assert_array_equal(got_q, want)
    np.testing.assert_array_equal(got_dq, dequantize_linear(want, np.float32(0.03), np.int8(7)))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_is_qlinear_ref(relu, per_channel):
    g = Graph()
    x = quantized_input(g, "x", (16,))
    qw = quantize_weight(floats(16, 6), "int8", "per_channel" if per_channel else "per_tensor")
    bias = RNG.integers(-500, 500, 6).astype(np.int32)
    params = [g.param("w", qw.q), g.param("s", qw.scale), g.param("b", bias)]
    act = {"activation": "relu"} if relu else {}
    y = qp(g.call("qlinear", [x, *params], {"dtype": "int8", **act}), 0.04, -5)
    g.output(y)
    xin = floats(7, 16)
    xq = quantize_linear(xin, np.float32(0.05), np.uint8(128))
    want = qlinear_ref(xq, np.float32(0.05), np.uint8(128), qw.q, qw.scale, None, bias,
                       np.float32(0.04), np.int8(-5), relu=relu, out_dtype="int8")
    np.testing.assert_array_equal(run(g, xin), want)


def test_qlinear_float_output_and_leading_dims():
    g = Graph()
    x = quantized_input(g, "x", (3, 8))
    qw = quantize_weight(floats(8, 4), "int8")
    y = g.call("qlinear", [x, g.param("w", qw.q), g.param("s", qw.scale)],
               {"dtype": "float32", "activation": "relu"})
    g.output(y)
    assert y.meta["shape"] == ("N", 3, 4) and y.meta["dtype"] == "float32"
    xin = floats(2, 3, 8)
    xq = quantize_linear(xin, np.float32(0.05), np.uint8(128)).astype(np.int64) - 128
    acc = (xq @ qw.q.astype(np.int64)).astype(np.int32)
    want = np.maximum(acc.astype(np.float32) * np.multiply(np.float32(0.05), qw.scale,
                                                           dtype=np.float32), 0)
    np.testing.assert_array_equal(run(g, xin), want)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (2, 1)])
def test_qconv2d_is_onnx_qlinear_conv(stride, padding):
    g = Graph()
    x = quantized_input(g, "x", (3, 7, 7), s=0.02, z=100)
    qw = quantize_weight(floats(3, 3, 3, 5), "int8")
    bias = RNG.integers(-900, 900, 5).astype(np.int32)
    y = g.call("qconv2d", [x, g.param("w", qw.q), g.param("s", qw.scale), g.param("b", bias)],
               {"stride": stride, "padding": padding, "dtype": "uint8"})
    g.output(qp(y, 0.1, 60))
    xin = floats(2, 3, 7, 7)
    xq = quantize_linear(xin, np.float32(0.02), np.uint8(100))
    w_oihw = np.ascontiguousarray(qw.q.transpose(3, 2, 0, 1))
    want = qlinear_conv(xq, np.float32(0.02), np.uint8(100), w_oihw, qw.scale,
                        np.zeros(5, np.int8), np.float32(0.1), np.uint8(60), bias,
                        pads=[padding] * 4, strides=[stride, stride])
    np.testing.assert_array_equal(run(g, xin), want)


def test_qmatmul_is_qlinear_matmul_per_batch():
    g = Graph()
    a = quantized_input(g, "a", (4, 6), s=0.03, z=120)
    b = quantized_input(g, "b", (6, 5), s=0.02, z=3, dtype="int8")
    g.output(qp(g.call("qmatmul", [a, b], {"dtype": "uint8"}), 0.05, 128))
    ain, bin_ = floats(3, 4, 6), floats(3, 6, 5)
    aq = quantize_linear(ain, np.float32(0.03), np.uint8(120))
    bq = quantize_linear(bin_, np.float32(0.02), np.int8(3))
    got = run(g, ain, bin_)
    for i in range(3):
        want = qlinear_matmul(aq[i], np.float32(0.03), np.uint8(120), bq[i], np.float32(0.02),
                              np.int8(3), np.float32(0.05), np.uint8(128))
        np.testing.assert_array_equal(got[i], want)


@pytest.mark.parametrize("relu", [False, True])
def test_qadd_is_the_qdq_add(relu):
    g = Graph()
    a = quantized_input(g, "a", (9,), s=0.03, z=120)
    b = quantized_input(g, "b", (9,), s=0.011, z=-4, dtype="int8")
    act = {"activation": "relu"} if relu else {}
    g.output(qp(g.call("qadd", [a, b], {"dtype": "uint8", **act}), 0.04, 90))
    ain, bin_ = floats(5, 9), floats(5, 9, scale=1.0)
    aq = quantize_linear(ain, np.float32(0.03), np.uint8(120))
    bq = quantize_linear(bin_, np.float32(0.011), np.int8(-4))
    total = dequantize_linear(aq, np.float32(0.03), np.uint8(120)) + \
        dequantize_linear(bq, np.float32(0.011), np.int8(-4))
    if relu:
        total = np.maximum(total, 0)
    want = quantize_linear(total, np.float32(0.04), np.uint8(90))
    np.testing.assert_array_equal(run(g, ain, bin_), want)


def test_requantize_formula():
    g = Graph()
    x = quantized_input(g, "x", (50,), s=0.02, z=128)
    g.output(qp(g.call("requantize", [x], {"dtype": "int8", "activation": "relu"}), 0.05, -3))
    xin = floats(4, 50)
    xq = quantize_linear(xin, np.float32(0.02), np.uint8(128))
    acc = (xq.astype(np.int64) - 128).astype(np.int32)
    want = requantize(acc, requant_multiplier(np.float32(0.02), np.float32(1), np.float32(0.05)),
                      -3, -3, 127)
    np.testing.assert_array_equal(run(g, xin), want.astype(np.int8))


def test_dequantize_blocked_with_zero_point():
    qw = quantize_weight(floats(8, 3), "uint4", "per_group", group_size=4, symmetric=False)
    g = Graph()
    w = [g.param("w", qw.q), g.param("s", qw.scale), g.param("z", qw.zp)]
    g.placeholder("x", ("N", 1))
    g.output(g.call("dequantize", w, {"axis": 0, "group_size": 4}))
    np.testing.assert_array_equal(run(g, floats(1, 1)), qw.dequantize())


def test_linear_weight_only_uint8_per_tensor_with_zero_point():
    qw = quantize_weight(floats(6, 4), "uint8", "per_tensor", symmetric=False)
    g = Graph()
    x = g.placeholder("x", ("N", 6))
    inputs = [x, g.param("w", qw.q), g.param("s", qw.scale), g.param("z", qw.zp)]
    g.output(g.call("linear_weight_only", inputs, {
        "weight_dtype": "uint8", "granularity": "per_tensor", "has_zero_point": True}))
    xin = floats(3, 6)
    np.testing.assert_allclose(run(g, xin), xin @ qw.dequantize(), rtol=1e-6, atol=1e-6)


def test_int32_overflow_names_the_node():
    g = Graph()
    x = quantized_input(g, "x", (4,))
    w = g.param("w", np.full((4, 2), 127, np.int8))
    bias = g.param("b", np.full(2, 2**31 - 10, np.int32))
    y = g.call("qlinear", [x, w, g.param("s", np.float32(0.1)), bias], {"dtype": "uint8"},
               name="fc")
    g.output(qp(y, 1.0, 0))
    with pytest.raises(OverflowError, match=r"%fc \(qlinear\).*int32 accumulator overflow"):
        g(np.full((1, 4), 5.0, np.float32))


@pytest.mark.parametrize("build,message", [
    (lambda g, x: g.call("qlinear", [x, g.param("w", np.zeros((4, 2), np.int8)),
                                     g.param("s", np.ones(2, np.float32))]),
     "qlinear: input 0 must be uint8/int8, got float32"),
    (lambda g, x: g.call("qlinear", [g.call("quantize", [x]), g.param("w", np.zeros((4, 2),
                                     np.int8)), g.param("s", np.ones(2, np.float32))]),
     r"qlinear: input 0 \(uint8\) has no qparams"),
    (lambda g, x: g.call("linear_weight_only", [x, g.param("w", np.zeros((4, 2), np.int8))],
                         {"weight_dtype": "int8", "granularity": "per_channel"}),
     "linear_weight_only: expected 3 inputs for these attrs, got 2"),
    (lambda g, x: g.call("quantize", [x], {"dtype": "int4"}),
     r"quantize: dtype='int4' is not valid; valid: \['uint8', 'int8'\]"),
    (lambda g, x: g.call("linear_weight_only", [x, g.param("w", np.zeros((3, 2), np.uint8)),
                                                g.param("s", np.ones((1, 2), np.float32))],
                         {"weight_dtype": "int4", "granularity": "per_group",
                          "group_size": 32}),
     r"packed int4 weight \(3, 2\) needs 2 bytes on axis 0 for 4 inputs"),
], ids=["float-input", "no-qparams", "input-count", "bad-dtype", "packed-shape"])
def test_shape_rules_reject_bad_graphs(build, message):
    g = Graph()
    x = g.placeholder("x", ("N", 4))
    with pytest.raises(IRError, match=message):
        build(g, x)


def test_text_round_trip_of_every_quantization_op():
    g = Graph()
    x = g.placeholder("x", ("N", 4, 4))
    obs = g.call("observer", [x])
    q = qp(g.call("quantize", [obs]), 0.05, 128)
    w = quantize_weight(floats(4, 3), "int8")
    lin = qp(g.call("qlinear", [q, g.param("w", w.q), g.param("s", w.scale)]), 0.1, 0)
    img = g.call("reshape", [q], {"shape": ("N", 1, 4, 4)})
    qp(img, 0.05, 128)
    conv_w = quantize_weight(floats(3, 3, 1, 2), "int8")
    conv = g.call("qconv2d", [img, g.param("cw", conv_w.q), g.param("cs", conv_w.scale)],
                  {"padding": 1, "dtype": "float32"})
    mm = qp(g.call("qmatmul", [q, q]), 0.2, 128)
    add = qp(g.call("qadd", [mm, q], {"activation": "relu"}), 0.2, 128)
    rq = qp(g.call("requantize", [add], {"dtype": "int8"}), 0.3, 0)
    dyn = g.call("linear_dynamic", [obs, g.param("w2", w.q), g.param("s2", w.scale)])
    wo = g.call("linear_weight_only", [obs, g.param("w16", w.q.astype(np.float16))],
                {"weight_dtype": "float16", "granularity": "none"})
    g.output((lin, conv, g.call("dequantize", [rq]), dyn, wo))
    g.lint()
    text = str(g)
    again = Graph.parse(text, g.tensors).lint()
    assert str(again) == text
    assert "u8[N,4,4]{s=0.05000000074505806, z=128}" in text
    g.observers = {obs.name: MinMaxObserver(obs.name)}
    outs = run(g, floats(2, 4, 4))
    assert [o.shape for o in outs] == [(2, 4, 3), (2, 2, 4, 4), (2, 4, 4), (2, 4, 3), (2, 4, 3)]
