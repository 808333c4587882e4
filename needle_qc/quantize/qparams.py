"""Integer ranges and (scale, zero point) selection from a real range (contract §2.4, §2.10)."""
from __future__ import annotations

import numpy as np

# (qmin, qmax) of the full range of every integer type we quantize to.
_FULL_RANGES = {
    "uint8": (0, 255),
    "int8": (-128, 127),
    "uint16": (0, 65535),
    "int16": (-32768, 32767),
    "uint4": (0, 15),
    "int4": (-8, 7),
}
QUANT_DTYPES = tuple(_FULL_RANGES)
# reduce_range: 7-bit activations inside the 8-bit type (torch.ao / ORT), so that a u8 x s8 pair
# sum, <= 127 * 2 * 128 = 32512, never saturates AVX2's int16 vpmaddubsw.
_REDUCED_RANGES = {"uint8": (0, 127), "int8": (-64, 63)}

# numpy container used to hold each quantized dtype (int4/uint4 are stored unpacked, one per byte).
CONTAINER = {
    "uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16,
    "uint4": np.uint8, "int4": np.int8,
}

_FP32_TINY = float(np.finfo(np.float32).tiny)


def check_dtype(dtype, arg: str = "dtype") -> str:
    """Return the canonical name of a quantized dtype or raise ValueError naming ``arg``."""
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in _FULL_RANGES:
        raise ValueError(f"{arg}={dtype!r} is not a quantized dtype; valid: {list(QUANT_DTYPES)}")
    return name


def qrange(dtype, symmetric: bool = False, narrow: bool | None = None,
           reduce_range: bool = False) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of a quantized dtype.

    Parameters
    ----------
    dtype : str or numpy dtype
        One of ``uint8, int8, uint16, int16, uint4, int4``.
    symmetric : bool
        Symmetric quantization. For signed types this drops the most negative value by default
        (int8 -> [-127, 127], int4 -> [-7, 7]) so the range is sign-balanced (TFLite/TensorRT).
    narrow : bool or None
        Force (True) or forbid (False) dropping the lowest value; None means ``symmetric and
        signed``. Narrowing an unsigned type drops 0 (uint8 -> [1, 255], uint4 -> [1, 15]), the
        sign-balanced range around the symmetric zero point 128 / 8 that symmetric weights use
        (:func:`~needle_qc.quantize.lowbit.quantize_weight`), so ``+amax`` never clips.
    reduce_range : bool
        The 7-bit range inside an 8-bit type: uint8 -> [0, 127], int8 -> [-64, 63].
    """
    name = check_dtype(dtype)
    if reduce_range and name not in _REDUCED_RANGES:
        raise ValueError(f"reduce_range applies to uint8/int8, not {name}")
    qmin, qmax = (_REDUCED_RANGES if reduce_range else _FULL_RANGES)[name]
    if narrow is None:
        narrow = symmetric and qmin < 0
    if narrow:
        qmin += 1
    return qmin, qmax


def range_qparams(dtype, reduce_range: bool) -> dict:
    """The ``qmin``/``qmax`` entries a value's qparams carry when its range is narrower than its
    type (reduce_range); ``{}`` for the full range, which the type already says."""
    if not reduce_range:
        return {}
    qmin, qmax = qrange(dtype, reduce_range=True)
    return {"qmin": qmin, "qmax": qmax}


def value_qrange(dtype, qparams=None) -> tuple[int, int]:
    """``(qmin, qmax)`` a quantized value holds: its qparams' ``qmin``/``qmax`` when they carry
    them (every op writing such a value clamps to them), else its type's full range."""
    lo, hi = qrange(dtype)
    qp = qparams or {}
    return int(qp.get("qmin", lo)), int(qp.get("qmax", hi))


def choose_qparams(rmin, rmax, dtype="uint8", symmetric: bool = False, narrow: bool | None = None,
                   reduce_range: bool = False):
    """Scale and zero point covering ``[rmin, rmax]`` (scalars or per-channel arrays).

    The range is first extended to include 0 so that real 0 is exact. Asymmetric:
    ``s = fp32(fp32(rmax - rmin) / (qmax - qmin))``, ``z = clamp(rint(qmin - fp32(rmin / s)))``.
    Symmetric: ``s = fp32(fp32(2 * max(|rmin|, |rmax|)) / (qmax - qmin))``,
    ``z = rint((qmin + qmax) / 2)`` (0 for signed, 128 for uint8, 8 for uint4). Only a narrow
    range (``narrow=True``, or signed) is sign-balanced: uint4 ``[1, 15]`` gives ``s = amax / 7``,
    while the full ``[0, 15]`` gives ``s = 2 * amax / 15`` and ``+amax`` lands half a step past
    15 (clipped; PyTorch's symmetric quint8 activations behave the same way).
    Degenerate ranges (``rmax == rmin`` after extension, or ``s`` below the smallest normal fp32)
    give ``s = 1, z = 0`` (contract §2.10.6). ``reduce_range`` takes ``[qmin, qmax]`` from
    :func:`qrange` with it (uint8 [0, 127]).

    Returns
    -------
    scale : np.float32 or np.ndarray[float32]
    zero_point : integer scalar or array in the container dtype of ``dtype``
    """
    name = check_dtype(dtype)
    qmin, qmax = qrange(name, symmetric, narrow, reduce_range)
    lo = np.minimum(np.asarray(rmin, dtype=np.float32), np.float32(0))
    hi = np.maximum(np.asarray(rmax, dtype=np.float32), np.float32(0))
    if lo.shape != hi.shape:
        raise ValueError(f"choose_qparams: rmin shape {lo.shape} != rmax shape {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("choose_qparams: rmin/rmax must be finite (got NaN or Inf)")
    levels = np.float32(qmax - qmin)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if symmetric:
            amax = np.maximum(-lo, hi)
            scale = ((np.float32(2) * amax) / levels).astype(np.float32)
            zp = np.full(scale.shape, np.rint((qmin + qmax) / 2.0), dtype=np.float64)
        else:
            scale = ((hi - lo) / levels).astype(np.float32)
            zp = np.clip(np.rint(np.float32(qmin) - (lo / scale).astype(np.float32)), qmin, qmax)
    if not np.all(np.isfinite(scale)):
        raise ValueError("choose_qparams: range too wide, the fp32 scale overflows to inf")
    degenerate = ~(scale >= np.float32(_FP32_TINY))
    scale = np.where(degenerate, np.float32(1), scale).astype(np.float32)
    zp = np.where(degenerate, 0, zp).astype(CONTAINER[name])
    if scale.ndim == 0:
        return np.float32(scale), zp[()]
    return scale, zp
