"""NumPy reference of the fused LSTM cell kernels: the gate functions and ``qlstm_cell``.

The gate functions are written as explicit float32 operations (no FMA, every step rounded),
so the C++ scalar and AVX2 kernels (``csrc/quant/cpu/lstm_gates.h``) give the same bits:

* ``gate_exp(x)``, ``x`` clamped to [-87, 87]: ``n = rint(x * log2e)``,
  ``r = (x - n * C1) - n * C2``, ``p = (((((P0 r + P1) r + P2) r + P3) r + P4) r + P5) * r²
  + r + 1`` (Horner, left to right), times ``2^n`` built from its bits (Cephes expf's
  constants; within 2 ulp of exp);
* ``gate_sigmoid(x) = 1 / (1 + gate_exp(-clamp(x, -80, 80)))``;
* ``gate_tanh(x)``: for ``|x| < 0.625`` the odd polynomial ``x + (x z) q(z)``, ``z = x²``
  (Cephes tanhf's); else ``sign(x) (1 - 2 / (gate_exp(min(2|x|, 80)) + 1))``.
"""

import numpy as np

from needle_qc.quantize._checks import _fit_int32
from needle_qc.quantize.reference import dynamic_quantize_linear, exact_int_matmul, quantize_linear

F = np.float32
LOG2E, EXP_C1, EXP_C2 = F(1.44269504088896341), F(0.693359375), F(-2.12194440e-4)
EXP_P = tuple(F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                             4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
TANH_Q = tuple(F(c) for c in (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                              1.33314422036e-1, -3.33332819422e-1))
EXP_CLAMP, SIGMOID_CLAMP, TANH_SMALL = F(87), F(80), F(0.625)


def gate_exp(x):
    x = np.clip(np.asarray(x, F), -EXP_CLAMP, EXP_CLAMP)
    n = np.rint(x * LOG2E)
    r = (x - n * EXP_C1) - n * EXP_C2
    p = EXP_P[0]
    for c in EXP_P[1:]:
        p = p * r + c
    p = (p * (r * r) + r) + F(1)
    two_n = ((n.astype(np.int32) + 127) << 23).view(F)
    return (p * two_n).astype(F)


def gate_sigmoid(x):
    x = np.clip(np.asarray(x, F), -SIGMOID_CLAMP, SIGMOID_CLAMP)
    return (F(1) / (F(1) + gate_exp(-x))).astype(F)


def gate_tanh(x):
    x = np.asarray(x, F)
    a = np.abs(x)
    z = x * x
    q = TANH_Q[0]
    for c in TANH_Q[1:]:
        q = q * z + c
    small = x + (x * z) * q
    big = F(1) - F(2) / (gate_exp(np.minimum(a + a, SIGMOID_CLAMP)) + F(1))
    big = np.where(x < 0, -big, big)
    return np.where(a < TANH_SMALL, small, big).astype(F)


def is_gate_order(order):
    """A layout of the ``4H`` gate axis: a permutation of i, f, g, o (Needle's is "ifgo")."""
    return isinstance(order, str) and sorted(order) == sorted("ifgo")


def gate_slices(order, hidden):
    """``{role: slice of the 4H axis}`` for the roles i, f, g, o in ``order``."""
    if not is_gate_order(order):
        raise ValueError(f"gate order {order!r} is not a permutation of 'ifgo'")
    return {role: slice(k * hidden, (k + 1) * hidden) for k, role in enumerate(order)}


def lstm_tail(gates, c, order="ifgo"):
    """``(h', c')`` from the pre-activation gates ``[N, 4H]``: ``c' = f c + i g``,
    ``h' = o tanh(c')`` in float32 with the gate functions above."""
    gates, c = np.asarray(gates, F), np.asarray(c, F)
    s = gate_slices(order, c.shape[-1])
    i, f = gate_sigmoid(gates[:, s["i"]]), gate_sigmoid(gates[:, s["f"]])
    g, o = gate_tanh(gates[:, s["g"]]), gate_sigmoid(gates[:, s["o"]])
    c_new = (f * c + i * g).astype(F)
    return (o * gate_tanh(c_new)).astype(F), c_new


def _scales(s_w, n):
    s_w = np.asarray(s_w, F).reshape(-1)
    return np.broadcast_to(s_w, (n,)) if s_w.size == 1 else s_w


def _centred(v, qparams):
    """``(q - z)`` as int64 and the scale: static ``(s, z)`` or, for None, per-call
    DynamicQuantizeLinear (u8)."""
    if qparams is None:
        q, s, z = dynamic_quantize_linear(v)
    else:
        s, z = F(qparams[0]), qparams[1]
        dtype = np.int8 if z < 0 or qparams[2] == "int8" else np.uint8
        q = quantize_linear(v, s, np.asarray(z, dtype))
    return q.astype(np.int64) - int(z), F(s)


def qlstm_gates(x, h, w_ih, s_ih, w_hh, s_hh, biases, x_qp=None, h_qp=None):
    """Pre-activation gates of ``qlstm_cell``: ``acc = Σ (q - z) w`` exact in int32 for x and
    h, ``(f32(acc_x) (s_x s_ih) + f32(acc_h) (s_h s_hh)) + b_ih + b_hh`` in float32."""
    n4 = w_ih.shape[1]
    ax, sx = _centred(x, x_qp)
    ah, sh = _centred(h, h_qp)
    acc_x = _fit_int32(exact_int_matmul(ax, w_ih.astype(np.int64)), "qlstm_cell x @ W_ih")
    acc_h = _fit_int32(exact_int_matmul(ah, w_hh.astype(np.int64)), "qlstm_cell h @ W_hh")
    mx = np.multiply(sx, _scales(s_ih, n4), dtype=F)
    mh = np.multiply(sh, _scales(s_hh, n4), dtype=F)
    gates = acc_x.astype(F) * mx + acc_h.astype(F) * mh
    for b in biases:
        gates = gates + np.asarray(b, F).reshape(-1)
    return gates.astype(F)
