"""needle_qc.ops: ONNX-named public surface, reference dispatch and pluggable backends."""
import inspect

import numpy as np
import pytest

import needle_qc.ops as ops
from needle_qc.quantize import reference as ref


@pytest.mark.parametrize("name", ops.OP_NAMES)
def test_signatures_match_reference_plus_backend(name):
    public = inspect.signature(getattr(ops, name)).parameters
    inner = inspect.signature(getattr(ref, name)).parameters
    assert list(public)[:-1] == list(inner)
    assert public["backend"].default == "reference"
    for p in inner:
        assert public[p].default == inner[p].default


def test_reference_dispatch_is_bit_identical():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(ops.quantize_linear(x, np.float32(0.05), np.int8(2)),
                                  ref.quantize_linear(x, np.float32(0.05), np.int8(2)))
    y, s, z = ops.dynamic_quantize_linear(x)
    np.testing.assert_array_equal(ops.dequantize_linear(y, s, z),
                                  ref.dequantize_linear(y, s, z))
    a = rng.integers(0, 255, (2, 8)).astype(np.uint8)
    w = rng.integers(-127, 127, (8, 3)).astype(np.int8)
    np.testing.assert_array_equal(ops.matmul_integer(a, w, np.uint8(4)),
                                  ref.matmul_integer(a, w, np.uint8(4)))
    args = (a, np.float32(0.1), np.uint8(4), w, np.float32(0.01), np.int8(0), np.float32(0.2),
            np.uint8(9))
    np.testing.assert_array_equal(ops.qlinear_matmul(*args), ref.qlinear_matmul(*args))
    xc = rng.integers(0, 255, (1, 2, 5, 5)).astype(np.uint8)
    wc = rng.integers(-127, 127, (4, 2, 3, 3)).astype(np.int8)
    np.testing.assert_array_equal(ops.conv_integer(xc, wc, pads=[1, 1, 1, 1]),
                                  ref.conv_integer(xc, wc, pads=[1, 1, 1, 1]))
    cargs = (xc, np.float32(0.1), np.uint8(3), wc, np.float32(0.01), np.int8(0), np.float32(0.05),
             np.uint8(7))
    np.testing.assert_array_equal(ops.qlinear_conv(*cargs, strides=[2, 2]),
                                  ref.qlinear_conv(*cargs, strides=[2, 2]))


def test_backends_registry():
    with pytest.raises(ValueError, match=r"backend='cuda'; valid: \[.*'reference'"):
        ops.quantize_linear(np.ones(2, np.float32), np.float32(1), backend="cuda")
    calls = []

    def fake_matmul_integer(A, B, a_zero_point=None, b_zero_point=None):
        calls.append(A.shape)
        return ref.matmul_integer(A, B, a_zero_point, b_zero_point)

    ops.register_backend("test_fake", {"matmul_integer": fake_matmul_integer})
    try:
        a, b = np.ones((2, 3), np.uint8), np.ones((3, 1), np.int8)
        np.testing.assert_array_equal(ops.matmul_integer(a, b, backend="test_fake"), [[3], [3]])
        assert calls == [(2, 3)]
        with pytest.raises(NotImplementedError, match="'test_fake' does not implement"):
            ops.qlinear_matmul(a, 1.0, 0, b, 1.0, 0, 1.0, 0, backend="test_fake")
    finally:
        ops._BACKENDS.pop("test_fake")
    with pytest.raises(ValueError, match=r"unknown ops \['gemm'\]"):
        ops.register_backend("x", {"gemm": print})
    with pytest.raises(ValueError, match="built in"):
        ops.register_backend("reference", {})
