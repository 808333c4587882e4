"""NumPy reference ops: the §2.7 rounding traps, formulas, degenerate cases and error messages."""
import numpy as np
import pytest

from needle_qc.quantize import _conv
from needle_qc.quantize import reference as ref

# -- §2.7.1 divide vs multiply by reciprocal -------------------------------------------------


def test_division_not_reciprocal_fbgemm_numbers():
    """fbgemm's documented case: x * (1/s) = 127.5 -> 128, but x / s = 127.49999 -> 127."""
    x, s = np.float32(0.273939937), np.float32(0.00214854861)
    recip = np.float32(x * np.float32(np.float32(1) / s))
    assert np.rint(recip) == 128  # the trap is real in fp32
    assert np.float32(x / s) < np.float32(127.5)
    assert ref.quantize_linear(np.array([x]), s, np.uint8(0))[0] == 127


# -- §2.7.2 zero point after rounding ----------------------------------------------------------


@pytest.mark.parametrize("zp", [np.uint8(3), np.int8(-3)])
def test_zero_point_added_after_rounding(zp):
    """Ties to even happen on x/s alone: round(z + t) would give a different answer for odd z."""
    x = np.array([0.5, 1.5, 2.5, 3.5, 4.5], np.float32)
    got = ref.quantize_linear(x, np.float32(1.0), zp)
    # rint(t): 0, 2, 2, 4, 4, then + zp
    np.testing.assert_array_equal(got, np.array([0, 2, 2, 4, 4]) + int(zp))
    wrong = np.rint(x + np.float32(int(zp)))  # LEGACY order
    assert not np.array_equal(got, wrong)


def test_round_half_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999998], np.float32)
    np.testing.assert_array_equal(ref.round_half_even(x), [-2, -2, -0, 0, 2, 2, 2])
    assert ref.round_half_even(x).dtype == np.float32


# -- saturation edges --------------------------------------------------------------------------


def test_saturation_edges():
    x = np.array([-1e9, -128.5, -128.49, 126.5, 127.5, 1e9, np.inf, -np.inf], np.float32)
    np.testing.assert_array_equal(ref.quantize_linear(x, np.float32(1), np.int8(0)),
                                  [-128, -128, -128, 126, 127, 127, 127, -128])
    np.testing.assert_array_equal(ref.quantize_linear(x, np.float32(1), np.uint8(0)),
                                  [0, 0, 0, 126, 128, 255, 255, 0])


def test_int4_outputs_clamp_to_nibble_range():
    x = np.array([-9.0, -8.5, 7.5, 8.0, 20.0], np.float32)
    q = ref.quantize_linear(x, np.float32(1), output_dtype="int4")
    np.testing.assert_array_equal(q, [-8, -8, 7, 7, 7])
    assert q.dtype == np.int8
    u = ref.quantize_linear(x, np.float32(1), np.uint8(8), output_dtype="uint4")
    np.testing.assert_array_equal(u, [0, 0, 15, 15, 15])


def test_empty_and_constant_tensors():
    e = np.zeros((0, 3), np.float32)
    assert ref.quantize_linear(e, np.float32(1)).shape == (0, 3)
    assert ref.dequantize_linear(e.astype(np.uint8), np.float32(2)).shape == (0, 3)
    y, s, z = ref.dynamic_quantize_linear(e)
    assert y.shape == (0, 3) and s == 1 and z == 0
    y, s, z = ref.dynamic_quantize_linear(np.zeros(5, np.float32))
    assert (s, z) == (1.0, 0) and not y.any()
    y, s, z = ref.dynamic_quantize_linear(np.full(4, 3.0, np.float32))
    assert s == np.float32(np.float32(3.0) / np.float32(255)) and z == 0
    np.testing.assert_array_equal(y, 255)


def test_dequantize_formula_and_int32_bias():
    q = np.array([0, 10, 255], np.uint8)
    y = ref.dequantize_linear(q, np.float32(0.5), np.uint8(10))
    np.testing.assert_array_equal(y, np.array([-5.0, 0.0, 122.5], np.float32))
    assert y.dtype == np.float32
    b = np.array([-(2**31), 2**31 - 1], np.int32)
    assert ref.dequantize_linear(b, np.float32(1)).dtype == np.float32
    with pytest.raises(ValueError, match="int32 x has no zero point"):
        ref.dequantize_linear(b, np.float32(1), np.int32(3))


def test_blocked_quantize_roundtrip():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    s = np.full((2, 6), 0.05, np.float32)
    s[1] = 0.1
    q = ref.quantize_linear(x, s, np.zeros((2, 6), np.int8), axis=0, block_size=3)
    expect_top = ref.quantize_linear(x[:3], np.float32(0.05), np.int8(0))
    expect_bot = ref.quantize_linear(x[3:], np.float32(0.1), np.int8(0))
    np.testing.assert_array_equal(q, np.concatenate([expect_top, expect_bot]))


# -- requantization ----------------------------------------------------------------------------


