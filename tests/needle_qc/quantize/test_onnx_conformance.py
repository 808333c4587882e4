"""Bit-exact conformance of the NumPy reference ops against onnxruntime (one-node ONNX models)."""
import numpy as np
import pytest

from needle_qc.quantize import reference as ref
from tests.needle_qc.quantize.conftest import S8_LIMIT

SEED = 1234


def _ties(rng, n, scale):
    """Inputs that sit exactly on .5 after division by a power-of-two scale."""
    k = rng.integers(-300, 300, n).astype(np.float32)
    return ((k + np.float32(0.5)) * np.float32(scale)).astype(np.float32)


@pytest.mark.parametrize("zp", [np.uint8(0), np.uint8(3), np.uint8(128), np.int8(0), np.int8(-3),
                                np.uint16(301), np.int16(-7)])
def test_quantize_linear_per_tensor_matches_ort(zp, ort_node):
    """QuantizeLinear per tensor: random values, exact .5 ties, saturation edges."""
    rng = np.random.default_rng(SEED)
    scale = np.float32(0.0625)
    x = np.concatenate([
        (rng.standard_normal(5000) * 40).astype(np.float32),
        _ties(rng, 2000, scale),
        np.array([1e30, -1e30, np.inf, -np.inf, 0.0, -0.0], np.float32),
    ])
    ours = ref.quantize_linear(x, scale, zp)
    theirs = ort_node("QuantizeLinear", [x, scale, zp])[0]
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_quantize_linear_random_scales_match_ort(ort_node):
    """Non-power-of-two scales: the division rounding must agree everywhere."""
    rng = np.random.default_rng(SEED + 1)
    for _ in range(5):
        x = (rng.standard_normal(20000) * 3).astype(np.float32)
        scale = np.float32(rng.uniform(1e-3, 0.1))
        zp = np.uint8(rng.integers(0, 256))
        np.testing.assert_array_equal(ref.quantize_linear(x, scale, zp),
                                      ort_node("QuantizeLinear", [x, scale, zp])[0])


def test_quantize_linear_per_axis_and_blocked_match_ort(ort_node):
    rng = np.random.default_rng(SEED + 2)
    x = (rng.standard_normal((3, 8, 10)) * 5).astype(np.float32)
    s = rng.uniform(0.01, 0.1, 8).astype(np.float32)
    z = rng.integers(-20, 20, 8).astype(np.int8)
    np.testing.assert_array_equal(ref.quantize_linear(x, s, z, axis=1),
                                  ort_node("QuantizeLinear", [x, s, z], axis=1)[0])
    sb = rng.uniform(0.01, 0.1, (3, 8, 3)).astype(np.float32)
    zb = rng.integers(0, 255, (3, 8, 3)).astype(np.uint8)
    np.testing.assert_array_equal(
        ref.quantize_linear(x, sb, zb, axis=2, block_size=4),
        ort_node("QuantizeLinear", [x, sb, zb], axis=2, block_size=4)[0])


@pytest.mark.parametrize("signed", [True, False])
def test_4bit_quantize_matches_ort_through_dequantize(signed, ort_qdq_4bit):
    """int4/uint4 rounding and saturation, per tensor and blocked (seen through DQ(Q(x)))."""
    rng = np.random.default_rng(SEED + 11)
    name, container = ("int4", np.int8) if signed else ("uint4", np.uint8)
    zp = container(-1 if signed else 9)
    x = np.concatenate([_ties(rng, 64, 0.25), (rng.standard_normal(64) * 3).astype(np.float32),
                        np.array([-100, 100], np.float32)]).astype(np.float32)
    q = ref.quantize_linear(x, np.float32(0.25), zp, output_dtype=name)
    ours = ref.dequantize_linear(q, np.float32(0.25), zp)
    np.testing.assert_array_equal(ours, ort_qdq_4bit(x, np.float32(0.25), zp, signed))
    xb = (rng.standard_normal((4, 10)) * 2).astype(np.float32)
    sb = rng.uniform(0.1, 0.5, (4, 3)).astype(np.float32)
    zb = np.zeros((4, 3), container)
    qb = ref.quantize_linear(xb, sb, zb, axis=1, block_size=4, output_dtype=name)
    ours = ref.dequantize_linear(qb, sb, zb, axis=1, block_size=4)
    np.testing.assert_array_equal(ours, ort_qdq_4bit(xb, sb, zb, signed, axis=1, block_size=4))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32])
