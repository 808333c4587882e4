"""The direct NHWC int8 conv (conv2d_direct_u8s8_*) against its naive twin, on every ISA path."""

import numpy as np
import pytest

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

ISAS = q.kernel_info()["available"]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", request.param)
    return request.param


def rng(*salt):
    return np.random.default_rng([4321, *[hash(str(s)) % 2**31 for s in salt]])


# (N, H, W, Cin, KH, KW, Cout, stride, padding): Cout over every remainder of the 16-column
# panel, Cin 1..5 (runs of 3..15 bytes padded to 4) and wider, odd H/W, stride 1/2, pad 0/1.
GEOMS = [(2, 5, 7, 1, 3, 3, cout, 1, 1) for cout in range(1, 18)] + [
    (1, 7, 5, cin, 3, 3, 16, s, p) for cin in (2, 3, 4, 5) for s in (1, 2) for p in (0, 1)] + [
    (3, 9, 11, 16, 3, 3, 32, 2, 1),
    (2, 6, 6, 32, 3, 3, 33, 1, 1),
    (1, 4, 4, 64, 3, 3, 128, 2, 1),
    (2, 1, 1, 128, 3, 3, 31, 1, 1),
    (2, 11, 13, 3, 7, 7, 16, 4, 3),
    (1, 9, 8, 4, 5, 3, 6, (2, 1), (2, 0)),
    (2, 6, 7, 8, 1, 1, 20, 1, 0),  # in place: no padding, whole-quad runs
]


def conv_case(geom, x_hi=256):
    n, h, w_, cin, kh, kw, cout, stride, pad = geom
    r = rng(geom, x_hi)
    x = r.integers(0, x_hi, (n, h, w_, cin)).astype(np.uint8)
    w = r.integers(-128, 128, (kh, kw, cin, cout)).astype(np.int8)
    return x, w, stride, pad, r


def check(x, zx, w, w_zp, stride, pad, r, **fast):
    pd = q.pack_conv_direct_s8(w, w_zp)
    want = q.conv2d_u8s8_s32_naive(x, zx, w, w_zp, stride, pad)
    np.testing.assert_array_equal(q.conv2d_direct_u8s8_s32(x, zx, pd, stride, pad, **fast), want)
    cout = w.shape[3]
    bias = r.integers(-5000, 5000, cout).astype(np.int32)
    mult = r.uniform(0.2, 1.0, cout).astype(np.float32) / (w[..., 0].size * 64)
    for y_zp, qmin, qmax, dtype in ((120, 120, 255, "uint8"), (3, 0, 127, "uint8"),
                                    (-5, -128, 127, "int8")):
        got = q.conv2d_direct_u8s8_requant(x, zx, pd, stride, pad, bias, mult, y_zp, qmin, qmax,
                                           dtype, **fast)
        expect = q.conv2d_u8s8_requant_naive(x, zx, w, w_zp, stride, pad, bias, mult, y_zp,
                                             qmin, qmax, dtype)
        np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("geom", GEOMS, ids=[str(i) for i in range(len(GEOMS))])
def test_direct_conv_matches_naive(isa, geom):
    x, w, stride, pad, r = conv_case(geom)
    cout = w.shape[3]
    check(x, 77, w, np.zeros(cout, np.int32), stride, pad, r)
    check(x, 201, w, r.integers(-3, 4, cout).astype(np.int32), stride, pad, r)  # z_w: exact


@pytest.mark.parametrize("geom", GEOMS[::3], ids=[str(i) for i in range(len(GEOMS[::3]))])
def test_fast_path_equals_exact_where_proven(isa, geom):
    x, w, stride, pad, r = conv_case(geom, x_hi=128)  # 7-bit input: 127 x 256 < 32768
    w_zp = np.zeros(w.shape[3], np.int32)
    assert 127 * q.pack_conv_direct_s8(w).max_pair_abs <= 32767
    check(x, 64, w, w_zp, stride, pad, r, allow_fast=True, a_max=127)


@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("xv,wv,zx", [(0, -128, 255), (255, -128, 0), (255, 127, 128),
                                      (0, 127, 0), (255, -128, 128)])
