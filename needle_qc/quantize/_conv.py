"""Exact integer 2-D convolution (NCHW) and ONNX Conv attribute handling for the reference."""
from __future__ import annotations

import math

import numpy as np


def conv_geometry(x_shape, w_shape, auto_pad, dilations, group, kernel_shape, pads, strides,
                   op: str):
    """Validate ONNX Conv attributes; return (pads [t, l, b, r], strides, dilations, (oh, ow))."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"{op}: expects 4-D x (NCHW) and w (M, C/group, kH, kW), got "
                         f"{tuple(x_shape)} and {tuple(w_shape)}")
    if not isinstance(group, (int, np.integer)) or group < 1:
        raise ValueError(f"{op}: group={group!r} must be an int >= 1")
    c, m = x_shape[1], w_shape[0]
    if c % group or m % group or w_shape[1] * group != c:
        raise ValueError(f"{op}: channels C={c}, M={m}, w.shape[1]={w_shape[1]} inconsistent "
                         f"with group={group}")
    k = tuple(w_shape[2:])
    if kernel_shape is not None and tuple(kernel_shape) != k:
        raise ValueError(f"{op}: kernel_shape={list(kernel_shape)} != w spatial shape {list(k)}")
    st = _pos_pair(strides, "strides", op)
    dl = _pos_pair(dilations, "dilations", op)
    ins = x_shape[2:]
    ext = [(k[i] - 1) * dl[i] + 1 for i in range(2)]
    pad = _resolve_pads(auto_pad, pads, ins, ext, st, op)
    out = [(ins[i] + pad[i] + pad[i + 2] - ext[i]) // st[i] + 1 for i in range(2)]
    if min(out) < 1:
        raise ValueError(f"{op}: output spatial size {out} < 1 for input {list(ins)}, "
                         f"kernel {list(k)}, pads {pad}, strides {st}, dilations {dl}")
    return pad, st, dl, tuple(out)


def _pos_pair(v, arg: str, op: str) -> list[int]:
    if v is None:
        return [1, 1]
    vals = [int(t) for t in v]
    if len(vals) != 2 or min(vals) < 1:
        raise ValueError(f"{op}: {arg}={list(v)!r} must be two ints >= 1")
    return vals


def _resolve_pads(auto_pad, pads, ins, ext, st, op: str) -> list[int]:
    valid = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
    if auto_pad not in valid:
        raise ValueError(f"{op}: auto_pad={auto_pad!r} not one of {list(valid)}")
    if auto_pad == "NOTSET":
        if pads is None:
            return [0, 0, 0, 0]
        p = [int(t) for t in pads]
        if len(p) != 4 or min(p) < 0:
            raise ValueError(f"{op}: pads={list(pads)!r} must be 4 ints >= 0 [t, l, b, r]")
        return p
    if pads is not None and any(pads):
        raise ValueError(f"{op}: pads={list(pads)!r} cannot be combined with auto_pad={auto_pad}")
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    total = [max(0, (math.ceil(ins[i] / st[i]) - 1) * st[i] + ext[i] - ins[i]) for i in range(2)]
    small = [t // 2 for t in total]
    big = [t - t // 2 for t in total]
    return small + big if auto_pad == "SAME_UPPER" else big + small


_IM2COL_BYTES = 64 << 20  # bound the float64 patch buffer; larger batches run in chunks


def conv2d_exact(x64, w64, pad, st, dl, out_hw, group) -> np.ndarray:
    """Exact integer 2-D convolution (inputs already zero-point-centred, zeros padded).

    im2col in float64 (exact: every centred 8-bit product is <= 2**16, so partial sums stay integers
    below 2**53) and one matmul per group, over
    batch chunks whose patch buffer stays under ``_IM2COL_BYTES``.
    """
    n, c = x64.shape[:2]
    kh, kw = w64.shape[2:]
    per_image = 8 * c * kh * kw * out_hw[0] * out_hw[1]
    step = max(1, _IM2COL_BYTES // max(per_image, 1))
    parts = [_conv2d_chunk(x64[i:i + step], w64, pad, st, dl, out_hw, group)
             for i in range(0, n, step)]
    if not parts:
        return np.zeros((0, w64.shape[0]) + tuple(out_hw), dtype=np.int64)
    return np.concatenate(parts)


def _conv2d_chunk(x64, w64, pad, st, dl, out_hw, group) -> np.ndarray:
    n = x64.shape[0]
    m, cg, kh, kw = w64.shape
    oh, ow = out_hw
    xp = np.pad(x64.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    # cols[n, c, i, j, oh, ow] = xp[n, c, oh * st0 + i * dl0, ow * st1 + j * dl1]
    cols = np.empty((n, x64.shape[1], kh, kw, oh, ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dl[0], j * dl[1]
            cols[:, :, i, j] = xp[:, :, r0:r0 + (oh - 1) * st[0] + 1:st[0],
                                  c0:c0 + (ow - 1) * st[1] + 1:st[1]]
    mg = m // group
    acc = np.empty((n, m, oh * ow), dtype=np.int64)
    for g in range(group):
        xg = cols[:, g * cg:(g + 1) * cg].reshape(n, cg * kh * kw, oh * ow)
        wg = w64[g * mg:(g + 1) * mg].reshape(mg, cg * kh * kw).astype(np.float64)
        acc[:, g * mg:(g + 1) * mg] = np.matmul(wg, xg).astype(np.int64)
    return acc.reshape(n, m, oh, ow)
