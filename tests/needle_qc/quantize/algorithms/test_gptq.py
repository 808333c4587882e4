"""GPTQ against a closed-form sequential-rounding reference, RTN, and its calibration helpers."""
import numpy as np
import pytest

from needle_qc.quantize import quantize_weight
from needle_qc.quantize.algorithms import (
    HessianAccumulator,
    WeightGrid,
    column_groups,
    gptq_quantize_matrix,
    gptq_quantize_weight,
    hessian_error,
    unfold_nchw,
)
from needle_qc.quantize.algorithms.gptq import CLIP_SHRINKS, _choose_qparams_range
from needle_qc.quantize.qparams import choose_qparams


def correlated_inputs(rng, n, d, rank=None):
    """Rows with strongly correlated features (a low-rank mix plus a little noise)."""
    mix = rng.standard_normal((rank or d, d))
    return rng.standard_normal((n, rank or d)) @ mix + 0.1 * rng.standard_normal((n, d))


def damped(H, percdamp):
    H = H.copy()
    H[np.diag_indices_from(H)] += percdamp * np.mean(np.diag(H))
    return H


def sequential_rounding(W, H, grid, order, groups=None):
    """Optimal sequential rounding, written from the objective, no Cholesky, no lazy batches.

    At each step the not-yet-quantized weights F are re-fitted in closed form given the fixed
    prefix P: minimizing (w - v) H (w - v)^T over v_F gives
    v_F = w_F + (w_P - q_P) H_PF H_FF^-1; the next column in ``order`` is then rounded. Group
    scales are taken from v over the whole group when its first column is reached.
    """
    W = W.astype(np.float64)
    n_out, n_in = W.shape
    qdeq = np.zeros_like(W)
    q = np.zeros(W.shape, np.int64)
    scale, zp = {}, {}
    if grid.granularity == "per_channel":
        w32 = W.astype(np.float32)
        fixed = grid.qparams(w32.min(1, initial=0), w32.max(1, initial=0))
    done = []
    for col in order:
        F = [c for c in order if c not in done]
        v = W[:, F].copy()
        if done:
            v += (W[:, done] - qdeq[:, done]) @ H[np.ix_(done, F)] @ np.linalg.inv(H[np.ix_(F, F)])
        cur = dict(zip(F, v.T))
        if groups is None:
            s, z = fixed
        else:
            g = groups[col]
            if g not in scale:
                members = np.array([cur[c] for c in np.flatnonzero(groups == g)]).T
                m32 = members.astype(np.float32)
                scale[g], zp[g] = grid.qparams(m32.min(1, initial=0), m32.max(1, initial=0))
            s, z = scale[g], zp[g]
        q[:, col] = grid.quantize(cur[col], s, z)
        qdeq[:, col] = grid.dequantize(q[:, col], s, z)
        done.append(col)
    return q


def test_one_row_layer_equals_least_squares_sequential_rounding():
    # 1 output: GPTQ's OBS updates must equal re-fitting the remaining weights by least squares
    # on the calibration inputs themselves (no Hessian algebra at all), then rounding the next one.
    rng = np.random.default_rng(0)
    X = correlated_inputs(rng, 400, 7)
    w = rng.standard_normal((1, 7))
    grid = WeightGrid("int4", True, "per_channel")
    res = gptq_quantize_matrix(w, 2 * X.T @ X / len(X), grid, percdamp=0.0, blocksize=3)
    w32 = w.astype(np.float32)
    s, z = choose_qparams(w32.min(initial=0), w32.max(initial=0), "int4", True, True)
    v, q = w[0].copy(), np.zeros(7, np.int64)
    for i in range(7):
        q[i] = grid.quantize(v[i], s, np.int64(z))
        fixed = (w[0, :i + 1] - grid.dequantize(q[:i + 1], s, np.int64(z)))  # w_P - q_P
        if i < 6:
            # v_F = argmin || X_P (w_P - q_P) + X_F (w_F - v_F) ||: one least-squares solve
            delta = np.linalg.lstsq(X[:, i + 1:], X[:, :i + 1] @ fixed, rcond=None)[0]
            v[i + 1:] = w[0, i + 1:] + delta
    np.testing.assert_array_equal(res.q[0], q)
    assert res.q[0].tolist() != grid.quantize(w[0], s, np.int64(z)).tolist()  # not plain RTN


@pytest.mark.parametrize("gran, act_order", [("per_channel", False), ("per_channel", True),
                                             ("per_group", False), ("per_group", True)])
