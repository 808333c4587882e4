"""bind_qadd: dequantize + float32 add + quantize_f32 in one call, against the separate kernels
bit for bit (every operand / output type, a narrowed clamp, sizes around its 1024-element chunk,
extreme values), and its argument checks."""

import numpy as np
import pytest

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

ISAS = q.kernel_info()["available"]
TYPES = [("uint8", "uint8", "uint8"), ("int8", "uint8", "int8"), ("uint8", "int8", "uint8"),
         ("int8", "int8", "int8")]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", request.param)
    return request.param


def ints(r, dtype, shape, extreme):
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    if extreme:
        return np.where(np.arange(np.prod(shape)).reshape(shape) % 2, lo, hi).astype(dtype)
    return r.integers(lo, hi + 1, shape).astype(dtype)


def separate(x, y, qa, qb, qy, out_dtype, lo, hi):
    one = lambda s, z: (np.array([s], np.float32), np.array([z], np.int32))  # noqa: E731
    total = np.add(q.dequantize(x, *one(*qa), 0), q.dequantize(y, *one(*qb), 0),
                   dtype=np.float32)
    return q.quantize_f32(total, *one(*qy), 0, out_dtype, lo, hi)


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
@pytest.mark.parametrize("shape", [(20, 1, 32), (1023,), (1024,), (3, 1025), (0, 4)])
@pytest.mark.parametrize("types", TYPES, ids=["-".join(t) for t in TYPES])
def test_bound_qadd_equals_the_separate_kernels(isa, types, shape, extreme):
    a_dt, b_dt, out_dt = types
    r = np.random.default_rng([len(shape), extreme, TYPES.index(types)])
    x, y = ints(r, a_dt, shape, extreme), ints(r, b_dt, shape, not extreme)
    qa = (np.float32(0.0271), -5 if a_dt == "int8" else 131)
    qb = (np.float32(0.0405), 7 if b_dt == "int8" else 143)
    qy = (np.float32(0.0423), -2 if out_dt == "int8" else 130)
    full = (-128, 127) if out_dt == "int8" else (0, 255)
    for lo, hi in (full, (qy[1], full[1]), (full[0], full[0] + 127)):  # plain, ReLU, 7-bit
        bound = q.bind_qadd(a_dt, float(qa[0]), qa[1], b_dt, float(qb[0]), qb[1], out_dt,
                            float(qy[0]), qy[1], lo, hi)
        got = bound(x, y)
        expect = separate(x, y, qa, qb, qy, out_dt, lo, hi)
        assert got.dtype == expect.dtype and got.shape == expect.shape
        np.testing.assert_array_equal(got, expect)


def test_bound_qadd_names_bad_input():
    with pytest.raises(ValueError, match="a:"):
        q.bind_qadd("uint8", 0.0, 0, "uint8", 1.0, 0, "uint8", 1.0, 0)
    with pytest.raises(ValueError, match="b:"):
        q.bind_qadd("uint8", 1.0, 0, "int8", 1.0, 200, "uint8", 1.0, 0)
    with pytest.raises(ValueError, match="qmin/qmax"):
        q.bind_qadd("uint8", 1.0, 0, "uint8", 1.0, 0, "int8", 1.0, 0, -200, 0)
    bound = q.bind_qadd("uint8", 1.0, 0, "uint8", 1.0, 0, "uint8", 1.0, 0)
    with pytest.raises(ValueError, match="b: must have the shape of a"):
        bound(np.zeros((2, 3), np.uint8), np.zeros((3,), np.uint8))
    with pytest.raises(ValueError, match="a: expected dtype uint8"):
        bound(np.zeros(3, np.int8), np.zeros(3, np.uint8))