def test_requant_multiplier_order():
    """M = fp32(fp32(s_a * s_b) / s_y), not s_a * (s_b / s_y) nor a float64 product."""
    sa, sb, sy = np.float32(0.1), np.float32(0.3), np.float32(0.7)
    m = ref.requant_multiplier(sa, sb, sy)
    assert m.dtype == np.float32
    assert m == np.float32(np.float32(sa * sb) / sy)
    rng = np.random.default_rng(1)
    a, b, c = (rng.uniform(1e-4, 1, 20000).astype(np.float32) for _ in range(3))
    ours = ref.requant_multiplier(a, b, c)
    other = (a * (b / c)).astype(np.float32)
    assert np.any(ours != other)  # the order matters; kernels must copy ours


def test_requantize_formula_relu_and_ties():
    acc = np.array([-3, -1, 1, 3, 5, 7, 2**24 + 1], np.int32)
    m = np.float32(0.5)
    got = ref.requantize(acc, m, 11, 0, 255)
    # rint(-1.5)=-2, rint(-0.5)=-0, 0.5->0, 1.5->2, 2.5->2, 3.5->4; 2**24+1 -> fp32 2**24
    # (zp 11 is odd: adding it before rounding would give 10, 10, 12, 12, 14, 14)
    np.testing.assert_array_equal(got, [9, 11, 11, 13, 13, 15, 255])
    relu = ref.requantize(acc, m, 11, 11, 255)
    assert relu.min() == 11
    with pytest.raises(ValueError, match="acc_i32 must be int32"):
        ref.requantize(acc.astype(np.int64), m, 0, 0, 255)
    with pytest.raises(ValueError, match="multiplier_f32 must be float32"):
        ref.requantize(acc, 0.5, 0, 0, 255)


def test_quantize_bias_and_overflow():
    b = np.array([1.0, -2.0, 0.125], np.float32)
    q = ref.quantize_bias(b, np.float32(0.5), np.array([0.25, 0.5, 0.5], np.float32))
    np.testing.assert_array_equal(q, [8, -8, 0])  # 0.125 / 0.25 = 0.5 -> 0 (ties to even)
    assert q.dtype == np.int32
    with pytest.raises(OverflowError, match="bias channel 1"):
        ref.quantize_bias(np.array([1.0, 1e4], np.float32), np.float32(1e-4),
                          np.array([1.0, 1e-3], np.float32))


def test_qlinear_ref_matches_float_formula():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (4, 3, 16)).astype(np.uint8)
    w = rng.integers(-127, 128, (16, 5)).astype(np.int8)
    sw = rng.uniform(1e-3, 1e-2, 5).astype(np.float32)
    bias = rng.integers(-500, 500, 5).astype(np.int32)
    out = ref.qlinear_ref(x, np.float32(0.02), np.uint8(7), w, sw, None, bias, np.float32(0.1),
                          np.uint8(60), relu=True)
    acc = (x.astype(np.int64) - 7) @ w.astype(np.int64) + bias
    m = ((np.float32(0.02) * sw).astype(np.float32) / np.float32(0.1)).astype(np.float32)
    expect = np.clip(np.rint(acc.astype(np.float32) * m) + 60, 60, 255)
    np.testing.assert_array_equal(out, expect)
    assert out.dtype == np.uint8 and out.shape == (4, 3, 5)
    same = ref.qlinear_matmul(x.reshape(12, 16), np.float32(0.02), np.uint8(7), w, sw,
                              np.zeros(5, np.int8), np.float32(0.1), np.uint8(60))
    plain = ref.qlinear_ref(x.reshape(12, 16), np.float32(0.02), np.uint8(7), w, sw,
                            np.zeros(5, np.int8), None, np.float32(0.1), np.uint8(60))
    np.testing.assert_array_equal(same, plain)


def test_qlinear_matmul_per_row_a():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (6, 8)).astype(np.uint8)
    b = rng.integers(-127, 128, (8, 4)).astype(np.int8)
    sa = rng.uniform(0.01, 0.1, 6).astype(np.float32)
    za = rng.integers(0, 256, 6).astype(np.uint8)
    out = ref.qlinear_matmul(a, sa, za, b, np.float32(0.01), np.int8(0), np.float32(0.5),
                             np.uint8(128))
    for i in range(6):
        row = ref.qlinear_matmul(a[i:i + 1], sa[i], za[i], b, np.float32(0.01), np.int8(0),
                                 np.float32(0.5), np.uint8(128))
        np.testing.assert_array_equal(out[i:i + 1], row)


def test_accumulator_overflow_is_an_error():
    k = 2**17 + 1  # 2**17 * 128 * 128 = 2**31
    a = np.full((1, k), -128, np.int8)
    b = np.full((k, 1), -128, np.int8)
    with pytest.raises(OverflowError, match="MatMulInteger: int32 accumulator overflow"):
        ref.matmul_integer(a, b)


# -- error messages name the argument ------------------------------------------------------------


