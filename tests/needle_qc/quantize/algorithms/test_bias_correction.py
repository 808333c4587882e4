"""Bias correction against its analytic expectation; cross-layer equalization exactness."""
import numpy as np
import pytest

from needle_qc.quantize import quantize_weight
from needle_qc.quantize.algorithms import (
    HessianAccumulator,
    correct_bias,
    equalization_scales,
    equalize_chain,
    equalize_pair,
    expected_output_shift,
    input_channel_ranges,
    output_channel_ranges,
    relu_normal_mean,
    unfold_nchw,
)


def relu(z):
    return np.maximum(z, 0)


def test_linear_shift_is_analytic_and_zeroes_the_mean_error():
    rng = np.random.default_rng(0)
    mu = rng.uniform(-1, 2, 16)
    x = mu + rng.standard_normal((4000, 16))
    w = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    wq = quantize_weight(w, "int4", "per_channel").dequantize()
    # E[x (W - Wq)] = mu (W - Wq): the analytic shift, and the sample estimate agrees within noise
    shift = expected_output_shift(w, wq, mu)
    np.testing.assert_allclose(shift, mu @ (w.astype(np.float64) - wq), rtol=1e-12)
    sample = (x @ w.astype(np.float64) - x @ wq.astype(np.float64)).mean(axis=0)
    se = (x @ (w.astype(np.float64) - wq)).std(axis=0) / np.sqrt(len(x))
    assert np.all(np.abs(sample - shift) < 5 * se)
    # with the calibration mean the quantized layer's mean output error is 0 on that data
    acc = HessianAccumulator()
    acc.add(x)
    bq = correct_bias(b, w, wq, acc.mean)
    y, yq = x @ w + b, x @ wq + bq
    before = np.abs((x @ wq + b - y).mean(axis=0)).max()
    after = np.abs((yq - y).mean(axis=0)).max()
    assert after < 1e-5 * before + 1e-6 and before > 1e-3


def test_conv_shift_per_channel_and_per_tap():
    rng = np.random.default_rng(1)
    mu = rng.uniform(0, 2, 3)
    x = mu[None, :, None, None] + rng.standard_normal((8, 3, 10, 10))
    w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    wq = quantize_weight(w, "int4", "per_group", axis=2, group_size=2).dequantize()
    dw = w.astype(np.float64) - wq
    # per input channel: sum_c mu_c sum_{kh, kw} dW[kh, kw, c, o], written with loops
    loops = np.zeros(5)
    for o in range(5):
        for c in range(3):
            loops[o] += mu[c] * sum(dw[i, j, c, o] for i in range(3) for j in range(3))
    np.testing.assert_allclose(expected_output_shift(w, wq, mu), loops, rtol=1e-12)
    # per unfolded input (padding included): zero mean error over every output position
    acc = HessianAccumulator(kernel_size=3, padding=1)
    acc.add(x)
    cols = unfold_nchw(x, 3, 1, 1)
    bq = correct_bias(None, w, wq, acc.mean)
    err = cols @ wq.reshape(-1, 5) + bq - cols @ w.reshape(-1, 5)
    assert np.abs(err.mean(axis=0)).max() < 1e-5
    # the per-channel approximation is close but not exact at the zero-padded borders
    approx = correct_bias(None, w, wq, mu)
    assert np.abs(approx - bq).max() < 0.3 * np.abs(bq).max()


def test_relu_normal_mean_matches_monte_carlo():
    rng = np.random.default_rng(2)
    beta, gamma = np.array([-1.0, 0.0, 0.5, 2.0, 0.3]), np.array([1.0, 2.0, 0.5, 0.1, 0.0])
    z = beta + gamma * rng.standard_normal((200000, 5))
    np.testing.assert_allclose(relu_normal_mean(beta, gamma), relu(z).mean(axis=0), atol=0.01)
    assert relu_normal_mean(-1.0, 0.0) == 0.0


