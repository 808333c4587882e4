"""int8 / uint8 weight-only GEMM: bit-identical to its naive twin on every ISA, close to float64."""

import numpy as np
import pytest

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

ISAS = q.kernel_info()["available"]
# M hits every row remainder of MR = 6, N every column remainder of the 16-wide panels.
SHAPES = [(1, 1, 1), (2, 3, 5), (5, 7, 17), (6, 16, 16), (7, 33, 15), (13, 67, 48), (67, 20, 67),
          (12, 64, 33)]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Forces one kernel path through NEEDLE_QC_ISA (every path this CPU has)."""
    monkeypatch.setenv("NEEDLE_QC_ISA", request.param)
    return request.param


def rng(*salt):
    return np.random.default_rng([4321, *salt])


def weights(r, K, N, unsigned, group_size, with_zp):
    """Random (w_q, scales, zero_points or None) in the kernel's argument shapes."""
    groups = 1 if group_size == 0 else -(-K // group_size)
    shape = (N,) if group_size == 0 else (groups, N)
    lo, hi = (0, 256) if unsigned else (-128, 128)
    wq = r.integers(lo, hi, (K, N)).astype(np.uint8 if unsigned else np.int8)
    scales = r.uniform(1e-3, 0.1, shape).astype(np.float32)
    zp = r.integers(lo, hi, shape).astype(np.int32) if with_zp else None
    return wq, scales, zp


def dequantize64(wq, scales, zp, group_size):
    K = wq.shape[0]
    s = scales.reshape(1, -1) if group_size == 0 else np.repeat(scales, group_size, 0)[:K]
    z = 0 if zp is None else (zp.reshape(1, -1) if group_size == 0 else
                              np.repeat(zp, group_size, 0)[:K])
    return (wq.astype(np.int64) - z).astype(np.float32) * s  # the reference decode, in fp32


@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("unsigned,group_size,with_zp", [
    (False, 0, False), (True, 0, True), (False, 8, False), (True, 16, True), (False, 5, True),
    (True, 0, False),
])
def test_matches_naive_exactly_and_float64_within_rounding(isa, M, K, N, unsigned, group_size,
                                                           with_zp):
    r = rng(M, K, N, unsigned, group_size, with_zp)
    wq, scales, zp = weights(r, K, N, unsigned, group_size, with_zp)
    x = r.standard_normal((M, K)).astype(np.float32)
    bias = r.standard_normal(N).astype(np.float32)
    packed = q.pack_weight_int8(wq, scales, zp, group_size)
    got = q.gemm_f32_wint8(x, packed, bias)
    assert got.dtype == np.float32 and got.shape == (M, N)
    np.testing.assert_array_equal(got, q.gemm_f32_wint8_naive(x, wq, scales, zp, group_size, bias))
    wdec = dequantize64(wq, scales, zp, group_size)
    exact = x.astype(np.float64) @ wdec.astype(np.float64) + bias
    tol = (np.abs(x) @ np.abs(wdec)) * K * 2**-23 + np.abs(bias) * 2**-23 + 1e-30
    assert (np.abs(got - exact) <= tol).all()


# Many rows take the blocked driver (a 256-deep tile decoded once per 192 rows); few rows the panel
# kernels. Shapes cross k-blocks (K > 256, groups straddling them), row blocks (M > 192) and the
# partial last panel.
BLOCKED = [(8, 300, 40), (13, 513, 17), (200, 257, 33), (385, 70, 16)]


@pytest.mark.parametrize("M,K,N", BLOCKED)
@pytest.mark.parametrize("unsigned,group_size,with_zp", [(False, 0, False), (True, 96, True)])
def test_blocked_rows_are_bit_identical_to_row_by_row(isa, M, K, N, unsigned, group_size,
                                                      with_zp):
    r = rng(M, K, N, 77)
    wq, scales, zp = weights(r, K, N, unsigned, group_size, with_zp)
    x = r.standard_normal((M, K)).astype(np.float32)
    bias = r.standard_normal(N).astype(np.float32)
    packed = q.pack_weight_int8(wq, scales, zp, group_size)
    got = q.gemm_f32_wint8(x, packed, bias)
    rows = np.concatenate([q.gemm_f32_wint8(x[m:m + 1], packed, bias) for m in range(M)])
    np.testing.assert_array_equal(got, rows)
    np.testing.assert_array_equal(got, q.gemm_f32_wint8_naive(x, wq, scales, zp, group_size, bias))


def test_without_bias_and_with_all_zero_zero_points_matches_no_zero_points(isa):
    r = rng(1)
    wq, scales, _ = weights(r, 40, 19, True, 0, False)
    x = r.standard_normal((9, 40)).astype(np.float32)
    zeros = np.zeros(19, np.int32)
    with_zeros = q.pack_weight_int8(wq, scales, zeros)
    assert not with_zeros.has_zero_point  # all-zero zero points cost no bytes
    np.testing.assert_array_equal(q.gemm_f32_wint8(x, with_zeros),
                                  q.gemm_f32_wint8(x, q.pack_weight_int8(wq, scales)))


@pytest.mark.parametrize("unsigned", [False, True])
def test_extreme_values_are_decoded_exactly(isa, unsigned):
    """Each weight extreme (-128 / 127, 0 / 255 against zero points at both ends) alone in a row."""
    K, N = 4, 18
    ends = [0, 255] if unsigned else [-128, 127]
    wq = np.zeros((K, N), np.uint8 if unsigned else np.int8)
    wq[np.arange(K), np.arange(K)] = ends * 2
    wq[:, 17] = ends[1]
    zp = np.array([ends[1], ends[0]] * 9, np.int32)
    scales = np.full(N, 0.5, np.float32)
    eye = np.eye(K, dtype=np.float32)
    got = q.gemm_f32_wint8(eye, q.pack_weight_int8(wq, scales, zp))
    expect = (wq.astype(np.int64) - zp).astype(np.float32) * scales  # exact: halves of integers
    np.testing.assert_array_equal(got, expect)


def test_nbytes_is_payload_plus_fp32_qparams_padded_to_panels():
    wq = np.ones((64, 32), np.uint8)
    s, z = np.ones(32, np.float32), np.full(32, 3, np.int32)
    assert q.pack_weight_int8(wq, s).nbytes == 64 * 32 + 4 * 32
    assert q.pack_weight_int8(wq, s, z).nbytes == 64 * 32 + 8 * 32
    grouped = q.pack_weight_int8(wq.view(np.int8), np.ones((2, 32), np.float32), None, 32)
    assert grouped.nbytes == 64 * 32 + 4 * 64 and grouped.format == "int8"
    assert q.pack_weight_int8(np.ones((3, 17), np.int8), np.ones(17, np.float32)).nbytes == \
        3 * 32 + 4 * 32  # the last panel is padded to 16 columns


def test_bad_arguments_raise_clear_errors():
    wq, s = np.ones((4, 3), np.int8), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="^w_q: expected dtype int8 or uint8"):
        q.pack_weight_int8(wq.astype(np.int32), s)
    with pytest.raises(ValueError, match="^w_q: must have K > 0"):
        q.pack_weight_int8(np.ones((0, 3), np.int8), s)
    with pytest.raises(ValueError, match=r"^scales: expected shape \(3,\)"):
        q.pack_weight_int8(wq, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"^scales: expected shape \(2, 3\)"):
        q.pack_weight_int8(wq, s, None, 2)
    with pytest.raises(ValueError, match="^scales: entry 1"):
        q.pack_weight_int8(wq, np.array([1, 0, 1], np.float32))
    with pytest.raises(ValueError, match="^scales: entry 2"):
        q.pack_weight_int8(wq, np.array([1, 1, np.nan], np.float32))
    with pytest.raises(ValueError, match="^group_size"):
        q.pack_weight_int8(wq, s, None, -1)
    with pytest.raises(ValueError, match=r"^zero_points: entry 0 = 200 outside \[-128, 127\]"):
        q.pack_weight_int8(wq, s, np.full(3, 200, np.int32))
    with pytest.raises(ValueError, match=r"^zero_points: entry 0 = -1 outside \[0, 255\]"):
        q.pack_weight_int8(wq.view(np.uint8), s, np.full(3, -1, np.int32))
    with pytest.raises(ValueError, match="^zero_points: expected dtype int32"):
        q.pack_weight_int8(wq, s, np.zeros(3, np.int8))
    packed = q.pack_weight_int8(wq, s)
    with pytest.raises(ValueError, match="^x: has K = 5 but the weights have K = 4"):
        q.gemm_f32_wint8(np.ones((2, 5), np.float32), packed)
    with pytest.raises(ValueError, match="^x: expected dtype float32"):
        q.gemm_f32_wint8(np.ones((2, 4)), packed)
    with pytest.raises(ValueError, match="^bias: expected length N = 3"):
        q.gemm_f32_wint8(np.ones((2, 4), np.float32), packed, np.ones(2, np.float32))
