"""dequantize of permuted views (the heads split off a projection): the kernel runs on the dense
buffer and its result is permuted back, with the values of the kernel on a contiguous copy."""

import numpy as np
import pytest

from needle_qc.lower import quant_ops
from needle_qc.lower.quant_ops import DENSE_ORDER_MIN, in_dense_order

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

S, Z = np.array([0.05], np.float32), np.array([131], np.int32)


def counting_kernel(seen):
    def kernel(x):
        seen.append(x.flags.c_contiguous)
        return q.dequantize(x, S, Z, 0)
    return kernel


@pytest.mark.parametrize("heads", [1, 4])
def test_permuted_view_dequantizes_its_dense_buffer(heads):
    x = np.random.default_rng(3).integers(0, 256, (20, 16, 32 * heads), dtype=np.uint8)
    view = x.reshape(20, 16, heads, -1).transpose(1, 2, 0, 3)  # (batch, heads, seq, depth)
    assert view.size >= DENSE_ORDER_MIN and not view.flags.c_contiguous
    seen = []
    fn = in_dense_order(counting_kernel(seen))
    for _ in range(2):  # the second call reuses the cached axis order
        got = fn(view)
        np.testing.assert_array_equal(got, q.dequantize(np.ascontiguousarray(view), S, Z, 0))
        assert got.shape == view.shape and got.dtype == np.float32
    assert seen == [True, True]  # the kernel read the dense buffer, never a copy


def test_views_that_are_not_permutations_go_to_the_kernel_as_they_are():
    rng = np.random.default_rng(4)
    strided = rng.integers(0, 256, (64, 128), dtype=np.uint8)[:, ::2]  # gaps: no dense order
    broadcast = np.broadcast_to(rng.integers(0, 256, (1, 4096), dtype=np.uint8), (3, 4096))
    small = rng.integers(0, 256, (8, 16), dtype=np.uint8).T  # below DENSE_ORDER_MIN
    for view in (strided, broadcast, small):
        seen = []
        got = in_dense_order(counting_kernel(seen))(view)
        np.testing.assert_array_equal(got, q.dequantize(np.ascontiguousarray(view), S, Z, 0))
        assert seen == [False]


def test_dense_order_of_a_transposed_view():
    x = np.zeros((2, 3, 4), np.uint8).transpose(2, 0, 1)
    order, inverse = quant_ops._dense_order(x)
    assert x.transpose(order).flags.c_contiguous
    assert x.transpose(order).transpose(inverse).shape == x.shape