def test_dequantize_linear_matches_ort(dtype, ort_node):
    rng = np.random.default_rng(SEED + 3)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -(2**30)), min(info.max, 2**30)
    x = rng.integers(lo, hi, (4, 6, 5), endpoint=True).astype(dtype)
    s = np.float32(0.0371)
    z = dtype(0) if dtype == np.int32 else dtype(rng.integers(info.min, info.max))
    np.testing.assert_array_equal(ref.dequantize_linear(x, s, z),
                                  ort_node("DequantizeLinear", [x, s, z])[0])
    if dtype != np.int32:
        sa = rng.uniform(0.01, 1, 6).astype(np.float32)
        za = rng.integers(info.min, info.max, 6).astype(dtype)
        np.testing.assert_array_equal(ref.dequantize_linear(x, sa, za, axis=1),
                                      ort_node("DequantizeLinear", [x, sa, za], axis=1)[0])


@pytest.mark.parametrize("case", ["random", "ties", "positive", "negative", "zeros", "constant"])
def test_dynamic_quantize_linear_matches_ort(case, ort_node):
    """DynamicQuantizeLinear incl. the degenerate all-zero input (both give scale 1, zp 0)."""
    rng = np.random.default_rng(SEED + 4)
    x = {
        "random": (rng.standard_normal((7, 33)) * 2).astype(np.float32),
        "ties": np.array([-1.0, 0.5, 1.5, 2.5, 254.5, 255.0], np.float32),
        "positive": rng.uniform(0.5, 3.0, 100).astype(np.float32),
        "negative": -rng.uniform(0.5, 3.0, 100).astype(np.float32),
        "zeros": np.zeros((3, 4), np.float32),
        "constant": np.full(10, -2.5, np.float32),
    }[case]
    ours = ref.dynamic_quantize_linear(x)
    theirs = ort_node("DynamicQuantizeLinear", [x], n_outputs=3)
    for o, t in zip(ours, theirs):
        assert np.asarray(o).dtype == t.dtype
        np.testing.assert_array_equal(o, t)


def _qmm_case(rng, k, per_column, a_dtype=np.uint8):
    info = np.iinfo(a_dtype)
    a = rng.integers(info.min, info.max, (9, k), endpoint=True).astype(a_dtype)
    b = rng.integers(-S8_LIMIT, S8_LIMIT, (k, 11), endpoint=True).astype(np.int8)
    sa = np.float32(rng.uniform(0.005, 0.05))
    za = a_dtype(rng.integers(info.min, info.max))
    if per_column:
        sb = rng.uniform(0.001, 0.01, 11).astype(np.float32)
        zb = np.zeros(11, np.int8)
    else:
        sb, zb = np.float32(0.004), np.int8(rng.integers(-5, 5))
    sy, zy = np.float32(rng.uniform(0.05, 2.0)), np.uint8(rng.integers(0, 255))
    return [a, sa, za, b, sb, zb, sy, zy]


@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matmul_random_matches_ort(per_column, ort_node):
    """(ORT 1.23 has no int8 x int8 QLinearMatMul kernel, so a is uint8 here.)"""
    rng = np.random.default_rng(SEED + 5)
    for k in (1, 17, 64):
        args = _qmm_case(rng, k, per_column)
        np.testing.assert_array_equal(ref.qlinear_matmul(*args),
                                      ort_node("QLinearMatMul", args)[0])


def test_qlinear_matmul_requant_ties_match_ort(ort_node):
    """Multiplier exactly 0.5 with odd accumulators: every output is a .5 tie (ties to even)."""
    rng = np.random.default_rng(SEED + 6)
    # small operands keep outputs away from saturation, so the ties are visible
    a = rng.integers(0, 16, (16, 3)).astype(np.uint8)
    b = rng.integers(-8, 8, (3, 8)).astype(np.int8)
    args = [a, np.float32(0.5), np.uint8(0), b, np.float32(1.0), np.int8(0), np.float32(1.0),
            np.uint8(101)]
    acc = a.astype(np.int64) @ b.astype(np.int64)
    assert np.sum((acc % 2 == 1) & (np.abs(acc) < 200)) > 20
    np.testing.assert_array_equal(ref.qlinear_matmul(*args), ort_node("QLinearMatMul", args)[0])


