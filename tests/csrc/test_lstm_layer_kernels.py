"""The whole-layer LSTM kernels (``lstm_layer_f32``, ``qlstm_layer``) vs T chained calls of the
step kernels' naive twins, bit for bit: every remainder of the 8-lane width, T = 0..5, both
ISAs, static per-step and dynamic quantization, extreme values, and named argument errors."""

import numpy as np
import pytest

k = pytest.importorskip("needle_qc._quant_cpu")
ISAS = ("scalar", "avx2")
SHAPES = [(t, 1 + h % 4, 1 + (3 * h) % 11, h) for h in range(1, 18) for t in (1 + h % 5,)] + \
    [(0, 2, 3, 4), (5, 16, 32, 32)]
F = np.float32


def _case(rng, t, n, i, h, scale=1.0):
    return (rng.normal(0, scale, (t, n, i)).astype(F), rng.normal(0, scale, (n, h)).astype(F),
            rng.normal(0, scale, (n, h)).astype(F))


def _chain(cell, xs, h, c, args, steps_qp=None):
    """``(hs, h_T, c_T)`` of ``cell(x_t, h, c, *args, *qparams of step t)`` called T times."""
    hs = []
    for t, x in enumerate(xs):
        h, c = cell(x, h, c, *args, *(steps_qp[t] if steps_qp else ()))
        hs.append(h)
    return np.stack(hs) if hs else np.zeros((0, *h.shape), F), h, c


def _same(a, b):
    return all(np.array_equal(p, q, equal_nan=True) for p, q in zip(a, b))


@pytest.mark.parametrize("isa", ISAS)
def test_f32_layer_equals_chained_naive_cells(isa, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(1)
    for t, n, i, h in SHAPES:
        xs, h0, c0 = _case(rng, t, n, i, h)
        wi, wh = rng.normal(0, 0.5, (i, 4 * h)).astype(F), rng.normal(0, 0.5, (h, 4 * h)).astype(F)
        for b in ((rng.normal(size=4 * h).astype(F), rng.normal(size=4 * h).astype(F)),
                  (None, None)):
            for order in ("ifgo", "gofi"):
                got = k.lstm_layer_f32(xs, h0, c0, wi, wh, *b, order)
                want = _chain(k.lstm_cell_f32_naive, xs, h0, c0, (wi, wh, *b, order))
                assert _same(got, want), (t, n, i, h, order)
                assert got[0].shape == (t, n, h)


def _qweights(rng, i, h):
    wi = rng.integers(-128, 128, (i, 4 * h)).astype(np.int8)
    wh = rng.integers(-127, 128, (h, 4 * h)).astype(np.int8)
    return wi, rng.uniform(1e-3, 1e-2, 4 * h).astype(F), wh, np.array([0.004], F), \
        [rng.normal(0, 1, 4 * h).astype(F) for _ in range(2)]


def _static_steps(rng, t, signed):
    lo, hi = (-128, 127) if signed else (0, 255)
    return [((float(rng.uniform(0.01, 0.05)), int(rng.integers(lo, hi + 1)), lo, hi),
             (float(rng.uniform(0.005, 0.02)), int(rng.integers(lo, hi + 1)), lo, hi))
            for _ in range(t)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("mode", ["dynamic", "static u8", "static s8"])
def test_qlstm_layer_equals_chained_naive_cells(isa, mode, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(4)
    for t, n, i, h in SHAPES:
        xs, h0, c0 = _case(rng, t, n, i, h)
        wi, si, wh, sh, b = _qweights(rng, i, h)
        steps = None if mode == "dynamic" else _static_steps(rng, t, mode.endswith("s8"))
        qps = (None, None) if steps is None else ([s[0] for s in steps], [s[1] for s in steps])
        got = k.qlstm_layer(xs, h0, c0, k.pack_lstm_s8(wi), si, k.pack_lstm_s8(wh), sh, *b,
                            "ifgo", *qps)
        want = _chain(k.qlstm_cell_naive, xs, h0, c0, (wi, si, wh, sh, *b, "ifgo"),
                      steps or [(None, None)] * t)
        assert _same(got, want), (t, n, i, h)


@pytest.mark.parametrize("isa", ISAS)
def test_extreme_values_and_nan(isa, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(5)
    xs, h0, c0 = _case(rng, 4, 9, 33, 17, scale=1e4)
    xs[1, 0, :3] = [np.inf, -np.inf, 3e38]
    wi = rng.normal(0, 0.5, (33, 68)).astype(F)
    wh = rng.normal(0, 0.5, (17, 68)).astype(F)
    got = k.lstm_layer_f32(xs, h0, c0, wi, wh)
    assert _same(got, _chain(k.lstm_cell_f32_naive, xs, h0, c0, (wi, wh)))
    qi, si, qh, sh, b = _qweights(rng, 33, 17)
    qi[:], qh[:] = 127, -127
    xs = np.nan_to_num(xs, posinf=1e5, neginf=-1e5)
    packed = k.pack_lstm_s8(qi), si, k.pack_lstm_s8(qh), sh
    got = k.qlstm_layer(xs, h0, c0, *packed, *b)
    assert _same(got, _chain(k.qlstm_cell_naive, xs, h0, c0, (qi, si, qh, sh, *b)))
    xs[3, 2, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        k.qlstm_layer(xs, h0, c0, *packed, *b)


def test_bad_arguments_named():
    rng = np.random.default_rng(6)
    xs, h0, c0 = _case(rng, 3, 2, 3, 4)
    wi, wh = np.zeros((3, 16), F), np.zeros((4, 16), F)
    with pytest.raises(ValueError, match="xs"):
        k.lstm_layer_f32(xs[0], h0, c0, wi, wh)
    with pytest.raises(ValueError, match="xs/h0/c0"):
        k.lstm_layer_f32(xs, h0[:1], c0, wi, wh)
    with pytest.raises(ValueError, match="gate_order"):
        k.lstm_layer_f32(xs, h0, c0, wi, wh, None, None, "iffo")
    qi, si, qh, sh, b = _qweights(rng, 3, 4)
    packed = k.pack_lstm_s8(qi), si, k.pack_lstm_s8(qh), sh
    two = [(0.1, 0, 0, 255)] * 2
    with pytest.raises(ValueError, match="one .* per step"):
        k.qlstm_layer(xs, h0, c0, *packed, *b, "ifgo", two, two)