def test_cle_linear_relu_linear_exact_and_equalized():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 12)).astype(np.float32)
    w1 = (rng.standard_normal((12, 10)) * np.logspace(-2, 1, 10)).astype(np.float32)
    b1 = rng.standard_normal(10).astype(np.float32)
    w2 = rng.standard_normal((10, 7)).astype(np.float32)
    w1n, b1n, w2n, s = equalize_pair(w1, b1, w2)
    y = relu(x @ w1 + b1) @ w2
    yn = relu(x @ w1n + b1n) @ w2n
    np.testing.assert_allclose(yn, y, rtol=1e-5, atol=1e-5 * np.abs(y).max())
    r1, r2 = output_channel_ranges(w1), input_channel_ranges(w2)
    np.testing.assert_allclose(s, np.sqrt(r1 * r2) / r2, rtol=1e-12)
    np.testing.assert_allclose(output_channel_ranges(w1n), np.sqrt(r1 * r2), rtol=1e-6)
    np.testing.assert_allclose(input_channel_ranges(w2n), np.sqrt(r1 * r2), rtol=1e-6)
    assert w1n.dtype == w2n.dtype == b1n.dtype == np.float32


def conv(x, w, padding=1):
    n, _, h, wd = x.shape
    cols = unfold_nchw(x, w.shape[0], 1, padding)
    oh = h + 2 * padding - w.shape[0] + 1
    ow = wd + 2 * padding - w.shape[1] + 1
    return (cols @ w.reshape(-1, w.shape[3])).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)


def test_cle_conv_chain_exact_and_helps_per_tensor_quantization():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 8, 8))
    w1 = rng.standard_normal((3, 3, 3, 6)) * np.array([0.01, 0.05, 0.2, 1, 3, 8])
    b1 = rng.standard_normal(6) * 0.1
    w2 = rng.standard_normal((3, 3, 6, 4))
    w1n, b1n, w2n, _ = equalize_pair(w1, b1, w2)

    def net(a, b, c, quant=False):
        if quant:  # per-tensor int8 weights: where the imbalance hurts
            a, c = (quantize_weight(t.astype(np.float32), "int8", "per_tensor").dequantize()
                    for t in (a, c))
        return conv(relu(conv(x, a) + b[None, :, None, None]), c)

    y = net(w1, b1, w2)
    np.testing.assert_allclose(net(w1n, b1n, w2n), y, rtol=1e-9, atol=1e-9)
    err_rtn = np.mean((net(w1, b1, w2, True) - y) ** 2)
    err_cle = np.mean((net(w1n, b1n, w2n, True) - y) ** 2)
    assert err_cle < 0.7 * err_rtn


def test_cle_chain_of_three_converges():
    rng = np.random.default_rng(5)
    ws = [rng.standard_normal((8, 8)) * rng.uniform(0.01, 5, 8) for _ in range(3)]
    bs = [rng.standard_normal(8) for _ in range(3)]
    x = rng.standard_normal((16, 8))

    def net(ws, bs):
        h = x
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w + b
            h = relu(h) if i < 2 else h
        return h

    wn, bn = equalize_chain(ws, bs, iterations=200, tol=1e-10)
    np.testing.assert_allclose(net(wn, bn), net(ws, bs), rtol=1e-9, atol=1e-9)
    for i in range(2):
        np.testing.assert_allclose(output_channel_ranges(wn[i]), input_channel_ranges(wn[i + 1]),
                                   rtol=1e-6)
    assert bn[2] is bs[2]


def test_cle_zero_channel_keeps_unit_scale():
    s = equalization_scales([0.0, 4.0, 1.0], [2.0, 1.0, 0.0])
    np.testing.assert_array_equal(s, [1.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="outputs"):
        equalize_pair(np.ones((3, 4)), None, np.ones((5, 2)))
    with pytest.raises(ValueError, match="input_mean"):
        expected_output_shift(np.ones((3, 4)), np.ones((3, 4)), np.ones(5))
