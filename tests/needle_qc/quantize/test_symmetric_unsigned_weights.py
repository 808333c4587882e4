"""Symmetric uint8/uint4 weights use the narrow range [1, 2^b - 1]: +amax never clips."""
import numpy as np
import pytest

from needle_qc.quantize import choose_qparams, qrange, quantize_weight

PAIRS = [("uint4", "int4", 8, "per_group"), ("uint8", "int8", 128, "per_channel")]


def test_narrow_unsigned_ranges_and_scales():
    assert qrange("uint4", symmetric=True, narrow=True) == (1, 15)
    assert qrange("uint8", symmetric=True, narrow=True) == (1, 255)
    assert qrange("uint8", symmetric=True) == (0, 255)  # activations keep the full range
    assert choose_qparams(-1.0, 7.0, "uint4", symmetric=True, narrow=True) == (np.float32(1), 8)
    s, z = choose_qparams(-3.0, 2.0, "uint8", symmetric=True, narrow=True)
    assert (s, z) == (np.float32(3.0 / 127), 128)


@pytest.mark.parametrize("udt,sdt,mid,gran", PAIRS)
def test_largest_positive_weight_is_reproduced_exactly(udt, sdt, mid, gran):
    """One weight alone in its group (C_in = 1 convs) used to come back 1/15 too small (uint4)."""
    w = np.array([[0.5, -0.25, 3.0], [0.0, 0.0, -1.5]], np.float32).T.copy()  # [K=3, N=2]
    qw = quantize_weight(w, udt, gran, group_size=1, symmetric=True)
    back = qw.dequantize()
    step = np.max(np.abs(w)) / (7 if udt == "uint4" else 127)
    assert abs(back[2, 0] - 3.0) <= 3.0 * 2**-23  # +amax exact, not half a step short
    assert np.all(np.abs(back - w) <= step / 2)
    assert qw.q.max() <= (15 if udt == "uint4" else 255) and qw.q.min() >= 0


@pytest.mark.parametrize("udt,sdt,mid,gran", PAIRS)
def test_symmetric_unsigned_weights_equal_signed_ones_shifted(udt, sdt, mid, gran):
    r = np.random.default_rng(7)
    w = (r.standard_normal((64, 24)) * r.uniform(0.1, 3, 24)).astype(np.float32)
    w[:, 5] = 0.0  # a degenerate channel: s = 1, z = 0, q = 0 (contract §2.10.6)
    uq = quantize_weight(w, udt, gran, group_size=16, symmetric=True)
    sq = quantize_weight(w, sdt, gran, group_size=16, symmetric=True)
    np.testing.assert_array_equal(uq.scale, sq.scale)
    np.testing.assert_array_equal(uq.dequantize(), sq.dequantize())
    live = np.broadcast_to(np.asarray(uq.zp) != 0, np.shape(uq.zp))
    assert np.all(np.asarray(uq.zp)[live] == mid)
    assert np.all(uq.dequantize()[:, 5] == 0)


def test_asymmetric_unsigned_weights_keep_the_full_range():
    w = np.linspace(-1.0, 3.0, 32, dtype=np.float32).reshape(32, 1)
    qw = quantize_weight(w, "uint4", "per_group", group_size=32, symmetric=False)
    assert qw.q.min() == 0 and qw.q.max() == 15
    assert np.float32(qw.scale.ravel()[0]) == np.float32(np.float32(4.0) / 15)
