"""SmoothQuant: exact float identity, outlier statistics, error reduction, alpha grid search."""
import numpy as np
import pytest

from needle_qc.quantize import quantize_weight
from needle_qc.quantize.algorithms import (
    ALPHA_GRID,
    ChannelAbsMax,
    QuantSim,
    activation_channel_stats,
    smooth_weight,
    smoothquant,
    smoothquant_scales,
)
from needle_qc.quantize.qparams import choose_qparams

OUTLIERS = [3, 17, 40]


def outlier_layer(seed=0, n=256, k=64, m=32):
    """A LayerNorm-fed-like input with a few systematic outlier channels (x50)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(np.float32)
    x[:, OUTLIERS] *= 50.0
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    return x, w


def test_float_output_is_preserved():
    x, w = outlier_layer()
    for alpha in (0.0, 0.5, 0.85, 1.0):
        s = smoothquant_scales(np.abs(x).max(0), w, alpha)
        y = (x / s.astype(np.float32)) @ smooth_weight(w, s)
        np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-5 * np.abs(x @ w).max())


def test_scale_formula_and_alpha_half_balances():
    x, w = outlier_layer(1)
    ax, aw = np.abs(x).max(0).astype(np.float64), np.abs(w).max(1).astype(np.float64)
    s = smoothquant_scales(ax, w, 0.3)
    np.testing.assert_allclose(s, ax ** 0.3 / aw ** 0.7, rtol=1e-12)
    s = smoothquant_scales(ax, w, 0.5)
    np.testing.assert_allclose(ax / s, aw * s, rtol=1e-12)  # both become sqrt(ax * aw)
    # shared input: max|W_j| over every consumer
    w2 = w * 3.0
    np.testing.assert_allclose(smoothquant_scales(ax, [w, w2], 0.5),
                               smoothquant_scales(ax, w2, 0.5), rtol=1e-12)
    zero = smoothquant_scales(np.r_[0.0, ax[1:]], w, 0.5)
    assert zero[0] == 1.0


def test_outlier_statistics():
    x, _ = outlier_layer(2)
    acc = ChannelAbsMax()
    for part in np.array_split(x, 4):
        acc.add(part)
    np.testing.assert_array_equal(acc.absmax, np.abs(x).max(0))
    st = activation_channel_stats(acc.absmax)
    assert st["max_median_ratio"] > 20 and sorted(st["outliers"]) == OUTLIERS
    calm = activation_channel_stats(np.abs(np.random.default_rng(3).standard_normal((256, 64)))
                                    .max(0))
    assert calm["max_median_ratio"] < 3 and calm["outliers"] == []


def test_reduces_quantized_error_with_outliers():
    x, w = outlier_layer(4)
    res = smoothquant(x, w, 0.5)
    assert res.errors[0.5] < 0.25 * res.errors["none"]
    # and on held-out rows from the same distribution, with the calibrated scales
    xt, _ = outlier_layer(5)
    sim = QuantSim()
    plain = sim.output_mse(xt, np.ones(64), [w])
    smooth = sim.output_mse(xt, res.scale, [w])
    assert smooth < 0.25 * plain


def brute_force_mse(x, w, alpha):
    """Independent W8A8 simulation: uint8 per-tensor activations, int8 per-channel weights."""
    ax = np.abs(x).max(0).astype(np.float64)
    aw = np.abs(w).max(1).astype(np.float64)
    s = ax ** alpha / aw ** (1 - alpha)
    xs = (x / s.astype(np.float32)).astype(np.float32)
    sa, za = choose_qparams(xs.min(), xs.max(), "uint8")
    q = np.clip(np.rint(np.divide(xs, sa, dtype=np.float32)) + int(za), 0, 255)
    xq = ((q - int(za)).astype(np.float32) * sa).astype(np.float64)
    wq = quantize_weight((w * s[:, None]).astype(np.float32), "int8", "per_channel").dequantize()
    return np.mean((xq @ wq.astype(np.float64) - x.astype(np.float64) @ w) ** 2)


def test_auto_alpha_is_the_grid_optimum():
    x, w = outlier_layer(6)
    res = smoothquant(x, w, "auto")
    brute = {a: brute_force_mse(x, w, a) for a in ALPHA_GRID}
    assert res.alpha == min(ALPHA_GRID, key=lambda a: brute[a])
    for a in ALPHA_GRID:
        assert res.errors[a] == pytest.approx(brute[a], rel=1e-6)
    assert res.errors[res.alpha] <= res.errors[0.5] < res.errors["none"]
    np.testing.assert_allclose(res.weights[0], smooth_weight(w, res.scale))


def test_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        smoothquant_scales(np.ones(3), np.ones((3, 2)), 1.5)
