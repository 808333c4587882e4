"""The fused LSTM step kernels: AVX2 and scalar paths vs their naive twins (every remainder of
the 8-lane width, batch 1..17, extreme values) and the int8 step vs the op table's numpy
evaluation, bit for bit."""

import numpy as np
import pytest

from needle_qc.opset import recurrent_eval as rv

k = pytest.importorskip("needle_qc._quant_cpu")
ISAS = ("scalar", "avx2")
SHAPES = [(n, i, h) for h in range(1, 18) for n, i in ((1 + h % 5, 1 + (3 * h) % 11),)] + \
    [(n, 5, 8) for n in range(1, 18)] + [(3, 32, 32), (16, 32, 32)]


def _case(rng, n, i, h, scale=1.0):
    f = np.float32
    return (rng.normal(0, scale, (n, i)).astype(f), rng.normal(0, scale, (n, h)).astype(f),
            rng.normal(0, scale, (n, h)).astype(f), rng.normal(0, 0.5, (i, 4 * h)).astype(f),
            rng.normal(0, 0.5, (h, 4 * h)).astype(f), rng.normal(0, 1, 4 * h).astype(f),
            rng.normal(0, 1, 4 * h).astype(f))


def _same(a, b):
    return all(np.array_equal(p, q, equal_nan=True) for p, q in zip(a, b))


