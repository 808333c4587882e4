"""Bias correction and cross-layer equalization (Nagel et al. 2019, DFQ, arXiv 1906.04721)."""
from __future__ import annotations

import numpy as np

# Needle layouts: linear [K, N], conv [kH, kW, C_in, C_out]. The output channel is always the
# last axis and the input channel the second to last one, which is all the code below needs.


def flat_input_mean(w_shape, input_mean) -> np.ndarray:
    """``E[x]`` per unfolded input of a weight ``[..., D_in, N]``, shape ``(prod(w_shape[:-1]),)``.

    ``input_mean`` is either per unfolded input (``K`` for linear, ``kH * kW * C_in`` in
    :func:`~needle_qc.quantize.algorithms.gptq.unfold_nchw` order, e.g.
    ``HessianAccumulator.mean``: exact on the calibration data, borders and padding included),
    or per input channel ``(C_in,)`` for conv, repeated over the kernel window (the stationary
    approximation: every tap sees the channel mean).
    """
    w_shape = tuple(w_shape)
    m = np.asarray(input_mean, np.float64).reshape(-1)
    n_flat = int(np.prod(w_shape[:-1]))
    if m.size == n_flat:
        return m
    if len(w_shape) == 4 and m.size == w_shape[2]:
        return np.tile(m, w_shape[0] * w_shape[1])
    raise ValueError(f"bias correction: input_mean has {m.size} values; weight {w_shape} needs "
                     f"{n_flat}" + (f" or {w_shape[2]} (per channel)" if len(w_shape) == 4 else ""))


def expected_output_shift(w, w_q, input_mean) -> np.ndarray:
    """``E[y] - E[y_q] = E[x] (W - W_q)`` per output channel (Nagel et al. 2019, eq. 10-11).

    With ``y = x W + b``: ``E[x W - x W_q] = E[x] (W - W_q)`` by linearity. For conv,
    ``shift[o] = sum_{kh, kw, c} E[x_{kh, kw, c}] (W - W_q)[kh, kw, c, o]``; with a per-channel mean
    that is ``sum_c E[x_c] sum_{kh, kw} (W - W_q)[kh, kw, c, o]``. Returns float64 ``(N,)``.
    """
    w = np.asarray(w, np.float64)
    dw = (w - np.asarray(w_q, np.float64)).reshape(-1, w.shape[-1])
    return flat_input_mean(w.shape, input_mean) @ dw


def correct_bias(bias, w, w_q, input_mean) -> np.ndarray:
    """Bias for the quantized layer: ``b + E[x] (W - W_q)``, so ``E[y_q] = E[y]`` (float32).

    ``bias`` None means a zero bias (the correction then creates one).
    """
    shift = expected_output_shift(w, w_q, input_mean)
    b = np.zeros(shift.shape) if bias is None else np.asarray(bias, np.float64).reshape(-1)
    if b.shape != shift.shape:
        raise ValueError(f"correct_bias: bias shape {b.shape} != ({shift.size},) outputs")
    return (b + shift).astype(np.float32)


def relu_normal_mean(beta, gamma) -> np.ndarray:
    """``E[ReLU(z)]``, ``z ~ N(beta, gamma^2)``: ``gamma phi(beta/gamma) + beta Phi(beta/gamma)``.

    The data-free input mean of a layer fed by BatchNorm (shift beta, scale gamma) + ReLU
    (Nagel et al. 2019, sec. 4.2); gamma == 0 gives ``max(beta, 0)``.
    """
    from math import erf  # numpy has no erf; channel counts are small

    beta = np.asarray(beta, np.float64)
    gamma = np.abs(np.asarray(gamma, np.float64))
    safe = np.where(gamma > 0, gamma, 1.0)
    t = beta / safe
    pdf = np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)
    cdf = 0.5 * (1 + np.vectorize(erf)(t / np.sqrt(2)))
    return np.where(gamma > 0, gamma * pdf + beta * cdf, np.maximum(beta, 0))