def test_matches_closed_form_reference_any_blocksize(gran, act_order):
    # lazy batches (several block sizes, groups straddling blocks) and act-order give the same
    # integers as the unblocked closed-form recursion
    rng = np.random.default_rng(1)
    n_in = 12
    X = correlated_inputs(rng, 300, n_in, rank=6)
    X[:, 3] *= 4.0  # uneven diag(H) so act-order really permutes
    W = rng.standard_normal((5, n_in))
    H = 2 * X.T @ X / len(X)
    grid = WeightGrid("int3", True, gran, group_size=4)
    seg = 6 if gran == "per_group" else None
    groups = column_groups(n_in, 4, seg) if gran == "per_group" else None
    Hd = damped(H, 0.01)
    order = list(np.argsort(-np.diag(H), kind="stable")) if act_order else list(range(n_in))
    ref = sequential_rounding(W, Hd, grid, order, groups)
    for bs in (1, 5, 128):
        res = gptq_quantize_matrix(W, H, grid, segment=seg, blocksize=bs, act_order=act_order)
        np.testing.assert_array_equal(res.q, ref)
        assert res.perm.tolist() == [int(i) for i in order]


def test_group_ids_follow_quantize_weight_blocks():
    # linear: runs of g along K; conv unfolded (kh, kw, c): runs of g along C_in per tap
    assert column_groups(10, 4).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert column_groups(10, 4, 5).tolist() == [0, 0, 0, 0, 1, 2, 2, 2, 2, 3]


def test_beats_rtn_on_correlated_inputs():
    # the layer objective tr((W - Wq) H (W - Wq)^T): never worse than RTN, clearly better on average
    ratios = []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        X = correlated_inputs(rng, 512, 48, rank=16)
        w = rng.standard_normal((48, 24)).astype(np.float32)  # Needle [K, N]
        acc = HessianAccumulator()
        for part in np.array_split(X, 3):
            acc.add(part)
        H = acc.hessian
        for dtype, gran, g in (("int4", "per_channel", 32), ("int3", "per_group", 16)):
            rtn = gptq_quantize_weight(w, np.diag(np.diag(H)), dtype, gran, g)  # diagonal H = RTN
            gq = gptq_quantize_weight(w, acc, dtype, gran, g, act_order=bool(seed % 2))
            e_rtn = hessian_error(w.T, rtn.dequantize().T, H)
            e_gptq = hessian_error(w.T, gq.dequantize().T, H)
            assert e_gptq <= e_rtn
            ratios.append(e_gptq / e_rtn)
    assert np.mean(ratios) < 0.7


LAYOUTS = [((40, 6), 0), ((3, 3, 10, 4), 2)]


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int4", "uint4"])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("gran", ["per_tensor", "per_channel", "per_group"])
def test_diagonal_hessian_is_rtn_bit_for_bit(dtype, symmetric, gran):
    # a diagonal H propagates nothing (U is diagonal): same q, scales, zero points, dtypes, axes
    # as quantize_weight, for linear and conv layouts, with and without act-order
    rng = np.random.default_rng(2)
    for shape, red in LAYOUTS:
        w = rng.standard_normal(shape).astype(np.float32)
        w[..., 1] = 0.0  # a degenerate output channel
        d = int(np.prod(shape[:-1]))
        H = np.diag(rng.uniform(0.1, 3.0, d))
        rtn = quantize_weight(w, dtype, gran, axis=red if gran == "per_group" else None,
                              group_size=4, symmetric=symmetric)
        for act_order in (False, True):
            got = gptq_quantize_weight(w, H, dtype, gran, 4, symmetric, act_order=act_order)
            for f in ("q", "scale", "zp"):
                a, b = getattr(got, f), getattr(rtn, f)
                assert a.dtype == b.dtype and a.shape == b.shape, f
                np.testing.assert_array_equal(a, b)
            assert (got.axis, got.group_size, got.granularity) == \
                (rtn.axis, rtn.group_size, rtn.granularity)
            np.testing.assert_array_equal(got.dequantize(), rtn.dequantize())


def test_infinite_damping_is_rtn():
    rng = np.random.default_rng(3)
    X = correlated_inputs(rng, 200, 32, rank=8)
    w = rng.standard_normal((32, 8)).astype(np.float32)
    H = 2 * X.T @ X / len(X)
    for gran in ("per_channel", "per_group"):
        rtn = quantize_weight(w, "int4", gran, axis=0 if gran == "per_group" else None,
                              group_size=8)
        got = gptq_quantize_weight(w, H, "int4", gran, 8, percdamp=1e9)
        np.testing.assert_array_equal(got.q, rtn.q)
        np.testing.assert_array_equal(got.scale, rtn.scale)


