"""SmoothQuant: migrate activation outliers into the weights (Xiao et al., arXiv 2211.10438)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..lowbit import quantize_weight
from ..qparams import choose_qparams
from ..reference import dequantize_linear, quantize_linear

ALPHA_GRID = tuple(round(0.05 * i, 2) for i in range(21))  # 0.0, 0.05, ..., 1.0


class ChannelAbsMax:
    """Running ``max |x_j|`` per input channel j (last axis) over calibration batches."""

    def __init__(self):
        self._absmax = None
        self.count = 0

    def add(self, x) -> None:
        x = np.asarray(x)
        m = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0).astype(np.float64)
        if self._absmax is not None and m.shape != self._absmax.shape:
            raise ValueError(f"ChannelAbsMax.add: {m.size} channels, expected {self._absmax.size}")
        self._absmax = m if self._absmax is None else np.maximum(self._absmax, m)
        self.count += x.size // x.shape[-1]

    @property
    def absmax(self) -> np.ndarray:
        if self._absmax is None:
            raise ValueError("ChannelAbsMax: no calibration inputs were added")
        return self._absmax


def activation_channel_stats(absmax, outlier_factor: float = 8.0, top: int = 8) -> dict:
    """Are there outlier channels? Statistics of the per-channel ranges ``max |X_j|``.

    ``max_median_ratio = max_j r_j / median_j r_j`` is ~2-4 for well-behaved activations and
    10-100x with the systematic outlier channels SmoothQuant targets (Xiao et al., fig. 4).
    ``outliers`` lists the channels above ``outlier_factor * median``, largest first.
    """
    r = np.asarray(absmax, np.float64).reshape(-1)
    med = float(np.median(r))
    ratio = float(r.max() / med) if med > 0 else (float("inf") if r.max() > 0 else 1.0)
    order = np.argsort(-r, kind="stable")
    out = order[r[order] > outlier_factor * med] if med > 0 else order[r[order] > 0]
    return {"channels": int(r.size), "max": float(r.max()), "median": med,
            "max_median_ratio": ratio, "outliers": [int(i) for i in out],
            "top": [(int(i), float(r[i])) for i in order[:top]]}


def smoothquant_scales(act_absmax, weights, alpha: float = 0.5) -> np.ndarray:
    """``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` per input channel j (Xiao et al., eq. 4).

    ``weights``: one ``[K, N]`` weight or a sequence of them sharing the input (e.g. the q/k/v
    projections after one LayerNorm); ``max|W_j|`` is over row j of all of them. alpha = 0.5
    equalizes both maxima to ``sqrt(max|X_j| max|W_j|)``. Channels with a zero range on either
    side keep ``s_j = 1``.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"smoothquant: alpha={alpha!r} must be in [0, 1]")
    ws = [weights] if isinstance(weights, np.ndarray) else list(weights)
    a = np.asarray(act_absmax, np.float64).reshape(-1)
    w = np.max([np.abs(np.asarray(x, np.float64)).max(axis=1) for x in ws], axis=0)
    if w.shape != a.shape:
        raise ValueError(f"smoothquant: {a.size} activation channels, weights have {w.size} rows")
    ok = (a > 0) & (w > 0)
    a, w = np.where(ok, a, 1.0), np.where(ok, w, 1.0)
    return np.where(ok, a ** alpha / w ** (1.0 - alpha), 1.0)


def smooth_weight(w, s) -> np.ndarray:
    """``W' = diag(s) W`` (row j times s_j), so that ``(X / s) W' = X W`` exactly in reals."""
    w = np.asarray(w)
    return (w.astype(np.float64) * np.asarray(s, np.float64)[:, None]).astype(w.dtype)


@dataclass(frozen=True)
class QuantSim:
    """The quantized layer the alpha search scores: static per-tensor activations (min/max range
    over the calibration rows) and RTN weights, as ``QConfig(activation="static")`` builds it."""

    act_dtype: str = "uint8"
    act_symmetric: bool = False
    weight_dtype: str = "int8"
    weight_granularity: str = "per_channel"
    weight_symmetric: bool = True
    group_size: int = 32

    def fake_quant_act(self, x) -> np.ndarray:
        x = np.asarray(x, np.float32)
        s, z = choose_qparams(x.min(initial=0), x.max(initial=0), self.act_dtype,
                              self.act_symmetric)
        return dequantize_linear(quantize_linear(x, s, z), s, z)

    def fake_quant_weight(self, w) -> np.ndarray:
        axis = 0 if self.weight_granularity == "per_group" else None
        return quantize_weight(np.asarray(w, np.float32), self.weight_dtype,
                               self.weight_granularity, axis=axis, group_size=self.group_size,
                               symmetric=self.weight_symmetric).dequantize()

    def output_mse(self, x, s, weights) -> float:
        """Mean squared error of ``Q(X / s) Q(diag(s) W)`` against the float ``X W``."""
        x = np.asarray(x, np.float32).reshape(-1, np.shape(x)[-1])
        xq = self.fake_quant_act(x / np.asarray(s, np.float32)).astype(np.float64)
        err, n = 0.0, 0
        for w in weights:
            ref = x.astype(np.float64) @ np.asarray(w, np.float64)
            out = xq @ self.fake_quant_weight(smooth_weight(w, s)).astype(np.float64)
            err += float(np.sum((out - ref) ** 2))
            n += ref.size
        return err / n


@dataclass(frozen=True)
class SmoothQuantResult:
    """``alpha`` used, ``scale`` s (float64, K), smoothed ``weights`` (list, input order) and the
    calibration output MSE of the quantized layer per alpha tried (``errors``; includes
    ``"none"``: no smoothing)."""

    alpha: float
    scale: np.ndarray
    weights: list
    errors: dict = field(default_factory=dict)


def smoothquant(x, weights, alpha=0.5, *, alphas=ALPHA_GRID,
                sim: QuantSim | None = None) -> SmoothQuantResult:
    """SmoothQuant on one layer (or several sharing input ``x``) with calibration inputs ``x``.

    ``X' = X / s`` (folded into the producer, e.g. LayerNorm's gamma and beta), ``W' = diag(s) W``.
    ``alpha="auto"``: grid search over ``alphas`` for the lowest output MSE of the quantized layer
    ``sim`` on ``x`` (first alpha on ties); a float uses that alpha. ``x``: ``(..., K)``;
    ``weights``: ``[K, N]`` or a sequence of them.
    """
    sim = sim or QuantSim()
    ws = [weights] if isinstance(weights, np.ndarray) else list(weights)
    x = np.asarray(x, np.float32)
    absmax = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0)
    errors = {"none": sim.output_mse(x, np.ones(absmax.shape), ws)}
    grid = list(alphas) if alpha == "auto" else [float(alpha)]
    for a in grid:
        errors[a] = sim.output_mse(x, smoothquant_scales(absmax, ws, a), ws)
    best = min(grid, key=lambda a: errors[a])  # min keeps the first of equal errors
    s = smoothquant_scales(absmax, ws, best)
    return SmoothQuantResult(best, s, [smooth_weight(w, s) for w in ws], errors)
