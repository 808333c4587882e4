"""Argument checks shared by the reference ops: each error names the op and the argument."""
from __future__ import annotations

import numpy as np

from needle_qc.quantize.qparams import CONTAINER

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_FLOAT_INPUTS = (np.float16, np.float32, np.float64)
Q8 = ("uint8", "int8")


def _as_array(value, arg: str, op: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"{op}: {arg} is required")
    return np.asarray(value)


def _check_float(arr: np.ndarray, arg: str, op: str) -> None:
    if arr.dtype.type not in _FLOAT_INPUTS:
        raise ValueError(f"{op}: {arg} must be float16/float32/float64, got {arr.dtype}")


def _check_scale(scale, arg: str, op: str) -> np.ndarray:
    """Scales must be positive finite floats; returned as float32 (all divisions are fp32)."""
    arr = _as_array(scale, arg, op)
    _check_float(arr, arg, op)
    s32 = arr.astype(np.float32)
    if not np.all(np.isfinite(s32) & (s32 > 0)):
        raise ValueError(f"{op}: {arg} must be finite and > 0, got {arr.ravel()[:8]}")
    return s32


def _check_int(arr: np.ndarray, arg: str, op: str, allowed=Q8) -> str:
    if arr.dtype.name not in allowed:
        raise ValueError(f"{op}: {arg} must have dtype in {list(allowed)}, got {arr.dtype}")
    return arr.dtype.name


def _fit_int32(acc: np.ndarray, op: str) -> np.ndarray:
    """Accumulators are computed in int64 and must fit int32 (contract §2.10.8)."""
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowError(
            f"{op}: int32 accumulator overflow (range [{acc.min()}, {acc.max()}]); "
            "the integer result is not representable in int32"
        )
    return acc.astype(np.int32)


def _norm_axis(axis: int, ndim: int, op: str) -> int:
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"{op}: axis={axis!r} out of range for a {ndim}-D input")
    return int(axis) % max(ndim, 1)


def _expand_qparam(p: np.ndarray, x_shape, axis, block_size, arg: str, op: str) -> np.ndarray:
    """Broadcast a per-tensor, per-axis or blocked scale/zero point to ``x_shape`` (ONNX rules)."""
    nd = len(x_shape)
    if not isinstance(block_size, (int, np.integer)) or block_size < 0:
        raise ValueError(f"{op}: block_size={block_size!r} must be an int >= 0")
    if block_size == 0 and (p.ndim == 0 or p.shape == (1,)):
        return p.reshape(())
    ax = _norm_axis(axis, nd, op)
    if block_size == 0:
        if p.shape != (x_shape[ax],):
            raise ValueError(
                f"{op}: {arg} shape {p.shape} must be () or ({x_shape[ax]},) for axis={axis} "
                f"of input shape {tuple(x_shape)}"
            )
        return p.reshape([x_shape[ax] if i == ax else 1 for i in range(nd)])
    want = tuple(-(-d // block_size) if i == ax else d for i, d in enumerate(x_shape))
    if p.shape != want:
        raise ValueError(
            f"{op}: blocked {arg} shape {p.shape} must be {want} for block_size={block_size}, "
            f"axis={axis}, input shape {tuple(x_shape)}"
        )
    return np.repeat(p, block_size, axis=ax).take(range(x_shape[ax]), axis=ax)


def _output_qdtype(y_zero_point, output_dtype, op: str) -> str:
    """Quantized dtype from the zero point's dtype and/or ``output_dtype`` (default uint8)."""
    if output_dtype is not None:
        name = output_dtype if isinstance(output_dtype, str) else np.dtype(output_dtype).name
        if name not in CONTAINER:
            raise ValueError(
                f"{op}: output_dtype={output_dtype!r} not supported; valid: {list(CONTAINER)}"
            )
        if y_zero_point is not None and np.asarray(y_zero_point).dtype != CONTAINER[name]:
            raise ValueError(
                f"{op}: y_zero_point dtype {np.asarray(y_zero_point).dtype} conflicts with "
                f"output_dtype={name}"
            )
        return name
    if y_zero_point is None:
        return "uint8"
    name = np.asarray(y_zero_point).dtype.name
    if name not in ("uint8", "int8", "uint16", "int16"):
        raise ValueError(f"{op}: y_zero_point dtype {name} is not a quantized dtype")
    return name