# ---------------------------------------------------------------------------------------------
# cross-layer equalization


def output_channel_ranges(w) -> np.ndarray:
    """``r1_i = max |W1[..., i]|``: range of each output channel (last axis) of layer 1."""
    w = np.asarray(w, np.float64)
    return np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)


def input_channel_ranges(w) -> np.ndarray:
    """``r2_i = max |W2[..., i, :]|``: range of each input channel (axis -2) of layer 2."""
    w = np.asarray(w, np.float64)
    return np.abs(np.moveaxis(w, -2, 0)).reshape(w.shape[-2], -1).max(axis=1)


def equalization_scales(r1, r2) -> np.ndarray:
    """``s_i = sqrt(r1_i r2_i) / r2_i = sqrt(r1_i / r2_i)`` (Nagel et al. 2019, eq. 7-8).

    Layer 1's output channel i is divided by s_i and layer 2's input channel i multiplied by it,
    so both ranges become ``sqrt(r1_i r2_i)``: the paper's optimum of the total precision
    ``sum_i (r1_i / s_i / R1) (r2_i s_i / R2)`` with ``R1, R2`` the per-tensor ranges after
    scaling (the numerators do not depend on s, so it minimizes ``R1 R2``; the optimum has equal
    ranges). A channel with a zero range on either side keeps ``s_i = 1`` (nothing to balance).
    """
    r1 = np.asarray(r1, np.float64)
    r2 = np.asarray(r2, np.float64)
    ok = (r1 > 0) & (r2 > 0)
    return np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)


def equalize_pair(w1, b1, w2):
    """Cross-layer equalization of ``y = f(x W1 + b1) W2`` with f = ReLU or identity.

    ``W1' = W1 / s`` and ``b1' = b1 / s`` on layer 1's output channels, ``W2' = s W2`` on layer
    2's input channels, with ``s = equalization_scales(r1, r2)``. Exact in real arithmetic because
    ReLU is positively homogeneous: ``ReLU(z / s) = ReLU(z) / s`` for ``s > 0``. Layouts: linear
    ``[K, N]`` or conv ``[kH, kW, C_in, C_out]`` (layer 2 reading layer 1's channels directly,
    not through a flatten). Returns ``(w1', b1' or None, w2', s)`` in the inputs' dtypes.
    """
    w1a, w2a = np.asarray(w1), np.asarray(w2)
    if w1a.shape[-1] != w2a.shape[-2]:
        raise ValueError(f"equalize_pair: layer 1 has {w1a.shape[-1]} outputs, layer 2 "
                         f"{w2a.shape[-2]} inputs")
    s = equalization_scales(output_channel_ranges(w1a), input_channel_ranges(w2a))
    w1n = (w1a.astype(np.float64) / s).astype(w1a.dtype)
    w2n = (w2a.astype(np.float64) * s[:, None]).astype(w2a.dtype)
    b1n = None if b1 is None else (np.asarray(b1, np.float64).reshape(-1) / s).astype(
        np.asarray(b1).dtype)
    return w1n, b1n, w2n, s


def equalize_chain(weights, biases, iterations: int = 20, tol: float = 1e-8):
    """Equalize every consecutive pair of a chain (ReLU/identity between layers) until stable.

    A middle layer is rescaled on both sides, so the pairs are swept repeatedly (the paper
    iterates to convergence); stops when every step's scales are within ``tol`` of 1. Returns
    ``(weights, biases)`` as new lists; the last layer's bias is untouched.
    """
    ws, bs = list(weights), list(biases)
    if len(ws) != len(bs) or len(ws) < 2:
        raise ValueError("equalize_chain: needs >= 2 layers and one bias (or None) per layer")
    for _ in range(iterations):
        worst = 0.0
        for i in range(len(ws) - 1):
            ws[i], bs[i], ws[i + 1], s = equalize_pair(ws[i], bs[i], ws[i + 1])
            worst = max(worst, float(np.max(np.abs(np.log(s)))))
        if worst < tol:
            break
    return ws, bs