@pytest.mark.parametrize("isa", ISAS)
def test_f32_matches_naive_every_remainder(isa, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(1)
    for n, i, h in SHAPES:
        x, hh, c, wi, wh, bi, bh = _case(rng, n, i, h)
        for biases in ((bi, bh), (None, None)):
            for order in ("ifgo", "gofi"):
                got = k.lstm_cell_f32(x, hh, c, wi, wh, *biases, order)
                assert _same(got, k.lstm_cell_f32_naive(x, hh, c, wi, wh, *biases, order)), \
                    (n, i, h, order)


@pytest.mark.parametrize("isa", ISAS)
def test_f32_extreme_values(isa, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(2)
    x, hh, c, wi, wh, bi, bh = _case(rng, 7, 9, 19, scale=1e4)
    x[0, :3] = [np.inf, -np.inf, 3e38]
    got = k.lstm_cell_f32(x, hh, c, wi, wh, bi, bh)
    assert _same(got, k.lstm_cell_f32_naive(x, hh, c, wi, wh, bi, bh))
    assert np.all(np.abs(got[0][1:]) <= 1) and np.all(np.isfinite(got[1][1:]))


def test_f32_close_to_float64_math():
    rng = np.random.default_rng(3)
    x, hh, c, wi, wh, bi, bh = _case(rng, 6, 10, 12)
    gates = ((x.astype(np.float64) @ wi + hh.astype(np.float64) @ wh) + bi) + bh
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, g, o = (gates[:, j * 12:(j + 1) * 12] for j in range(4))
    c_new = sig(f) * c + sig(i) * np.tanh(g)
    h_new, c_got = k.lstm_cell_f32(x, hh, c, wi, wh, bi, bh)
    assert np.abs(c_got - c_new).max() < 2e-6
    assert np.abs(h_new - sig(o) * np.tanh(c_new)).max() < 2e-6


def test_gate_functions_numpy_equal_kernel_lanes(monkeypatch):
    # x = z, W_ih = ones, h = 0, zero biases: every gate's pre-activation is z, so the cell
    # shows each lane's sigmoid/tanh; the numpy gate functions must give the same bits
    z = np.concatenate([np.linspace(-100, 100, 4001), [0.0, -0.0, 0.6249, 0.625, 87.5, -87.5]])
    z = z.astype(np.float32)[:, None]
    zeros, b = np.zeros_like(z), np.zeros(4, np.float32)
    w_ih, w_hh = np.ones((1, 4), np.float32), np.zeros((1, 4), np.float32)
    gates = (z * w_ih + np.float32(0)) + b
    want = rv.lstm_tail(gates, zeros)
    for isa in ISAS:
        monkeypatch.setenv("NEEDLE_QC_ISA", isa)
        assert _same(k.lstm_cell_f32(z, zeros, zeros, w_ih, w_hh, b, b), want)
    z = z.ravel().astype(np.float64)
    assert np.abs(rv.gate_tanh(z) - np.tanh(z)).max() < 1.2e-7
    assert np.abs(rv.gate_sigmoid(z) - 1 / (1 + np.exp(-z))).max() < 1.2e-7


def _qcase(rng, n, i, h):
    x, hh, c, *_ = _case(rng, n, i, h)
    wi = rng.integers(-127, 128, (i, 4 * h)).astype(np.int8)
    wh = rng.integers(-127, 128, (h, 4 * h)).astype(np.int8)
    si = rng.uniform(1e-3, 1e-2, 4 * h).astype(np.float32)
    sh = np.array([0.004], np.float32)  # per tensor
    b = [rng.normal(0, 1, 4 * h).astype(np.float32) for _ in range(2)]
    return x, hh, c, wi, si, wh, sh, b


QPARAMS = [(None, None), ((0.02, 128, 0, 255), (0.01, 100, 0, 255)),
           ((0.03, -5, -128, 127), (0.02, 0, -128, 127))]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("qp", QPARAMS)
def test_qlstm_matches_naive_and_reference(isa, qp, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(4)
    for n, i, h in SHAPES:
        x, hh, c, wi, si, wh, sh, b = _qcase(rng, n, i, h)
        got = k.qlstm_cell(x, hh, c, k.pack_lstm_s8(wi), si, k.pack_lstm_s8(wh), sh, *b,
                           "ifgo", *qp)
        assert _same(got, k.qlstm_cell_naive(x, hh, c, wi, si, wh, sh, *b, "ifgo", *qp))
        ref_qp = [None if q is None else (q[0], q[1], "int8" if q[2] < 0 else "uint8")
                  for q in qp]
        gates = rv.qlstm_gates(x, hh, wi, si, wh, sh, b, *ref_qp)
        assert _same(got, rv.lstm_tail(gates, c)), (n, i, h)


@pytest.mark.parametrize("isa", ISAS)
def test_qlstm_extreme_values(isa, monkeypatch):
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(5)
    x, hh, c, wi, si, wh, sh, b = _qcase(rng, 9, 33, 17)
    wi[:] = 127
    wh[:] = -127
    x *= 1e5
    for qp in QPARAMS[:2]:
        got = k.qlstm_cell(x, hh, c, k.pack_lstm_s8(wi), si, k.pack_lstm_s8(wh), sh, *b,
                           "ifgo", *qp)
        assert _same(got, k.qlstm_cell_naive(x, hh, c, wi, si, wh, sh, *b, "ifgo", *qp))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        k.qlstm_cell(x, hh, c, k.pack_lstm_s8(wi), si, k.pack_lstm_s8(wh), sh, *b)


@pytest.mark.parametrize("isa", ISAS)
def test_qlstm_weights_held_as_int8_full_range(isa, monkeypatch):
    # one byte per weight (k padded to even): the kernel widens them, -128 included
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(7)
    for n, i, h in ((3, 33, 17), (2, 7, 8), (1, 64, 40)):
        x, hh, c, wi, si, wh, sh, b = _qcase(rng, n, i, h)
        wi = rng.integers(-128, 128, wi.shape).astype(np.int8)
        wi[0], wh[-1] = -128, 127
        packed = k.pack_lstm_s8(wi)
        assert packed.dtype == np.int8 and packed.nbytes == (i + i % 2) * 4 * h
        for qp in QPARAMS:
            got = k.qlstm_cell(x, hh, c, packed, si, k.pack_lstm_s8(wh), sh, *b, "ifgo", *qp)
            assert _same(got, k.qlstm_cell_naive(x, hh, c, wi, si, wh, sh, *b, "ifgo", *qp))
    with pytest.raises(ValueError, match="pack_lstm_s8"):
        k.qlstm_cell(x, hh, c, packed.astype(np.int16), si, k.pack_lstm_s8(wh), sh, *b)


def test_bad_arguments_named():
    rng = np.random.default_rng(6)
    x, hh, c, wi, wh, bi, bh = _case(rng, 2, 3, 4)
    with pytest.raises(ValueError, match="w_ih"):
        k.lstm_cell_f32(x, hh, c, wh, wh, bi, bh)
    with pytest.raises(ValueError, match="gate_order"):
        k.lstm_cell_f32(x, hh, c, wi, wh, bi, bh, "ifgg")
    with pytest.raises(ValueError, match="both biases"):
        k.lstm_cell_f32(x, hh, c, wi, wh, bi, None)
