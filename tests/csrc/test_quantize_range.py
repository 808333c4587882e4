"""quantize_f32's qmin/qmax (a narrowed range clamped in the kernel's one pass, every ISA path):
bit for bit the full-range quantize clamped afterwards, and the numpy formula."""

import numpy as np
import pytest

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

ISAS = q.kernel_info()["available"]
# each dtype's ends, an end and an inside value, single points, the reduce_range 7 bits
RANGES = {"uint8": [(0, 255), (0, 127), (3, 255), (100, 100), (0, 0), (255, 255), (17, 200)],
          "int8": [(-128, 127), (-64, 63), (-128, -1), (0, 127), (-127, 127), (5, 5)]}


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", request.param)
    return request.param


def rng(*salt):
    return np.random.default_rng([99, *salt])


def quantize_numpy(x, s, z, qmin, qmax):
    with np.errstate(over="ignore"):  # 3.4e38 / 0.25: inf, which the clamp maps to qmax
        t = (x / s).astype(np.float32)  # true fp32 division
    return np.clip(np.rint(t).astype(np.float64) + z, qmin, qmax)


def clamp_after(x, s, z, axis, dtype, qmin, qmax):
    return np.clip(q.quantize_f32(x, s, z, axis, dtype), qmin, qmax).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_every_remainder_of_the_vector_width(isa, dtype):
    """n = 0..97 covers every remainder of AVX2's 32 and AVX-512's 16 floats per step."""
    s = np.array([0.031], np.float32)
    for n in range(98):
        x = (rng(n).standard_normal(n) * 3).astype(np.float32)
        for zp in ((0, 3, -7) if dtype == "int8" else (0, 64, 200)):
            z = np.array([zp], np.int32)
            for qmin, qmax in RANGES[dtype]:
                got = q.quantize_f32(x, s, z, 0, dtype, qmin, qmax)
                assert got.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(got, clamp_after(x, s, z, 0, dtype, qmin, qmax))
                np.testing.assert_array_equal(got, quantize_numpy(x, s[0], zp, qmin, qmax))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_per_channel_axes(isa, axis):
    """Per-channel scales: the per-element span (inner == 1) and the per-channel blocks."""
    r = rng(axis)
    x = (r.standard_normal((5, 6, 37)) * 2).astype(np.float32)
    C = x.shape[axis]
    s = r.uniform(0.005, 0.05, C).astype(np.float32)
    z = r.integers(0, 128, C).astype(np.int32)
    shape = [1, 1, 1]
    shape[axis] = C
    for qmin, qmax in ((0, 127), (10, 90), (0, 255)):
        got = q.quantize_f32(x, s, z, axis, "uint8", qmin, qmax)
        np.testing.assert_array_equal(got, clamp_after(x, s, z, axis, "uint8", qmin, qmax))
        want = quantize_numpy(x, s.reshape(shape), z.reshape(shape), qmin, qmax)
        np.testing.assert_array_equal(got, want.astype(np.uint8))


def test_threaded_split_of_a_large_tensor(isa, monkeypatch):
    monkeypatch.setenv("NEEDLE_NUM_THREADS", "3")
    x = (rng(5).standard_normal(200_003) * 4).astype(np.float32)
    s, z = np.array([0.02], np.float32), np.array([60], np.int32)
    got = q.quantize_f32(x, s, z, 0, "uint8", 0, 127)
    np.testing.assert_array_equal(got, clamp_after(x, s, z, 0, "uint8", 0, 127))


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_infinities_ties_and_range_edges(isa, dtype):
    s = np.array([0.25], np.float32)
    zp = 1 if dtype == "int8" else 64
    z = np.array([zp], np.int32)
    halves = (np.arange(-300, 300, dtype=np.float32) + 0.5) * s[0]  # exact .5 ties: to even
    extremes = np.array([np.inf, -np.inf, 1e30, -1e30, 3.4e38, -0.0, 0.0, 1e-45], np.float32)
    # x / s landing exactly on qmin - z, qmax - z and half a step either side of them
    for qmin, qmax in RANGES[dtype]:
        edges = np.array([qmin - zp, qmax - zp], np.float32)
        edges = np.concatenate([edges, edges + 0.5, edges - 0.5, edges + 0.49, edges - 0.51])
        x = np.tile(np.concatenate([halves, extremes, edges * s[0]]), 2)[:1000]
        got = q.quantize_f32(x, s, z, 0, dtype, qmin, qmax)
        np.testing.assert_array_equal(got, clamp_after(x, s, z, 0, dtype, qmin, qmax))
        np.testing.assert_array_equal(got, quantize_numpy(x, s[0], zp, qmin, qmax))
        assert got[len(halves)] == qmax and got[len(halves) + 1] == qmin  # +-inf: the ends


def test_nan_is_still_rejected_with_a_range(isa):
    s, z = np.array([0.1], np.float32), np.array([5], np.int32)
    for n in (1, 40):
        x = np.full(n, np.nan, np.float32)
        with pytest.raises(ValueError, match="x.*NaN"):
            q.quantize_f32(x, s, z, 0, "uint8", 0, 127)


def test_one_end_may_be_left_to_the_dtype():
    x = np.array([-100.0, -1.0, 0.0, 1.0, 100.0], np.float32)
    s, z = np.array([0.1], np.float32), np.array([0], np.int32)
    np.testing.assert_array_equal(q.quantize_f32(x, s, z, 0, "int8", qmax=5), [-128, -10, 0, 5, 5])
    np.testing.assert_array_equal(q.quantize_f32(x, s, z, 0, "int8", qmin=-3), [-3, -3, 0, 10, 127])


@pytest.mark.parametrize("dtype,qmin,qmax", [("uint8", -1, 255), ("uint8", 0, 256),
                                             ("int8", -129, 0), ("int8", 0, 128),
                                             ("uint8", 10, 9)])
def test_a_range_outside_the_dtype_is_an_error(dtype, qmin, qmax):
    x = np.ones(3, np.float32)
    s, z = np.array([1.0], np.float32), np.array([0], np.int32)
    with pytest.raises(ValueError, match=r"qmin/qmax.*not a range inside"):
        q.quantize_f32(x, s, z, 0, dtype, qmin, qmax)