def test_extreme_values(isa, monkeypatch, threads, xv, wv, zx):
    monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
    geom = (3, 9, 7, 5, 3, 3, 19, 1, 1)
    _, _, stride, pad, r = conv_case(geom)
    x = np.full((3, 9, 7, 5), xv, np.uint8)
    w = np.full((3, 3, 5, 19), wv, np.int8)
    for w_zp in (np.zeros(19, np.int32), np.full(19, 127, np.int32), np.full(19, -128, np.int32)):
        check(x, zx, w, w_zp, stride, pad, r)
    if xv <= 127 and zx <= 127:  # |w| <= 128 per tap: 127 * 256 <= 32767, proven
        check(x, zx, w, np.zeros(19, np.int32), stride, pad, r, allow_fast=True, a_max=127)


def test_fast_claims_are_checked():
    x, w, stride, pad, _ = conv_case((1, 5, 5, 3, 3, 3, 16, 1, 1), x_hi=128)
    pd = q.pack_conv_direct_s8(w)
    with pytest.raises(ValueError, match="a_max"):  # x or its padding exceeds the claim
        q.conv2d_direct_u8s8_s32(x, 200, pd, stride, pad, allow_fast=True, a_max=127)
    with pytest.raises(ValueError, match="saturate"):
        q.conv2d_direct_u8s8_s32(x, 0, pd, stride, pad, allow_fast=True, a_max=255)
    with pytest.raises(ValueError, match="zero point"):
        q.conv2d_direct_u8s8_s32(x, 0, q.pack_conv_direct_s8(w, np.ones(16, np.int32)), stride,
                                 pad, allow_fast=True, a_max=127)
    with pytest.raises(ValueError, match="channels"):
        q.conv2d_direct_u8s8_s32(x[..., :2], 0, pd, stride, pad)


def test_packed_layout_facts():
    w = np.zeros((3, 3, 1, 20), np.int8)
    w[0, 0, 0, 0], w[0, 1, 0, 0] = 127, -128
    pd = q.pack_conv_direct_s8(w)
    assert pd.kernel_shape == (3, 3, 1, 20)
    assert pd.depth == 3 * 4  # each 3-byte kernel-row run padded to 4
    assert pd.max_pair_abs == 255  # taps (0, 0) and (0, 1) are one vpmaddubsw pair
    assert not pd.has_zero_point and pd.nbytes > 0


@pytest.mark.parametrize("cin", list(range(1, 71)))
def test_weight_zero_point_patch_sums_on_every_run_tail(isa, cin):
    """z_w is applied as - z_w * Σ x over each pixel's patch: runs of 1..70 bytes hit every tail
    of the AVX2 sum's 32-byte steps, with a z_x border and in place (no padding, whole dwords);
    Cout 16 (the fused requantization) and 5 (the output stage's)."""
    r = rng("patch", cin)
    for (h, w_, kh, kw, stride, pad), cout in (((5, 4, 2, 1, 1, (1, 0)), 16),
                                              ((3, 4, 3, 2, 2, 1), 5),
                                              ((3, 2, 2, 1, 1, 0), 16)):
        if pad == 0 and cin % 4:
            continue  # in place needs whole-dword runs; else the z_x copy is taken anyway
        x = r.integers(0, 256, (2, h, w_, cin)).astype(np.uint8)
        w = r.integers(-128, 128, (kh, kw, cin, cout)).astype(np.int8)
        w_zp = r.integers(-128, 128, cout).astype(np.int32)
        check(x, int(r.integers(0, 256)), w, w_zp, stride, pad, r)


@pytest.mark.parametrize("geom", GEOMS, ids=[str(i) for i in range(len(GEOMS))])
def test_weights_are_held_once_as_int8_panels(geom):
    """nbytes: the s8 panels [KH * R4, Cout padded to 16] and 16 bytes of column facts, with a
    weight zero point too (no widened copy); the im2col GEMM's bytes where the runs need no
    padding beyond the depth's."""
    _, _, _, cin, kh, kw, cout, _, _ = geom
    w = rng("bytes", geom).integers(-128, 128, (kh, kw, cin, cout)).astype(np.int8)
    panels, depth = -(-cout // 16), kh * (-(-kw * cin // 4) * 4)
    for w_zp in (None, np.arange(cout, dtype=np.int32) % 7 - 3):
        pd = q.pack_conv_direct_s8(w, w_zp)
        assert pd.depth == depth
        assert pd.nbytes == panels * 16 * depth + 16 * cout
        if depth == -(-kh * kw * cin // 4) * 4:
            assert pd.nbytes == q.pack_conv_weight_s8(w, w_zp).nbytes
