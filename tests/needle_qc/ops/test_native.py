"""backend="native" of needle_qc.ops: the same bits as the reference, clear refusals."""

import numpy as np
import pytest

from needle_qc import ops

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")
from needle_qc.ops import native as ops_native  # noqa: E402

RNG = np.random.default_rng(21)


@pytest.fixture(autouse=True, scope="module")
def native_backend():
    """Register backend="native" for these tests only (leave the registry as it was)."""
    had = "native" in ops.available_backends()
    assert ops_native.register()
    yield
    if not had:
        ops._BACKENDS.pop("native", None)


def both(name, *args, **kw):
    ref = getattr(ops, name)(*args, backend="reference", **kw)
    nat = getattr(ops, name)(*args, backend="native", **kw)
    return ref, nat


def assert_same(ref, nat):
    if isinstance(ref, tuple):
        for r, n in zip(ref, nat):
            assert np.asarray(r).dtype == np.asarray(n).dtype
            np.testing.assert_array_equal(r, n)
        return
    assert ref.dtype == nat.dtype and ref.shape == nat.shape
    np.testing.assert_array_equal(ref, nat)


def test_registered():
    assert "native" in ops.available_backends()
    assert set(ops_native.IMPLS) == set(ops.OP_NAMES)


@pytest.mark.parametrize("zp", [np.uint8(128), np.int8(-3), None])
def test_quantize_dequantize_per_tensor(zp):
    x = (RNG.standard_normal((5, 37)) * 3).astype(np.float32)
    s = np.float32(0.0173)
    q = both("quantize_linear", x, s, zp)
    assert_same(*q)
    assert_same(*both("dequantize_linear", q[0], s, zp))


def test_quantize_dequantize_per_axis():
    x = RNG.standard_normal((4, 6, 9)).astype(np.float32)
    s = RNG.uniform(0.01, 0.05, 6).astype(np.float32)
    z = RNG.integers(0, 256, 6).astype(np.uint8)
    q = both("quantize_linear", x, s, z, axis=1)
    assert_same(*q)
    assert_same(*both("dequantize_linear", q[0], s, z, axis=1))
    bias = RNG.integers(-5000, 5000, 6).astype(np.int32)
    assert_same(*both("dequantize_linear", bias, s, None, axis=0))


def test_dynamic_quantize():
    assert_same(*both("dynamic_quantize_linear", RNG.standard_normal((3, 50)).astype(np.float32)))
    with pytest.raises(ValueError, match="NaN/Inf"):
        ops.dynamic_quantize_linear(np.array([1.0, np.inf], np.float32), backend="native")


@pytest.mark.parametrize("a_dtype", [np.uint8, np.int8])
def test_matmul_integer_and_qlinear_matmul(a_dtype):
    info = np.iinfo(a_dtype)
    a = RNG.integers(info.min, info.max + 1, (13, 33)).astype(a_dtype)
    b = RNG.integers(-128, 128, (33, 17)).astype(np.int8)
    a_zp = np.array(3 if a_dtype == np.int8 else 131, a_dtype)
    b_zp = RNG.integers(-2, 3, 17).astype(np.int8)
    assert_same(*both("matmul_integer", a, b, a_zp, b_zp))
    assert_same(*both("matmul_integer", a, b))
    b_scale = RNG.uniform(0.001, 0.01, 17).astype(np.float32)
    args = (a, np.float32(0.02), a_zp, b, b_scale, np.int8(0), np.float32(0.5), np.uint8(100))
    assert_same(*both("qlinear_matmul", *args))


def test_conv_integer_and_qlinear_conv():
    x = RNG.integers(0, 256, (2, 5, 7, 6)).astype(np.uint8)
    w = RNG.integers(-127, 128, (8, 5, 3, 3)).astype(np.int8)
    kw = dict(pads=[1, 1, 1, 1], strides=[2, 2])
    assert_same(*both("conv_integer", x, w, np.uint8(77), None, **kw))
    w_scale = RNG.uniform(0.001, 0.01, 8).astype(np.float32)
    bias = RNG.integers(-1000, 1000, 8).astype(np.int32)
    args = (x, np.float32(0.02), np.uint8(77), w, w_scale, np.int8(0), np.float32(0.3),
            np.uint8(120))
    assert_same(*both("qlinear_conv", *args, B=bias, **kw))


def test_unsupported_arguments_are_refused_not_rerouted():
    x = RNG.standard_normal((4, 8)).astype(np.float32)
    with pytest.raises(NotImplementedError, match="block_size=4.*backend='reference'"):
        ops.quantize_linear(x, np.ones((4, 2), np.float32), None, axis=1, block_size=4,
                            backend="native")
    xq = np.zeros((1, 2, 5, 5), np.uint8)
    with pytest.raises(NotImplementedError, match="group=2"):
        ops.conv_integer(xq, np.zeros((2, 1, 3, 3), np.int8), group=2, backend="native")


def test_possible_int32_overflow_is_refused():
    k = 140000
    a = np.zeros((1, k), np.uint8)
    b = np.full((k, 1), 127, np.int8)
    with pytest.raises(OverflowError, match="could overflow"):
        ops.matmul_integer(a, b, np.uint8(128), None, backend="native")