@pytest.mark.parametrize("call,message", [
    (lambda: ref.quantize_linear(np.ones(3, np.int32), np.float32(1)), "x must be float"),
    (lambda: ref.quantize_linear(np.ones(3, np.float32), np.float32(0)), "y_scale must be finite"),
    (lambda: ref.quantize_linear(np.ones(3, np.float32), np.float32(np.nan)), "y_scale must be"),
    (lambda: ref.quantize_linear(np.array([np.nan], np.float32), np.float32(1)), "1 NaN"),
    (lambda: ref.quantize_linear(np.ones((2, 3), np.float32), np.ones(2, np.float32)),
     r"y_scale shape \(2,\) must be \(\) or \(3,\)"),
    (lambda: ref.quantize_linear(np.ones((2, 3), np.float32), np.ones(3, np.float32), axis=5),
     "axis=5 out of range"),
    (lambda: ref.quantize_linear(np.ones(3, np.float32), np.float32(1), np.uint8(0),
                                 output_dtype="int8"), "conflicts with output_dtype"),
    (lambda: ref.quantize_linear(np.ones(3, np.float32), np.float32(1), output_dtype="int3"),
     "output_dtype='int3' not supported"),
    (lambda: ref.quantize_linear(np.ones((4, 4), np.float32), np.ones((3, 4), np.float32),
                                 axis=0, block_size=2), "blocked y_scale shape"),
    (lambda: ref.dequantize_linear(np.ones(3, np.float32), np.float32(1)), "x must have dtype"),
    (lambda: ref.dequantize_linear(np.ones(3, np.uint8), np.float32(1), np.int8(0)),
     "x_zero_point dtype int8 must match"),
    (lambda: ref.matmul_integer(np.ones((2, 3), np.uint8), np.ones((4, 2), np.int8)),
     "inner dimensions differ"),
    (lambda: ref.matmul_integer(np.ones((2, 3), np.uint8), np.ones((3, 2), np.int8),
                                np.ones(3, np.uint8)), r"a_zero_point shape \(3,\)"),
    (lambda: ref.qlinear_matmul(np.ones((2, 3), np.uint8), np.float32(1), np.int8(0),
                                np.ones((3, 2), np.int8), np.float32(1), np.int8(0),
                                np.float32(1), np.uint8(0)), "a_zero_point dtype int8"),
    (lambda: ref.conv_integer(np.ones((1, 2, 3), np.uint8), np.ones((1, 2, 1, 1), np.uint8)),
     "expects 4-D x"),
    (lambda: ref.conv_integer(np.ones((1, 3, 4, 4), np.uint8), np.ones((2, 2, 1, 1), np.uint8)),
     "inconsistent with group=1"),
    (lambda: ref.conv_integer(np.ones((1, 2, 4, 4), np.uint8), np.ones((2, 2, 1, 1), np.uint8),
                              auto_pad="SAME"), "auto_pad='SAME' not one of"),
    (lambda: ref.conv_integer(np.ones((1, 2, 2, 2), np.uint8), np.ones((2, 2, 3, 3), np.uint8)),
     "output spatial size"),
    (lambda: ref.qlinear_conv(np.ones((1, 2, 4, 4), np.uint8), np.float32(1), np.uint8(0),
                              np.ones((3, 2, 1, 1), np.int8), np.ones(2, np.float32), np.int8(0),
                              np.float32(1), np.uint8(0)), r"w_scale shape \(2,\)"),
    (lambda: ref.qlinear_conv(np.ones((1, 2, 4, 4), np.uint8), np.float32(1), np.uint8(0),
                              np.ones((3, 2, 1, 1), np.int8), np.float32(1), np.int8(0),
                              np.float32(1), np.uint8(0), B=np.ones(3, np.int64)),
     "B must be int32"),
])
def test_bad_input_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_dynamic_per_token_equals_rowwise_dynamic_quantize():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 5, 17)) * 3).astype(np.float32)
    x[1, 2] = 0.0  # degenerate row
    x[2, 0] = 4.0  # constant nonzero row
    y, s, z = ref.dynamic_quantize_per_token(x)
    assert s.shape == z.shape == (3, 5)
    for idx in np.ndindex(3, 5):
        yr, sr, zr = ref.dynamic_quantize_linear(x[idx])
        np.testing.assert_array_equal(y[idx], yr)
        assert s[idx] == sr and z[idx] == zr


def test_conv_batch_chunking_is_invisible(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (5, 3, 6, 6)).astype(np.uint8)
    w = rng.integers(0, 256, (4, 3, 3, 3)).astype(np.uint8)
    whole = ref.conv_integer(x, w, np.uint8(7), pads=[1, 1, 1, 1])
    monkeypatch.setattr(_conv, "_IM2COL_BYTES", 1)  # one image per chunk
    np.testing.assert_array_equal(ref.conv_integer(x, w, np.uint8(7), pads=[1, 1, 1, 1]), whole)
    naive = np.zeros_like(whole, dtype=np.int64)
    xp = np.pad(x.astype(np.int64) - 7, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for r in range(6):
        for c in range(6):
            naive[:, :, r, c] = np.einsum("nchw,mchw->nm", xp[:, :, r:r + 3, c:c + 3], w)
    np.testing.assert_array_equal(whole, naive)