def test_act_order_is_gptq_on_the_permuted_problem():
    # per channel, act-order = plain GPTQ on columns sorted by decreasing H_ii, unpermuted
    rng = np.random.default_rng(4)
    X = correlated_inputs(rng, 300, 16, rank=8) * rng.uniform(0.2, 3.0, 16)
    W = rng.standard_normal((6, 16))
    H = 2 * X.T @ X / len(X)
    grid = WeightGrid("int4", True, "per_channel")
    ao = gptq_quantize_matrix(W, H, grid, act_order=True)
    p = np.argsort(-np.diag(H), kind="stable")
    plain = gptq_quantize_matrix(W[:, p], H[np.ix_(p, p)], grid)
    np.testing.assert_array_equal(ao.perm, p)
    np.testing.assert_array_equal(ao.q[:, p], plain.q)


def test_group_scales_come_from_updated_weights():
    # per group: the stored scales are those of the error-updated group (not of the original W),
    # the integers stay on the grid and dequantize() reproduces (q - z) * s group by group
    rng = np.random.default_rng(5)
    X = correlated_inputs(rng, 300, 16, rank=4)
    W = rng.standard_normal((4, 16))
    grid = WeightGrid("uint4", False, "per_group", 8)
    res = gptq_quantize_matrix(W, 2 * X.T @ X / len(X), grid)
    orig = W.astype(np.float32)[:, 8:]
    s_orig, _ = grid.qparams(orig.min(1, initial=0), orig.max(1, initial=0))
    assert not np.array_equal(res.scale[:, 1], s_orig)
    assert res.q.min() >= 0 and res.q.max() <= 15
    deq = (res.q - np.repeat(res.zp, 8, axis=1)).astype(np.float32) * np.repeat(res.scale, 8, 1)
    np.testing.assert_array_equal(res.dequantize(), deq)


def test_dead_inputs_are_rounded_to_nearest():
    rng = np.random.default_rng(6)
    X = correlated_inputs(rng, 300, 20, rank=10)
    X[:, [2, 11]] = 0.0  # inputs never active during calibration: H row/col = 0
    w = rng.standard_normal((20, 5)).astype(np.float32)
    acc = HessianAccumulator()
    acc.add(X)
    got = gptq_quantize_weight(w, acc, "int4", "per_channel", percdamp=0.0)
    rtn = quantize_weight(w, "int4", "per_channel")
    assert np.all(np.isfinite(got.dequantize()))
    np.testing.assert_array_equal(got.q[[2, 11]], rtn.q[[2, 11]])  # weights kept, RTN'd
    H = acc.hessian
    assert hessian_error(w.T, got.dequantize().T, H) < hessian_error(w.T, rtn.dequantize().T, H)


def test_extra_low_bit_grids():
    # int3/int2 reuse choose_qparams' formulas: same scales as choose_qparams on the 4-bit
    # ranges, and the narrow symmetric ranges [-3, 3] / [-1, 1]
    rng = np.random.default_rng(7)
    lo, hi = -rng.uniform(0, 2, 9), rng.uniform(0, 2, 9)
    lo[0] = hi[0] = 0.0
    ranges = {("int4", True): (-7, 7), ("int4", False): (-8, 7),
              ("uint4", True): (1, 15), ("uint4", False): (0, 15)}
    for (name, sym), (a, b) in ranges.items():
        ref = choose_qparams(lo, hi, name, sym, sym)
        got = _choose_qparams_range(lo, hi, a, b, sym)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1].astype(np.int64))
    assert WeightGrid("int3").qmin_qmax == (-3, 3) and WeightGrid("int2").qmin_qmax == (-1, 1)
    assert WeightGrid("uint3", False).qmin_qmax == (0, 7)
    w = rng.standard_normal((64, 4)).astype(np.float32)
    q = gptq_quantize_weight(w, np.eye(64), "int2", "per_group", 16).q
    assert set(np.unique(q)) <= {-1, 0, 1}


def naive_conv_nchw(x, w, stride, padding):
    """Direct loops: x NCHW, w [kH, kW, C_in, C_out] -> NHWC output flattened to rows."""
    n, c, h, wd = x.shape
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    out = np.zeros((n, oh, ow, w.shape[3]))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                patch = xp[b, :, i * stride:i * stride + k, j * stride:j * stride + k]
                out[b, i, j] = np.einsum("cab,abco->o", patch, w)
    return out.reshape(-1, w.shape[3])


