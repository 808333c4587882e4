"""The GEMM output stage with each panel's column terms expanded once (every column remainder,
row remainder, output kind, zero-point form and extreme values) against the naive twins, and the
layer-bound calls (bind_gemm_requant / bind_gemm_f32 / bind_linear_dynamic) against the free
functions they stand for, bit for bit, on every ISA path."""

import numpy as np
import pytest

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

ISAS = q.kernel_info()["available"]
SEED = 2611
# every column remainder of a 16-column panel (0..15) and 1..4 row tiles plus a remainder
PANEL_SHAPES = [(m, k, 16 * p + r) for r in range(16) for m, k, p in
                ((1 + r % 5, 4 + r, 1 + r % 3), (20, 32, 2))]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Forces one kernel path through NEEDLE_QC_ISA (every path this CPU has)."""
    monkeypatch.setenv("NEEDLE_QC_ISA", request.param)
    return request.param


def rng(*salt):
    return np.random.default_rng([SEED, *salt])


def operands(r, M, K, N, extreme=False):
    """(a u8, w s8, w_zp): random, or the extremes (a = 255, w = -128 / 127 alternating)."""
    if extreme:
        a = np.full((M, K), 255, np.uint8)
        w = np.where(np.arange(K * N).reshape(K, N) % 2 == 0, -128, 127).astype(np.int8)
        return a, w, np.full(N, 127, np.int32)
    a = r.integers(0, 256, (M, K)).astype(np.uint8)
    w = r.integers(-128, 128, (K, N)).astype(np.int8)
    return a, w, r.integers(-5, 6, N).astype(np.int32)


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
@pytest.mark.parametrize("M,K,N", PANEL_SHAPES)
def test_panel_output_stage_matches_naive(isa, M, K, N, extreme):
    """s32, requant (u8 / s8, narrow clamp) and f32 (per-row scales, bias, ReLU), with and
    without weight zero points, per-tensor and per-row activation zero points."""
    r = rng(M, K, N, extreme)
    a, w, w_zp = operands(r, M, K, N, extreme)
    # extreme: |bias| = 2^30 (the true sums still fit in int32, as the kernels require)
    bias = np.where(np.arange(N) % 2 == 0, -(2**30), 2**30).astype(np.int32) if extreme else \
        r.integers(-4000, 4000, N).astype(np.int32)
    mult = (r.uniform(0.5, 2, N) / (K * 128)).astype(np.float32)
    for zp in (None, w_zp):
        pw = q.pack_weight_s8(w, zp)
        for a_zp in (0, 255 if extreme else 77, r.integers(0, 256, M).astype(np.int32)):
            np.testing.assert_array_equal(q.gemm_u8s8_s32(a, a_zp, pw),
                                          q.gemm_u8s8_s32_naive(a, a_zp, w, zp))
            for dt, y_zp, lo, hi in (("uint8", 100, 0, 255), ("int8", -3, -128, 127),
                                     ("uint8", 7, 7, 200)):
                got = q.gemm_u8s8_requant(a, a_zp, pw, bias, mult, y_zp, lo, hi, dt)
                expect = q.gemm_u8s8_requant_naive(a, a_zp, w, zp, bias, mult, y_zp, lo, hi, dt)
                np.testing.assert_array_equal(got, expect)
            scale = r.uniform(1e-4, 1e-2, N).astype(np.float32)
            fbias = r.standard_normal(N).astype(np.float32)
            rows = r.uniform(0.5, 2, M).astype(np.float32)
            for relu, row_scale in ((False, None), (True, rows)):
                got = q.gemm_u8s8_f32(a, a_zp, pw, scale, fbias, relu, row_scale)
                expect = q.gemm_u8s8_f32_naive(a, a_zp, w, zp, scale, fbias, relu, row_scale)
                np.testing.assert_array_equal(got, expect)


def test_requant_per_tensor_multiplier_on_a_partial_panel(isa):
    """A multiplier of length 1 (broadcast) and no bias, N = 3375 (210 panels + 15 columns)."""
    r = rng(3375)
    a, w, _ = operands(r, 20, 32, 3375)
    pw = q.pack_weight_s8(w)
    mult = np.array([3e-4], np.float32)
    got = q.gemm_u8s8_requant(a, 131, pw, None, mult, 128, 0, 255)
    np.testing.assert_array_equal(got, q.gemm_u8s8_requant_naive(a, 131, w, None, None, mult,
                                                                 128, 0, 255, "uint8"))


@pytest.mark.parametrize("signed", [False, True], ids=["u8s8", "s8s8"])
@pytest.mark.parametrize("shape", [(20, 1, 32), (7, 40), (3, 2, 5, 9), (0, 32)])
def test_bound_gemms_equal_the_free_functions(isa, signed, shape):
    """x[..., K] -> y[..., N]: the requantized and the float (int32 bias before the scale)
    outputs, with a weight zero point, through any leading shape (no rows included)."""
    r = rng(signed, *shape)
    K, N = shape[-1], 37
    x = (r.integers(-128, 128, shape).astype(np.int8) if signed else
         r.integers(0, 256, shape).astype(np.uint8))
    w = r.integers(-127, 128, (K, N)).astype(np.int8)
    pw = q.pack_weight_s8(w, r.integers(-3, 4, N).astype(np.int32))
    a_dtype, a_zp = ("int8", -5) if signed else ("uint8", 133)
    bias = r.integers(-3000, 3000, N).astype(np.int32)
    mult = (r.uniform(0.5, 2, N) / (K * 128)).astype(np.float32)
    free_rq = q.gemm_s8s8_requant if signed else q.gemm_u8s8_requant
    free_s32 = q.gemm_s8s8_s32 if signed else q.gemm_u8s8_s32
    x2 = x.reshape(-1, K)
    bound = q.bind_gemm_requant(pw, a_dtype, a_zp, bias, mult, 9, 0, 255, "uint8")
    expect = free_rq(x2, a_zp, pw, bias, mult, 9, 0, 255, "uint8")
    np.testing.assert_array_equal(bound(x), expect.reshape(shape[:-1] + (N,)))
    scale = r.uniform(1e-4, 1e-2, N).astype(np.float32)
    bound_f = q.bind_gemm_f32(pw, a_dtype, a_zp, scale, bias)
    acc = free_s32(x2, a_zp, pw) + bias
    expect = np.multiply(acc.astype(np.float32), scale, dtype=np.float32)
    np.testing.assert_array_equal(bound_f(x), expect.reshape(shape[:-1] + (N,)))


def test_bound_gemm_checks_the_fast_claim_once_and_the_data_per_call(isa):
    r = rng(5)
    w = r.integers(-100, 100, (32, 20)).astype(np.int8)
    pw = q.pack_weight_s8(w)
    with pytest.raises(ValueError, match="allow_fast"):  # 255 * max_pair_abs > 32767
        q.bind_gemm_requant(pw, "uint8", 0, None, np.ones(1, np.float32), 0, 0, 255,
                            allow_fast=True, a_max=255)
    bound = q.bind_gemm_requant(pw, "uint8", 0, None, np.full(1, 1e-3, np.float32), 0, 0, 255,
                                allow_fast=True, a_max=127)
    x = r.integers(0, 128, (4, 32)).astype(np.uint8)
    np.testing.assert_array_equal(
        bound(x), q.gemm_u8s8_requant(x, 0, pw, None, np.full(1, 1e-3, np.float32), 0, 0, 255))
    with pytest.raises(ValueError, match="a_max"):
        bound(np.full((4, 32), 200, np.uint8))


def test_bound_calls_name_bad_input():
    pw = q.pack_weight_s8(np.ones((8, 4), np.int8))
    bound = q.bind_gemm_requant(pw, "uint8", 0, None, np.ones(1, np.float32), 0, 0, 255)
    with pytest.raises(ValueError, match="x: expected a last axis of K = 8"):
        bound(np.zeros((2, 9), np.uint8))
    with pytest.raises(ValueError, match="x: expected dtype uint8"):
        bound(np.zeros((2, 8), np.int8))
    with pytest.raises(ValueError, match="a_zero_point"):
        q.bind_gemm_f32(pw, "uint8", 256, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="a_dtype"):
        q.bind_gemm_f32(pw, "int4", 0, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="scale"):
        q.bind_linear_dynamic(pw, np.array([np.nan], np.float32))
    dyn = q.bind_linear_dynamic(pw, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="x: contains NaN"):
        dyn(np.array([[np.nan] * 8], np.float32))


@pytest.mark.parametrize("per_row", [False, True], ids=["per_tensor", "per_token"])
@pytest.mark.parametrize("shape", [(20, 1, 32), (5, 33), (1, 16), (0, 16)])
def test_bound_linear_dynamic_equals_its_steps(isa, per_row, shape):
    """dynamic quantize (per tensor / per row) + gemm_u8s8_f32 + a separate bias add."""
    r = rng(per_row, *shape)
    K, N = shape[-1], 35
    x = (r.standard_normal(shape) * 3).astype(np.float32)
    w = r.integers(-127, 128, (K, N)).astype(np.int8)
    pw = q.pack_weight_s8(w)
    scale_w = r.uniform(1e-3, 1e-2, N).astype(np.float32)
    bias = r.standard_normal(N).astype(np.float32)
    x2 = x.reshape(-1, K)
    if per_row:
        xq, s_x, z_x = q.dynamic_quantize_rows(x2, "uint8")
        y = q.gemm_u8s8_f32(xq, z_x, pw, scale_w, None, False, s_x)
    else:
        xq, s_x, z_x = q.dynamic_quantize_u8(x2)
        y = q.gemm_u8s8_f32(xq, int(z_x), pw, np.multiply(np.float32(s_x), scale_w,
                                                          dtype=np.float32))
    for b in (None, bias):
        expect = y if b is None else np.add(y, b, dtype=np.float32)
        got = q.bind_linear_dynamic(pw, scale_w, b, per_row)(x)
        np.testing.assert_array_equal(got, expect.reshape(shape[:-1] + (N,)))