def test_qlinear_matmul_large_accumulators_match_ort(ort_node):
    """|acc| > 2**24: the int32 -> fp32 conversion rounds; both sides must round alike."""
    k = 1024 * 127 // S8_LIMIT
    a = np.full((2, k), 255, np.uint8)
    b = np.full((k, 3), S8_LIMIT, np.int8)
    b[:, 1] = -S8_LIMIT
    b[::2, 2] = S8_LIMIT - 1
    args = [a, np.float32(1e-3), np.uint8(0), b, np.float32(1e-3), np.int8(0), np.float32(0.3),
            np.uint8(128)]
    acc = a.astype(np.int64) @ b.astype(np.int64)
    assert np.abs(acc).max() > 2**24
    np.testing.assert_array_equal(ref.qlinear_matmul(*args), ort_node("QLinearMatMul", args)[0])


CONV_ATTRS = [
    {},
    {"pads": [1, 1, 1, 1]},
    {"pads": [1, 0, 2, 1], "strides": [2, 1], "dilations": [1, 2], "group": 2},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    {"auto_pad": "VALID", "group": 4},
]


@pytest.mark.parametrize("attrs", CONV_ATTRS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_conv_matches_ort(attrs, per_channel, ort_node):
    rng = np.random.default_rng(SEED + 7)
    group = attrs.get("group", 1)
    x = rng.integers(0, 255, (2, 4, 9, 8), endpoint=True).astype(np.uint8)
    w = rng.integers(-S8_LIMIT, S8_LIMIT, (8, 4 // group, 3, 3), endpoint=True).astype(np.int8)
    ws = rng.uniform(1e-3, 1e-2, 8).astype(np.float32) if per_channel else np.float32(4e-3)
    wz = np.zeros(8, np.int8) if per_channel else np.int8(0)
    bias = rng.integers(-3000, 3000, 8).astype(np.int32)
    args = [x, np.float32(0.02), np.uint8(97), w, ws, wz, np.float32(0.25), np.uint8(5), bias]
    np.testing.assert_array_equal(ref.qlinear_conv(*args, **attrs),
                                  ort_node("QLinearConv", args, **attrs)[0])


def test_qlinear_conv_requant_ties_match_ort(ort_node):
    rng = np.random.default_rng(SEED + 8)
    x = rng.integers(0, 255, (1, 3, 6, 6)).astype(np.uint8)
    w = rng.integers(-127, 127, (4, 3, 1, 1)).astype(np.int8)
    args = [x, np.float32(0.5), np.uint8(0), w, np.float32(1.0), np.int8(0), np.float32(1.0),
            np.uint8(31), np.array([1, 0, -1, 3], np.int32)]
    np.testing.assert_array_equal(ref.qlinear_conv(*args), ort_node("QLinearConv", args)[0])


@pytest.mark.parametrize("dtypes", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)])
def test_matmul_integer_matches_ort(dtypes, ort_node):
    rng = np.random.default_rng(SEED + 9)
    da, db = dtypes
    ia, ib = np.iinfo(da), np.iinfo(db)
    lo, hi = (-S8_LIMIT, S8_LIMIT) if (da, db) == (np.uint8, np.int8) else (ib.min, ib.max)
    a = rng.integers(ia.min, ia.max, (2, 5, 33), endpoint=True).astype(da)
    b = rng.integers(lo, hi, (33, 7), endpoint=True).astype(db)
    za, zb = da(rng.integers(ia.min, ia.max)), db(rng.integers(ib.min, ib.max))
    np.testing.assert_array_equal(ref.matmul_integer(a, b, za, zb),
                                  ort_node("MatMulInteger", [a, b, za, zb])[0])
    zbc = rng.integers(ib.min, ib.max, 7).astype(db)
    np.testing.assert_array_equal(ref.matmul_integer(a, b, za, zbc),
                                  ort_node("MatMulInteger", [a, b, za, zbc])[0])
    np.testing.assert_array_equal(ref.matmul_integer(a, b), ort_node("MatMulInteger", [a, b])[0])


@pytest.mark.parametrize("attrs", CONV_ATTRS)
def test_conv_integer_matches_ort(attrs, ort_node):
    rng = np.random.default_rng(SEED + 10)
    group = attrs.get("group", 1)
    x = rng.integers(0, 255, (2, 4, 7, 9), endpoint=True).astype(np.uint8)
    w = rng.integers(0, 255, (8, 4 // group, 3, 2), endpoint=True).astype(np.uint8)
    args = [x, w, np.uint8(110), np.uint8(3)]
    np.testing.assert_array_equal(ref.conv_integer(*args, **attrs),
                                  ort_node("ConvInteger", args, **attrs)[0])