def test_unfold_and_conv_hessian():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((3, 3, 3, 4))
    for stride, padding in ((1, 0), (2, 1)):
        cols = unfold_nchw(x, 3, stride, padding)
        np.testing.assert_allclose(cols @ w.reshape(-1, 4), naive_conv_nchw(x, w, stride, padding),
                                   rtol=1e-12, atol=1e-12)
        acc = HessianAccumulator(kernel_size=3, stride=stride, padding=padding)
        acc.add(x[:1])
        acc.add(x[1:])
        np.testing.assert_allclose(acc.hessian, 2 * cols.T @ cols / len(cols), rtol=1e-12)
        np.testing.assert_allclose(acc.mean, cols.mean(axis=0), rtol=1e-12, atol=1e-15)


def test_conv_gptq_beats_rtn():
    rng = np.random.default_rng(9)
    base = rng.standard_normal((6, 4, 9, 9))
    x = base + 0.8 * np.roll(base, 1, axis=3)  # spatially correlated inputs
    w = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    acc = HessianAccumulator(kernel_size=3, padding=1)
    acc.add(x)
    got = gptq_quantize_weight(w, acc, "int4", "per_group", 2)
    rtn = quantize_weight(w, "int4", "per_group", axis=2, group_size=2)
    assert got.scale.shape == rtn.scale.shape == (3, 3, 2, 5)
    cols = unfold_nchw(x, 3, 1, 1)
    ref = cols @ w.reshape(-1, 5)
    err = [np.mean((cols @ q.dequantize().reshape(-1, 5) - ref) ** 2) for q in (got, rtn)]
    assert err[0] < 0.8 * err[1]


def test_errors():
    grid = WeightGrid("int4")
    with pytest.raises(ValueError, match="H shape"):
        gptq_quantize_matrix(np.ones((2, 3)), np.eye(4), grid)
    with pytest.raises(ValueError, match="not positive definite"):
        gptq_quantize_matrix(np.ones((2, 2)), np.array([[1.0, 2.0], [2.0, 1.0]]), grid,
                             percdamp=0.0)
    for bad in ((), (0.0,), (1.2,)):
        with pytest.raises(ValueError, match="shrink="):
            gptq_quantize_matrix(np.ones((2, 2)), np.eye(2), grid, shrink=bad)
    with pytest.raises(ValueError, match="dtype="):
        WeightGrid("int5")
    with pytest.raises(ValueError, match="no calibration inputs"):
        HessianAccumulator().hessian  # noqa: B018


# ----------------------------------------------------------------------------- clipping search


def _row_objective(W, W_q, H):
    D = np.asarray(W, np.float64) - np.asarray(W_q, np.float64)
    return np.einsum("ij,jk,ik->i", D, H, D)


@pytest.mark.parametrize("gran, act_order", [("per_channel", False), ("per_channel", True),
                                             ("per_group", False), ("per_group", True)])
def test_clip_search_keeps_each_rows_best_run(gran, act_order):
    # with several range factors every output row is, integers and scales, the row of the
    # single-factor run with the lowest objective on the undamped H
    rng = np.random.default_rng(11)
    X = correlated_inputs(rng, 400, 12, rank=6) * rng.uniform(0.3, 2.0, 12)
    W = rng.standard_normal((9, 12))
    H = 2 * X.T @ X / len(X)
    grid = WeightGrid("int3", True, gran, group_size=4)
    seg = 6 if gran == "per_group" else None
    runs = [gptq_quantize_matrix(W, H, grid, segment=seg, act_order=act_order, shrink=(p,))
            for p in CLIP_SHRINKS]
    got = gptq_quantize_matrix(W, H, grid, segment=seg, act_order=act_order,
                               shrink=CLIP_SHRINKS)
    errs = np.stack([_row_objective(W, r.dequantize(), H) for r in runs])
    best = np.argmin(errs, axis=0)
    for row, k in enumerate(best):
        for f in ("q", "scale", "zp"):
            np.testing.assert_array_equal(getattr(got, f)[row], getattr(runs[k], f)[row])
    np.testing.assert_array_equal(_row_objective(W, got.dequantize(), H), errs.min(axis=0))
    assert len(set(best.tolist())) > 1  # rows pick different factors
    plain = gptq_quantize_matrix(W, H, grid, segment=seg, act_order=act_order)
    np.testing.assert_array_equal(plain.q, runs[0].q)  # shrink=(1.0,) is plain GPTQ


