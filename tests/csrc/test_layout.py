"""NCHW <-> NHWC copies of _quant_cpu against numpy's transpose, every dtype size and shape."""

import numpy as np
import pytest

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

SHAPES = [(64, 3, 32, 32), (1, 1, 28, 28), (3, 5, 7, 9), (2, 17, 1, 1), (0, 3, 4, 4),
          (2, 2, 3, 3), (2, 4, 9, 9), (1, 3, 130, 1), (5, 64, 7, 7)]
DTYPES = [np.uint8, np.int8, np.float16, np.float32, np.int32, np.float64]


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_copies_equal_numpy_transpose(shape, dtype, threads, monkeypatch):
    monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
    x = (np.random.default_rng(sum(shape)).standard_normal(shape) * 100).astype(dtype)
    nhwc = q.nchw_to_nhwc(x)
    assert nhwc.dtype == x.dtype and nhwc.flags.c_contiguous
    np.testing.assert_array_equal(nhwc, x.transpose(0, 2, 3, 1))
    back = q.nhwc_to_nchw(nhwc)
    np.testing.assert_array_equal(back, x)


def test_extreme_values_move_unchanged():
    x = np.array([0, 255, 1, 254] * 6, np.uint8).reshape(1, 3, 2, 4)
    np.testing.assert_array_equal(q.nchw_to_nhwc(x), x.transpose(0, 2, 3, 1))
    f = np.array([np.inf, -np.inf, np.nan, -0.0] * 3, np.float32).reshape(1, 3, 2, 2)
    assert q.nchw_to_nhwc(f).tobytes() == np.ascontiguousarray(f.transpose(0, 2, 3, 1)).tobytes()


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3, 4), np.uint8), "x: expected 4 dims, got 3"),
    (np.zeros((2, 3, 4, 5), np.uint8)[..., ::2], "x: expected a C-contiguous array"),
    (np.zeros((1, 1, 1, 1), np.complex128), "x: expected 1, 2, 4 or 8-byte elements, got 16"),
    ([[1]], "x: expected a numpy array"),
])
def test_bad_input_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        q.nchw_to_nhwc(bad)
