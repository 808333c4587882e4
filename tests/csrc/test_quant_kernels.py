"""needle_qc._quant_cpu kernels vs their naive C++ twins and numpy formulas, on every ISA path."""

import numpy as np
import pytest

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

ISAS = q.kernel_info()["available"]
RNG_SEED = 1234
# Shapes whose M, N, K hit every tile remainder (MR in {1,2,4,8}, NR = 16, k-quads of 4).
SHAPES = [
    (1, 1, 1),
    (2, 3, 5),
    (3, 4, 16),
    (5, 7, 17),
    (8, 9, 31),
    (9, 16, 33),
    (13, 33, 15),
    (17, 67, 48),
    (31, 64, 1),
    (33, 5, 67),
    (67, 66, 65),
    (4, 128, 40),
    (96, 64, 64),
    (130, 200, 50),
]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Forces one kernel path through NEEDLE_QC_ISA (every path this CPU has)."""
    monkeypatch.setenv("NEEDLE_QC_ISA", request.param)
    return request.param


def rng(*salt):
    return np.random.default_rng([RNG_SEED, *salt])


def activations(r, shape, signed):
    if signed:
        return r.integers(-128, 128, shape).astype(np.int8)
    return r.integers(0, 256, shape).astype(np.uint8)


def s32_numpy(a, a_zp, w, w_zp):
    za = np.asarray(a_zp, np.int64).reshape(-1, 1)
    acc = (a.astype(np.int64) - za) @ (w.astype(np.int64) - np.asarray(w_zp, np.int64))
    assert np.abs(acc).max(initial=0) < 2**31
    return acc.astype(np.int32)


# --- quantize / dequantize ------------------------------------------------------------------------


def quantize_numpy(x, s, z, qmin, qmax):
    t = (x / s).astype(np.float32)  # true fp32 division, as ONNX specifies
    return np.clip(np.rint(t).astype(np.float64) + z, qmin, qmax)


@pytest.mark.parametrize("out_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("n", [1, 7, 31, 32, 33, 67, 1000])
def test_quantize_per_tensor_matches_numpy_and_naive(isa, out_dtype, n):
    r = rng(n)
    x = (r.standard_normal(n) * 3).astype(np.float32)
    s = np.array([0.0173], np.float32)
    for zp in (0, 3, 10) if out_dtype == "int8" else (0, 127, 128):
        z = np.array([zp], np.int32)
        got = q.quantize_f32(x, s, z, 0, out_dtype)
        lo, hi = (-128, 127) if out_dtype == "int8" else (0, 255)
        np.testing.assert_array_equal(got, quantize_numpy(x, s[0], zp, lo, hi).astype(out_dtype))
        np.testing.assert_array_equal(got, q.quantize_f32_naive(x, s, z, 0, out_dtype))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_quantize_per_channel_axes(isa, axis):
    r = rng(axis + 10)
    x = (r.standard_normal((5, 6, 37)) * 2).astype(np.float32)
    C = x.shape[axis]
    s = r.uniform(0.005, 0.05, C).astype(np.float32)
    z = r.integers(0, 256, C).astype(np.int32)
    got = q.quantize_f32(x, s, z, axis, "uint8")
    shape = [1, 1, 1]
    shape[axis] = C
    expect = quantize_numpy(x, s.reshape(shape), z.reshape(shape), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(got, q.quantize_f32_naive(x, s, z, axis, "uint8"))


def test_quantize_ties_go_to_even_and_zero_point_is_added_after_rounding(isa):
    # x / s = k + 0.5 exactly (s a power of two): rint picks the even neighbour, then + z.
    s = np.array([0.25], np.float32)
    halves = np.arange(-40, 40, dtype=np.float32) + 0.5
    x = np.repeat(halves * s[0], 1)
    for zp in (0, 1, 3, 128, 127):
        got = q.quantize_f32(x, s, np.array([zp], np.int32), 0, "uint8").astype(np.int64)
        expect = np.clip(np.rint(halves).astype(np.int64) + zp, 0, 255)
        np.testing.assert_array_equal(got, expect)
    # fbgemm's documented trap: x * (1/s) = 127.5 but x / s = 127.49999 -> 127.
    trap = q.quantize_f32(
        np.full(40, 0.273939937, np.float32),
        np.array([0.00214854861], np.float32),
        np.array([0], np.int32),
        0,
        "uint8",
    )
    assert (trap == 127).all()


def test_quantize_saturates_infinities_and_rejects_nan(isa):
    s, z = np.array([0.1], np.float32), np.array([5], np.int32)
    x = np.array([np.inf, -np.inf, 1e30, -1e30] * 10, np.float32)
    np.testing.assert_array_equal(q.quantize_f32(x, s, z, 0, "int8"), [127, -128, 127, -128] * 10)
    with pytest.raises(ValueError, match="x.*NaN"):
        q.quantize_f32(np.full(40, np.nan, np.float32), s, z, 0, "uint8")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32])
def test_dequantize_matches_numpy(dtype):
    r = rng(7)
    info = np.iinfo(dtype)
    qv = r.integers(max(info.min, -1000), min(info.max, 1000) + 1, (4, 9, 5)).astype(dtype)
    s = r.uniform(0.01, 0.1, 9).astype(np.float32)
    z = r.integers(-3, 4, 9).astype(np.int32) if dtype != np.uint8 else np.full(9, 7, np.int32)
    got = q.dequantize(qv, s, z, 1)
    expect = (qv.astype(np.int32) - z.reshape(1, 9, 1)).astype(np.float32) * s.reshape(1, 9, 1)
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("n", [1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 255, 256, 257, 1000])
@pytest.mark.parametrize("dtype, zp", [(np.uint8, 0), (np.uint8, 255), (np.int8, -128),
                                       (np.int8, 127), (np.int32, -2**31), (np.int32, 2**31 - 1)])
def test_dequantize_every_length_and_extreme_zero_points(n, dtype, zp):
    """Every remainder of the vector loop; 8-bit q - z spans [-510, 510]; int32 q - z overflows
    int32 (formed in int64, one rounding to float)."""
    info = np.iinfo(dtype)
    base = np.array([info.min, info.max, 0, 1, -1 if info.min < 0 else 2], np.int64)
    qv = np.resize(np.concatenate([base, np.arange(info.min, info.min + 251)]), n).astype(dtype)
    s, z = np.array([0.37], np.float32), np.array([zp], np.int32)
    want = ((qv.astype(np.int64) - zp).astype(np.float64).astype(np.float32)
            * np.float32(0.37)).astype(np.float32)
    assert q.dequantize(qv, s, z, 0).tobytes() == want.tobytes()


def dql_numpy(x):
    rmin, rmax = min(0.0, float(x.min())), max(0.0, float(x.max()))
    s = np.float32((np.float32(rmax) - np.float32(rmin)) / np.float32(255))
    if s == 0:
        return np.zeros(x.shape, np.uint8), np.float32(1), 0
    zp = int(np.rint(np.clip(np.float32(0) - np.float32(rmin) / s, 0, 255)))
    return quantize_numpy(x, s, zp, 0, 255).astype(np.uint8), s, zp


def test_dynamic_quantize_u8_matches_onnx_formula(isa):
    r = rng(8)
    for x in [
        r.standard_normal((3, 50)).astype(np.float32) * 4,
        r.uniform(0.5, 2, 77).astype(np.float32),
        -r.uniform(0.5, 2, 77).astype(np.float32),
    ]:
        got, s, zp = q.dynamic_quantize_u8(x)
        eq, es, ez = dql_numpy(x)
        assert (np.float32(s), zp) == (es, ez)
        np.testing.assert_array_equal(got, eq)
    got, s, zp = q.dynamic_quantize_u8(np.zeros(10, np.float32))
    assert (s, zp) == (1.0, 0) and not got.any()
    with pytest.raises(ValueError, match="NaN"):
        q.dynamic_quantize_u8(np.array([1.0, np.nan], np.float32))


def test_dynamic_quantize_rows_per_token(isa):
    x = rng(9).standard_normal((6, 45)).astype(np.float32)
    x[2] = 0.0
    qu, su, zu = q.dynamic_quantize_rows(x, "uint8")
    for m in range(6):
        eq, es, ez = dql_numpy(x[m])
        assert (su[m], zu[m]) == (es, ez)
        np.testing.assert_array_equal(qu[m], eq)
    qs, ss, zs = q.dynamic_quantize_rows(x, "int8")
    assert not zs.any() and ss[2] == 1.0
    amax = np.abs(x).max(axis=1).astype(np.float32)
    expect_s = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    np.testing.assert_array_equal(ss, expect_s)
    np.testing.assert_array_equal(qs, quantize_numpy(x, ss[:, None], 0, -127, 127))


# --- int8 GEMM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [False, True], ids=["u8s8", "s8s8"])
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_gemm_s32_matches_numpy_and_naive(isa, signed, M, K, N):
    r = rng(M, K, N, signed)
    a = activations(r, (M, K), signed)
    w = r.integers(-128, 128, (K, N)).astype(np.int8)
    a_zp = int(r.integers(-128, 128)) if signed else int(r.integers(0, 256))
    w_zp = r.integers(-3, 4, N).astype(np.int32) if (M + N) % 2 else np.zeros(1, np.int32)
    pw = q.pack_weight_s8(w, w_zp)
    kernel = q.gemm_s8s8_s32 if signed else q.gemm_u8s8_s32
    naive = q.gemm_s8s8_s32_naive if signed else q.gemm_u8s8_s32_naive
    got = kernel(a, a_zp, pw)
    np.testing.assert_array_equal(got, s32_numpy(a, a_zp, w, w_zp))
    np.testing.assert_array_equal(got, naive(a, a_zp, w, w_zp))


@pytest.mark.parametrize("signed", [False, True], ids=["u8s8", "s8s8"])
@pytest.mark.parametrize("M,K,N", SHAPES[::2])
def test_gemm_requant_matches_naive(isa, signed, M, K, N):
    r = rng(M, K, N, 5)
    a = activations(r, (M, K), signed)
    w = r.integers(-127, 128, (K, N)).astype(np.int8)
    a_zp = 3 if signed else 131  # odd zero points
    bias = r.integers(-5000, 5000, N).astype(np.int32)
    mult = (r.uniform(0.5, 2, N) / (K * 128)).astype(np.float32)
    out_dtype = "int8" if signed else "uint8"
    y_zp = -7 if signed else 100
    qmin, qmax = (-128, 127) if signed else (0, 255)
    pw = q.pack_weight_s8(w)
    kernel = q.gemm_s8s8_requant if signed else q.gemm_u8s8_requant
    naive = q.gemm_s8s8_requant_naive if signed else q.gemm_u8s8_requant_naive
    for lo in (qmin, y_zp):  # plain, then fused ReLU (lower clamp at y_zp)
        got = kernel(a, a_zp, pw, bias, mult, y_zp, lo, qmax, out_dtype)
        expect = naive(a, a_zp, w, None, bias, mult, y_zp, lo, qmax, out_dtype)
        np.testing.assert_array_equal(got, expect)
        acc = s32_numpy(a, a_zp, w, 0).astype(np.int64) + bias
        ref = np.clip(np.rint(acc.astype(np.float32) * mult) + y_zp, lo, qmax)
        np.testing.assert_array_equal(got, ref.astype(out_dtype))


@pytest.mark.parametrize("K", [64, 66], ids=["K%4==0 (read in place)", "K%4!=0 (copied)"])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "fortran"])
def test_gemm_reads_any_input_layout(isa, K, layout):
    """u8 rows with K % 4 == 0 are read in place; other layouts are copied first. Same bits."""
    r = rng(K, 17)
    a = activations(r, (37, 2 * K), False)[:, ::2] if layout == "strided" else \
        activations(r, (37, K), False)
    if layout == "fortran":
        a = np.asfortranarray(a)
    w = r.integers(-128, 128, (K, 40)).astype(np.int8)
    w_zp = r.integers(-5, 6, 40).astype(np.int32)  # needs row sums of the viewed rows too
    got = q.gemm_u8s8_s32(a, 7, q.pack_weight_s8(w, w_zp))
    np.testing.assert_array_equal(got, s32_numpy(np.ascontiguousarray(a), 7, w, w_zp))


@pytest.mark.parametrize("signed", [False, True], ids=["u8s8", "s8s8"])
@pytest.mark.parametrize("M,K,N", [(9, 1030, 40), (97, 600, 33), (200, 1537, 17)])
def test_gemm_with_several_depth_blocks_matches_naive(isa, signed, M, K, N):
    """K4 > 512 with several row tiles: the VNNI driver splits the depth (sums kept between
    blocks); every output kind, weight and per-row activation zero points."""
    r = rng(M, K, N, 41)
    a = activations(r, (M, K), signed)
    w = r.integers(-128, 128, (K, N)).astype(np.int8)
    a_zp = r.integers(-128, 128, M).astype(np.int32) if signed else \
        r.integers(0, 256, M).astype(np.int32)
    w_zp = r.integers(-4, 5, N).astype(np.int32)
    pw = q.pack_weight_s8(w, w_zp)
    s32 = q.gemm_s8s8_s32 if signed else q.gemm_u8s8_s32
    np.testing.assert_array_equal(s32(a, a_zp, pw), s32_numpy(a, a_zp, w, w_zp))
    bias = r.integers(-9000, 9000, N).astype(np.int32)
    mult = (r.uniform(0.5, 2, N) / (K * 256)).astype(np.float32)
    req = q.gemm_s8s8_requant if signed else q.gemm_u8s8_requant
    naive = q.gemm_s8s8_requant_naive if signed else q.gemm_u8s8_requant_naive
    dt = "int8" if signed else "uint8"
    lo, hi = (-128, 127) if signed else (0, 255)
    np.testing.assert_array_equal(req(a, a_zp, pw, bias, mult, 5, lo, hi, dt),
                                  naive(a, a_zp, w, w_zp, bias, mult, 5, lo, hi, dt))


def test_requant_exact_half_ties_round_to_even(isa):
    # K = 1, w = 1: acc = a - a_zp; multiplier 0.5 makes every odd acc an exact .5 tie.
    # N = 17: one full 16-column tile (SIMD output stage) plus a 1-column remainder (scalar).
    a = np.arange(0, 256, dtype=np.uint8).reshape(-1, 1)
    pw = q.pack_weight_s8(np.ones((1, 17), np.int8))
    for y_zp in (0, 1, 128):
        got = q.gemm_u8s8_requant(a, 128, pw, None, np.array([0.5], np.float32), y_zp, 0, 255)
        acc = np.arange(0, 256) - 128
        expect = np.clip(np.rint(acc / 2).astype(np.int64) + y_zp, 0, 255)
        np.testing.assert_array_equal(got, np.repeat(expect[:, None], 17, axis=1))
        assert (got[[129, 131], 0].astype(int) - y_zp).tolist() == [0, 2]  # 0.5 -> 0, 1.5 -> 2


@pytest.mark.parametrize("signed", [False, True], ids=["u8s8", "s8s8"])
def test_gemm_f32_and_per_row_scales_match_naive(isa, signed):
    r = rng(11, signed)
    M, K, N = 19, 70, 35
    a = activations(r, (M, K), signed)
    w = r.integers(-127, 128, (K, N)).astype(np.int8)
    scale = r.uniform(1e-4, 1e-3, N).astype(np.float32)
    bias = r.standard_normal(N).astype(np.float32)
    row_scale = r.uniform(0.5, 2, M).astype(np.float32)
    a_zp = r.integers(-128, 128, M).astype(np.int32) if signed else r.integers(0, 256, M)
    a_zp = a_zp.astype(np.int32)  # per-row zero points (per-token dynamic quantization)
    w_zp = r.integers(-3, 4, N).astype(np.int32)  # asymmetric weights: the row-sum term
    pw = q.pack_weight_s8(w, w_zp)
    kernel = q.gemm_s8s8_f32 if signed else q.gemm_u8s8_f32
    naive = q.gemm_s8s8_f32_naive if signed else q.gemm_u8s8_f32_naive
    for relu in (False, True):
        got = kernel(a, a_zp, pw, scale, bias, relu, row_scale)
        np.testing.assert_array_equal(got, naive(a, a_zp, w, w_zp, scale, bias, relu, row_scale))
        acc = s32_numpy(a, a_zp, w, w_zp).astype(np.float32)
        ref = acc * (row_scale[:, None] * scale) + bias
        np.testing.assert_array_equal(got, np.maximum(ref, 0) if relu else ref)


@pytest.mark.parametrize("K", [1024, 65536])
@pytest.mark.parametrize("w_value", [-128, 127])
def test_extreme_inputs_are_exact_where_vpmaddubsw_would_saturate(isa, K, w_value):
    a = np.full((2, K), 255, np.uint8)
    w = np.full((K, 17), w_value, np.int8)
    pw = q.pack_weight_s8(w)
    got = q.gemm_u8s8_s32(a, 0, pw)
    assert (got.astype(np.int64) == 255 * w_value * K).all()  # |Σ| up to 2.14e9 < 2^31
    # vpmaddubsw would clamp each pair 2*255*w to +-32767; the fast path must refuse.
    assert pw.max_pair_abs == 2 * abs(w_value)
    with pytest.raises(ValueError, match="allow_fast.*32767"):
        q.gemm_u8s8_s32(a, 0, pw, allow_fast=True)


def test_fast_path_is_exact_when_the_claim_holds_and_refused_when_false(isa):
    r = rng(12)
    a = r.integers(0, 128, (9, 300)).astype(np.uint8)  # reduce_range activations [0, 127]
    w = r.integers(-128, 128, (300, 40)).astype(np.int8)
    pw = q.pack_weight_s8(w)
    assert 127 * pw.max_pair_abs <= 32767
    fast = q.gemm_u8s8_s32(a, 64, pw, allow_fast=True, a_max=127)
    np.testing.assert_array_equal(fast, s32_numpy(a, 64, w, 0))
    a[3, 7] = 200
    with pytest.raises(ValueError, match="a_max"):
        q.gemm_u8s8_s32(a, 64, pw, allow_fast=True, a_max=127)


@pytest.mark.parametrize("M", range(1, 14))
def test_fast_path_every_row_remainder_and_extremes(isa, M):
    """The vpmaddubsw tiles (6, 4 and 1 rows) on every row count to 13, depths and widths off
    the quad / panel, depths split into blocks (1100 > 512: three blocks of 368 summed in c), at
    the extremes the proof allows (a = 127 against w = -128 / 127), through the s32, requant and
    f32 output stages: the same bits as the naive twin and numpy."""
    r = rng(M, 41)
    for K, N in ((1, 1), (5, 17), (33, 31), (70, 48), (1100, 20)):
        a = r.integers(0, 128, (M, K)).astype(np.uint8)
        w = r.integers(-128, 128, (K, N)).astype(np.int8)
        a[0], w[:, 0] = 127, -128  # the worst pair sum: 127 * 2 * -128 = -32512
        if M > 1:
            a[-1], w[:, -1] = 127, 127
        pw = q.pack_weight_s8(w)
        assert 127 * pw.max_pair_abs <= 32767
        got = q.gemm_u8s8_s32(a, 0, pw, allow_fast=True, a_max=127)
        np.testing.assert_array_equal(got, s32_numpy(a, 0, w, 0))
        np.testing.assert_array_equal(got, q.gemm_u8s8_s32(a, 0, pw))
        bias = r.integers(-5000, 5000, N).astype(np.int32)
        mult = (r.uniform(0.5, 2, N) / (K * 128)).astype(np.float32)
        for out_dtype, y_zp, lo, hi in (("uint8", 100, 0, 255), ("int8", -7, -128, 127)):
            got = q.gemm_u8s8_requant(a, 0, pw, bias, mult, y_zp, lo, hi, out_dtype,
                                      allow_fast=True, a_max=127)
            expect = q.gemm_u8s8_requant_naive(a, 0, w, None, bias, mult, y_zp, lo, hi,
                                               out_dtype)
            np.testing.assert_array_equal(got, expect)
        scale = r.uniform(1e-4, 1e-2, N).astype(np.float32)
        got = q.bind_gemm_f32(pw, "uint8", 0, scale, bias, allow_fast=True, a_max=127)(a)
        acc = (s32_numpy(a, 0, w, 0).astype(np.int64) + bias).astype(np.float32)
        np.testing.assert_array_equal(got, acc * scale)


@pytest.mark.parametrize("M", [95, 96, 97, 128, 200])
def test_fast_path_depth_blocks_over_several_row_blocks(isa, M):
    """Depth-split sums of every row tile of a 96-row block wait in one buffer (16 tiles of 6
    rows): row blocks past the first, and a last block of 1-5 rows, keep their exact sums."""
    r = rng(M, 43)
    a = r.integers(0, 128, (M, 1100)).astype(np.uint8)
    w = r.integers(-128, 128, (1100, 40)).astype(np.int8)
    a[-1], w[:, -1] = 127, -128
    pw = q.pack_weight_s8(w)
    got = q.gemm_u8s8_s32(a, 0, pw, allow_fast=True, a_max=127)
    np.testing.assert_array_equal(got, s32_numpy(a, 0, w, 0))


def test_accumulator_bound_is_the_worst_column():
    r = rng(13)
    w = r.integers(-128, 128, (50, 20)).astype(np.int8)
    zw = r.integers(-2, 3, 20).astype(np.int32)
    pw = q.pack_weight_s8(w, zw)
    expect = int((np.abs(w.astype(np.int64) - zw).sum(axis=0) * 200).max())
    assert q.accumulator_bound(50, (-200, 55), pw) == expect
    with pytest.raises(ValueError, match="K"):
        q.accumulator_bound(49, (0, 255), pw)


def test_thread_count_does_not_change_results(monkeypatch):
    r = rng(14)
    a = r.integers(0, 256, (70, 130)).astype(np.uint8)
    w = r.integers(-128, 128, (130, 300)).astype(np.int8)
    pw = q.pack_weight_s8(w)
    outs = []
    for threads in ("1", "3"):
        monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
        outs.append(q.gemm_u8s8_s32(a, 7, pw))
    np.testing.assert_array_equal(outs[0], outs[1])


# --- convolution ----------------------------------------------------------------------------------

CONVS = [  # (N, H, W, Cin, KH, KW, Cout, stride, padding)
    (1, 5, 5, 3, 3, 3, 4, 1, 1),
    (2, 7, 6, 5, 3, 3, 17, 2, 1),
    (1, 6, 6, 8, 1, 1, 16, 1, 0),
    (2, 4, 5, 33, 1, 1, 7, 1, 0),
    (1, 9, 8, 4, 5, 3, 6, (2, 1), (2, 0)),
    (1, 8, 8, 16, 3, 3, 32, 1, 0),
]


@pytest.mark.parametrize("geom", CONVS, ids=[str(i) for i in range(len(CONVS))])
def test_conv2d_matches_naive(isa, geom):
    n, h, w_, cin, kh, kw, cout, stride, pad = geom
    r = rng(*[v for v in geom if isinstance(v, int)])
    x = r.integers(0, 256, (n, h, w_, cin)).astype(np.uint8)
    w = r.integers(-127, 128, (kh, kw, cin, cout)).astype(np.int8)
    w_zp = r.integers(-2, 3, cout).astype(np.int32)
    pw = q.pack_conv_weight_s8(w, w_zp)
    assert pw.kernel_shape == (kh, kw, cin, cout)
    got = q.conv2d_u8s8_s32(x, 77, pw, stride, pad)
    np.testing.assert_array_equal(got, q.conv2d_u8s8_s32_naive(x, 77, w, w_zp, stride, pad))
    bias = r.integers(-1000, 1000, cout).astype(np.int32)
    mult = np.full(cout, 1.0 / (kh * kw * cin * 64), np.float32)
    got = q.conv2d_u8s8_requant(x, 77, pw, stride, pad, bias, mult, 120, 120, 255)
    expect = q.conv2d_u8s8_requant_naive(x, 77, w, w_zp, stride, pad, bias, mult, 120, 120, 255)
    np.testing.assert_array_equal(got, expect)
    scale = r.uniform(1e-3, 1e-2, cout).astype(np.float32)
    fbias = r.standard_normal(cout).astype(np.float32)
    got = q.conv2d_u8s8_f32(x, 77, pw, stride, pad, scale, fbias, True)
    expect = q.conv2d_u8s8_f32_naive(x, 77, w, w_zp, stride, pad, scale, fbias, True)
    np.testing.assert_array_equal(got, expect)


BLOCKED_CONVS = [  # several ~64 KiB row blocks, straddling image boundaries
    (3, 20, 21, 32, 3, 3, 24, 1, 1),  # im2col, 6 blocks of 224 rows over 3 images of 420
    (2, 30, 31, 64, 1, 1, 40, 1, 0),  # pointwise, rows read in place
    (2, 40, 40, 30, 1, 1, 20, 1, 0),  # pointwise with K % 4 != 0: rows copied and padded
    (1, 4, 4, 64, 3, 3, 64, 1, 1),    # one block, 4 panels: the column split
    (9, 28, 28, 1, 3, 3, 16, 1, 1),   # the MNIST stem: short runs, 2 blocks across 9 images
    (3, 17, 15, 2, 3, 3, 5, 2, 1),    # short runs, stride 2, output rows split across images
    (2, 9, 10, 5, 3, 2, 6, (1, 2), (2, 1)),  # short runs, uneven kernel, stride and padding
]


@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("geom", BLOCKED_CONVS, ids=[str(i) for i in range(len(BLOCKED_CONVS))])
def test_conv2d_row_blocks_match_naive_for_any_thread_count(isa, geom, threads, monkeypatch):
    monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
    n, h, w_, cin, kh, kw, cout, stride, pad = geom
    r = rng(*geom, 21)
    x = r.integers(0, 256, (n, h, w_, cin)).astype(np.uint8)
    w = r.integers(-128, 128, (kh, kw, cin, cout)).astype(np.int8)
    w_zp = r.integers(-3, 4, cout).astype(np.int32)  # row sums per block
    pw = q.pack_conv_weight_s8(w, w_zp)
    got = q.conv2d_u8s8_s32(x, 131, pw, stride, pad)
    np.testing.assert_array_equal(got, q.conv2d_u8s8_s32_naive(x, 131, w, w_zp, stride, pad))
    mult = np.full(cout, 1.0 / (kh * kw * cin * 64), np.float32)
    got = q.conv2d_u8s8_requant(x, 131, pw, stride, pad, None, mult, 3, 0, 255)
    expect = q.conv2d_u8s8_requant_naive(x, 131, w, w_zp, stride, pad, None, mult, 3, 0, 255)
    np.testing.assert_array_equal(got, expect)


# --- weight-only ----------------------------------------------------------------------------------


def test_f16_rounding_matches_numpy_and_counts_overflow():
    r = rng(15)
    edge = [65504, 65519.99, 65520, 7e4, -7e4, 6e-8, 2.98e-8, 1e-9, 6.1e-5, 0.0, -0.0]
    w = np.concatenate([r.standard_normal(200) * 100, edge]).astype(np.float32)
    with np.errstate(over="ignore"):
        expect = w.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(q.f32_to_f16_bits(w), expect)
    pw = q.pack_weight_f16(w.reshape(-1, 1))
    assert pw.n_overflow == 3 and pw.format == "float16"


@pytest.mark.parametrize(
    "M,K,N", [(1, 1, 1), (1, 64, 40), (3, 33, 17), (4, 16, 16), (5, 67, 48), (17, 20, 33)]
)
@pytest.mark.parametrize("fmt", ["f16", "bf16", "int4"])
def test_weight_only_gemm_matches_naive(isa, fmt, M, K, N):
    r = rng(M, K, N, len(fmt))
    x = r.standard_normal((M, K)).astype(np.float32)
    bias = r.standard_normal(N).astype(np.float32)
    if fmt == "int4":
        g = 8 if K > 8 else K
        wq = r.integers(-8, 8, (K, N)).astype(np.int8)
        scales = r.uniform(0.01, 0.1, (-(-K // g), N)).astype(np.float32)
        got = q.gemm_f32_wint4(x, q.pack_weight_int4(wq, scales, g), bias)
        expect = q.gemm_f32_wint4_naive(x, wq, scales, g, bias)
        wdec = wq * np.repeat(scales, g, axis=0)[:K]
    else:
        w = r.standard_normal((K, N)).astype(np.float32)
        pack = q.pack_weight_f16 if fmt == "f16" else q.pack_weight_bf16
        kernel = q.gemm_f32_wf16 if fmt == "f16" else q.gemm_f32_wbf16
        naive = q.gemm_f32_wf16_naive if fmt == "f16" else q.gemm_f32_wbf16_naive
        got, expect = kernel(x, pack(w), bias), naive(x, w, bias)
        wdec = w.astype(np.float16) if fmt == "f16" else w  # bf16 only via the naive twin
    # fp32 accumulation vs a double-accumulated twin: error bounded by K * eps * Σ|x||w|.
    tol = (np.abs(x) @ np.abs(wdec).astype(np.float32)) * K * 2e-7 + 1e-6
    assert (np.abs(got - expect) <= tol).all()


@pytest.mark.parametrize("fmt", ["f16", "bf16", "int4"])
@pytest.mark.parametrize("M,K,N", [(8, 300, 40), (13, 513, 17), (200, 257, 33), (385, 70, 16)])
def test_weight_only_blocked_rows_are_bit_identical_to_row_by_row(isa, fmt, M, K, N):
    """Many rows take the blocked driver (a decoded 256-deep tile reused by 192 rows), one row
    the panel kernel: every output gets the same FMA sequence, so the same bits."""
    r = rng(M, K, N, 31)
    x = r.standard_normal((M, K)).astype(np.float32)
    bias = r.standard_normal(N).astype(np.float32)
    if fmt == "int4":
        wq = r.integers(-8, 8, (K, N)).astype(np.int8)
        # groups of 96 straddle the 256-deep k-blocks
        scales = r.uniform(0.01, 0.1, (-(-K // 96), N)).astype(np.float32)
        kernel, packed = q.gemm_f32_wint4, q.pack_weight_int4(wq, scales, 96)
    else:
        w = r.standard_normal((K, N)).astype(np.float32)
        kernel = q.gemm_f32_wf16 if fmt == "f16" else q.gemm_f32_wbf16
        packed = (q.pack_weight_f16 if fmt == "f16" else q.pack_weight_bf16)(w)
    got = kernel(x, packed, bias)
    rows = np.concatenate([kernel(x[m:m + 1], packed, bias) for m in range(M)])
    np.testing.assert_array_equal(got, rows)


# --- bad input -----------------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors(monkeypatch):
    pw = q.pack_weight_s8(np.ones((4, 3), np.int8))
    a = np.ones((2, 4), np.uint8)
    with pytest.raises(ValueError, match="^a: expected dtype uint8"):
        q.gemm_u8s8_s32(a.astype(np.int32), 0, pw)
    with pytest.raises(ValueError, match="^a: has K = 5"):
        q.gemm_u8s8_s32(np.ones((2, 5), np.uint8), 0, pw)
    with pytest.raises(ValueError, match="a_zero_point"):
        q.gemm_u8s8_s32(a, 300, pw)
    with pytest.raises(ValueError, match="out_dtype"):
        q.gemm_u8s8_requant(a, 0, pw, None, np.ones(1, np.float32), 0, 0, 255, "uint4")
    with pytest.raises(ValueError, match="multiplier"):
        q.gemm_u8s8_requant(a, 0, pw, None, np.ones(2, np.float32), 0, 0, 255)
    with pytest.raises(ValueError, match="scale"):
        q.quantize_f32(np.ones(3, np.float32), np.zeros(1, np.float32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="w_q.*int4"):
        q.pack_weight_int4(np.full((2, 2), 9, np.int8), np.ones((1, 2), np.float32), 2)
    with pytest.raises(ValueError, match="packed"):
        f16 = q.pack_weight_f16(np.ones((2, 2), np.float32))
        q.gemm_f32_wbf16(np.ones((1, 2), np.float32), f16)
    monkeypatch.setenv("NEEDLE_QC_ISA", "sse9")
    with pytest.raises(ValueError, match="NEEDLE_QC_ISA"):
        q.gemm_u8s8_s32(a, 0, pw)