def test_shrunk_scales_cover_the_shrunk_range():
    # a diagonal H propagates nothing: shrink p is RTN on p times the range (clamped)
    rng = np.random.default_rng(12)
    W = rng.standard_normal((5, 16))
    H = np.diag(rng.uniform(0.5, 2.0, 16))
    for gran in ("per_channel", "per_group"):
        grid = WeightGrid("int4", True, gran, group_size=8)
        got = gptq_quantize_matrix(W, H, grid, shrink=(0.75,))
        w32 = W.astype(np.float32)
        blocks = [w32] if gran == "per_channel" else [w32[:, :8], w32[:, 8:]]
        for i, b in enumerate(blocks):
            p = np.float32(0.75)
            s, z = grid.qparams((p * b).min(1, initial=0), (p * b).max(1, initial=0))
            s_got = got.scale if gran == "per_channel" else got.scale[:, i]
            np.testing.assert_array_equal(s_got, s)
            cols = slice(None) if gran == "per_channel" else slice(8 * i, 8 * i + 8)
            np.testing.assert_array_equal(got.q[:, cols], grid.quantize(b, s[:, None],
                                                                        z[:, None]))


def test_per_tensor_clip_search_picks_one_run():
    rng = np.random.default_rng(13)
    X = correlated_inputs(rng, 300, 10, rank=5)
    W = rng.standard_normal((4, 10))
    W[1, 2] = 9.0
    H = 2 * X.T @ X / len(X)
    grid = WeightGrid("int4", True, "per_tensor")
    runs = [gptq_quantize_matrix(W, H, grid, shrink=(p,)) for p in CLIP_SHRINKS]
    got = gptq_quantize_matrix(W, H, grid, shrink=CLIP_SHRINKS)
    k = int(np.argmin([hessian_error(W, r.dequantize(), H) for r in runs]))
    assert got.scale.shape == () and k > 0
    np.testing.assert_array_equal(got.q, runs[k].q)
    np.testing.assert_array_equal(got.scale, runs[k].scale)


def test_clip_search_lowers_the_objective_on_correlated_inputs():
    ratios = []
    for seed in range(6):
        rng = np.random.default_rng(200 + seed)
        X = correlated_inputs(rng, 512, 32, rank=12)
        w = rng.standard_normal((32, 16)).astype(np.float32)
        acc = HessianAccumulator()
        acc.add(X)
        for dtype, gran in (("int4", "per_channel"), ("int3", "per_group")):
            plain = gptq_quantize_weight(w, acc, dtype, gran, 16)
            clip = gptq_quantize_weight(w, acc, dtype, gran, 16, shrink=CLIP_SHRINKS)
            e = [hessian_error(w.T, r.dequantize().T, acc.hessian) for r in (plain, clip)]
            assert e[1] <= e[0]
            ratios.append(e[1] / e[0])
    assert np.mean(ratios) < 0.95


def test_round_weight_searches_clipping_only_for_gptq():
    # QConfig.gptq_clip_search (default on) -> shrink=CLIP_SHRINKS; off -> plain GPTQ; RTN on the
    # int3 grid (identity Hessian) never searches
    from needle_qc.quantize import QConfig
    from needle_qc.quantize.layer_stats import InputMoments
    from needle_qc.quantize.rounding import round_weight

    rng = np.random.default_rng(14)
    X = correlated_inputs(rng, 300, 24, rank=8)
    w = rng.standard_normal((24, 6)).astype(np.float32)
    moments = InputMoments(len(X), X.sum(0), X.T @ X)
    cfg = QConfig(weight="int4", weight_granularity="per_channel", rounding="gptq")
    assert cfg.gptq_clip_search
    for c, shrink in ((cfg, CLIP_SHRINKS), (cfg.replace(gptq_clip_search=False), (1.0,))):
        got = round_weight(w, c, "per_channel", None, moments)
        want = gptq_quantize_weight(w, moments.hessian, "int4", "per_channel", shrink=shrink)
        np.testing.assert_array_equal(got.q, want.q)
        np.testing.assert_array_equal(got.scale, want.scale)
    rtn = QConfig(weight="int4", group_size=8, weight_bits=3)
    got = round_weight(w, rtn, "per_group", 0)
    want = gptq_quantize_weight(w, np.eye(24), "int3", "per_group", 8)
    np.testing.assert_array_equal(got.q, want.q)
    with pytest.raises(ValueError, match="gptq_clip_search"):
        QConfig(weight="int4", rounding="gptq", gptq_clip_search=1)
