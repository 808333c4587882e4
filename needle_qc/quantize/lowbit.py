"""Low-bit weight formats: int4 nibble packing, weight quantization records, fp16/bf16 casts."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from needle_qc.quantize.qparams import CONTAINER, check_dtype, choose_qparams, qrange
from needle_qc.quantize.reference import quantize_linear

GRANULARITIES = ("per_tensor", "per_channel", "per_group")
_FP16_MAX = 65504.0


# ---------------------------------------------------------------------------------------------
# int4 packing: two values per byte, element 2i in the low nibble, 2i+1 in the high nibble (ONNX)


def pack_int4(q, axis: int = -1) -> np.ndarray:
    """Pack int4 [-8, 7] (int8 array) or uint4 [0, 15] (uint8 array) two per byte along ``axis``.

    Element ``2i`` goes to the low nibble of byte ``i``, ``2i+1`` to the high nibble; an odd
    length is padded with a zero nibble. Returns uint8 with ``ceil(n / 2)`` along ``axis``.
    """
    arr = np.asarray(q)
    if arr.dtype == np.int8:
        lo, hi = qrange("int4")
    elif arr.dtype == np.uint8:
        lo, hi = qrange("uint4")
    else:
        raise ValueError(f"pack_int4: q must be int8 (int4) or uint8 (uint4), got {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("pack_int4: q must be at least 1-D")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"pack_int4: values must lie in [{lo}, {hi}], got "
                         f"[{arr.min()}, {arr.max()}]")
    moved = np.moveaxis(arr, axis, -1).astype(np.uint8) & 0x0F
    if moved.shape[-1] % 2:
        moved = np.concatenate([moved, np.zeros(moved.shape[:-1] + (1,), np.uint8)], axis=-1)
    packed = moved[..., 0::2] | (moved[..., 1::2] << 4)
    return np.ascontiguousarray(np.moveaxis(packed, -1, axis))


def unpack_int4(packed, length: int, axis: int = -1, signed: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_int4`: ``length`` values along ``axis`` (int8 if signed, else uint8).
    """
    arr = np.asarray(packed)
    if arr.dtype != np.uint8:
        raise ValueError(f"unpack_int4: packed must be uint8, got {arr.dtype}")
    moved = np.moveaxis(arr, axis, -1)
    if not 0 <= length <= 2 * moved.shape[-1] or (length + 1) // 2 != moved.shape[-1]:
        raise ValueError(f"unpack_int4: length={length} does not match {moved.shape[-1]} bytes")
    nib = np.stack([moved & 0x0F, moved >> 4], axis=-1).reshape(moved.shape[:-1] + (-1,))
    nib = nib[..., :length]
    out = nib.astype(np.int8) - ((nib >= 8) * 16).astype(np.int8) if signed else nib
    return np.ascontiguousarray(np.moveaxis(out, -1, axis))


# ---------------------------------------------------------------------------------------------
# weight quantization record


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """A quantized weight and its metadata.

    ``q`` holds unpacked integers (int4 values one per byte); ``scale``/``zp`` are per tensor
    (shape ()), per channel (1-D along ``axis``) or per group (same rank as ``q``, ``axis`` is the
    blocked axis with ``ceil(D / group_size)`` entries). ``dequantize()`` inverts it.
    """

    q: np.ndarray
    scale: np.ndarray
    zp: np.ndarray
    axis: int | None
    group_size: int
    dtype: str
    granularity: str
    symmetric: bool

    @property
    def bits(self) -> int:
        if self.dtype in ("int4", "uint4"):
            return 4
        return 8 * np.dtype(CONTAINER[self.dtype]).itemsize

    @property
    def nbytes_data(self) -> int:
        """Bytes of the integer payload as stored (int4 packed two per byte along the last axis)."""
        if self.bits == 4:
            return pack_int4(self.q.reshape(-1, self.q.shape[-1]) if self.q.ndim else
                             self.q.reshape(1, 1)).nbytes
        return int(self.q.nbytes)

    def packed(self, axis: int = -1) -> np.ndarray:
        """The 4-bit payload packed two per byte along ``axis`` (see :func:`pack_int4`)."""
        if self.bits != 4:
            raise ValueError(f"QuantizedWeight.packed: dtype {self.dtype} is not 4-bit")
        return pack_int4(self.q, axis=axis)

    @property
    def nbytes_meta(self) -> int:
        """fp32 scales, plus zero points at the weight's bit width when not symmetric."""
        meta = 4 * int(np.size(self.scale))
        if not self.symmetric:
            meta += -(-int(np.size(self.zp)) * self.bits // 8)
        return meta

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * (self.nbytes_data + self.nbytes_meta) / max(int(self.q.size), 1)

    def dequantize(self) -> np.ndarray:
        """float32 weights ``(q - zp) * scale`` broadcast along the record's granularity."""
        s, z = self.scale, self.zp.astype(np.int64)
        if self.granularity == "per_group":
            s = np.repeat(s, self.group_size, axis=self.axis).take(
                range(self.q.shape[self.axis]), axis=self.axis)
            z = np.repeat(z, self.group_size, axis=self.axis).take(
                range(self.q.shape[self.axis]), axis=self.axis)
        elif self.granularity == "per_channel":
            shape = [1] * self.q.ndim
            shape[self.axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        return ((self.q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def quantize_weight(w, dtype: str = "int8", granularity: str | None = None, axis: int | None = None,
                    group_size: int = 32, symmetric: bool = True) -> QuantizedWeight:
    """Quantize a float weight with min/max qparams.

    Parameters
    ----------
    w : np.ndarray (float)
        Needle layout: Linear ``[K, N]``, Conv ``[kH, kW, C_in, C_out]`` (output channel last).
    dtype : {"int8", "uint8", "int4", "uint4"}
    granularity : {"per_tensor", "per_channel", "per_group"} or None
        None: per_channel for 8-bit, per_group for 4-bit.
    axis : int or None
        per_channel: the output-channel axis (default -1). per_group: the blocked (reduction)
        axis (default -2, i.e. K for ``[K, N]``, C_in for conv).
    group_size : int
        Block length along ``axis`` for per_group.
    symmetric : bool
        Symmetric or asymmetric. Symmetric weights use the narrow, sign-balanced range (int8
        [-127, 127], int4 [-7, 7], zp 0; uint8 [1, 255], zp 128; uint4 [1, 15], zp 8), so
        ``s = amax / 127`` (8-bit) or ``amax / 7`` (4-bit) and ``+-amax`` are both exact.
    """
    arr = np.asarray(w)
    if arr.dtype.kind != "f":
        raise ValueError(f"quantize_weight: w must be floating, got {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"quantize_weight: w has {int((~np.isfinite(arr)).sum())} NaN/Inf values")
    name = check_dtype(dtype)
    if name not in ("int8", "uint8", "int4", "uint4"):
        raise ValueError(f"quantize_weight: dtype={dtype!r}; valid: int8, uint8, int4, uint4")
    if granularity is None:
        granularity = "per_group" if name in ("int4", "uint4") else "per_channel"
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"quantize_weight: granularity={granularity!r}; valid: {list(GRANULARITIES)}")
    # symmetric weights are always narrowed: unsigned too, else +amax clips half a step
    narrow = bool(symmetric)
    qmin, qmax = qrange(name, symmetric, narrow)
    if granularity == "per_tensor":
        s, z = choose_qparams(arr.min(initial=0), arr.max(initial=0), name, symmetric, narrow)
        q = _quant(arr, s, z, None, 0, name, qmin, qmax)
        return QuantizedWeight(q, np.asarray(s), np.asarray(z), None, 0, name, granularity,
                               symmetric)
    ax = _axis(arr, -1 if axis is None and granularity == "per_channel" else
               (-2 if axis is None else axis))
    if granularity == "per_channel":
        red = tuple(i for i in range(arr.ndim) if i != ax)
        s, z = choose_qparams(arr.min(axis=red, initial=0), arr.max(axis=red, initial=0), name,
                              symmetric, narrow)
        q = _quant(arr, s, z, ax, 0, name, qmin, qmax)
        return QuantizedWeight(q, s, z, ax, 0, name, granularity, symmetric)
    if not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise ValueError(f"quantize_weight: group_size={group_size!r} must be an int >= 1")
    lo, hi = _group_minmax(arr, ax, int(group_size))
    s, z = choose_qparams(lo, hi, name, symmetric, narrow)
    q = _quant(arr, s, z, ax, int(group_size), name, qmin, qmax)
    return QuantizedWeight(q, s, z, ax, int(group_size), name, granularity, symmetric)


def _axis(arr: np.ndarray, axis: int) -> int:
    if not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"quantize_weight: axis={axis} out of range for shape {arr.shape}")
    return axis % arr.ndim


def _group_minmax(arr: np.ndarray, ax: int, g: int):
    d = arr.shape[ax]
    pad = (-d) % g
    # pad with zeros: the range is extended to include 0 anyway, so padding never changes it
    padded = np.pad(arr, [(0, pad) if i == ax else (0, 0) for i in range(arr.ndim)])
    shape = list(padded.shape)
    shape[ax:ax + 1] = [shape[ax] // g, g]
    blocks = padded.reshape(shape)
    return blocks.min(axis=ax + 1), blocks.max(axis=ax + 1)


def _quant(arr, s, z, ax, block, name, qmin, qmax) -> np.ndarray:
    container = CONTAINER[name]
    q = quantize_linear(arr.astype(np.float32), s, np.asarray(z, container),
                        axis=0 if ax is None else ax, block_size=block, output_dtype=name)
    # Symmetric ranges are narrowed ([-127, 127]); quantize_linear clamps to the full range.
    # Unsigned ones only narrow the scale: the clamp stays full so that a degenerate (all-zero)
    # channel keeps q = z = 0 (contract §2.10.6), and amax / s never rounds past the narrow end.
    if qmin > 0:
        qmin = 0
    return np.clip(q, qmin, qmax).astype(container)


# ---------------------------------------------------------------------------------------------
# fp16 / bf16 weight casts (IEEE round to nearest even)


def cast_fp16(w) -> tuple[np.ndarray, dict]:
    """Round float weights to float16 (nearest even) and count what the cast lost.

    Returns ``(h, stats)`` with ``stats = {"overflow": finite values that became +-inf
    (|w| >= 65520), "flushed_to_zero": nonzero values that became 0, "subnormal": nonzero
    results that are fp16 subnormals (|h| < 2**-14), "clipped_to_max": finite |w| > 65504 that
    rounded down to +-65504}``.
    """
    arr = np.asarray(w)
    if arr.dtype.kind != "f":
        raise ValueError(f"cast_fp16: w must be floating, got {arr.dtype}")
    with np.errstate(over="ignore"):
        h = arr.astype(np.float16)
    finite, nonzero = np.isfinite(arr), arr != 0
    stats = {
        "overflow": int(np.sum(finite & np.isinf(h))),
        "clipped_to_max": int(np.sum(finite & (np.abs(arr) > _FP16_MAX) & np.isfinite(h))),
        "flushed_to_zero": int(np.sum(nonzero & (h == 0))),
        "subnormal": int(np.sum((h != 0) & (np.abs(h) < np.float16(2.0**-14)))),
    }
    return h, stats


def cast_bf16(w) -> tuple[np.ndarray, dict]:
    """Round float weights to bfloat16 bits (uint16, nearest even; NaN stays a quiet NaN).

    Returns ``(bits, stats)`` with the same stats keys as :func:`cast_fp16` (bf16 shares fp32's
    exponent range: overflow only above ~3.39e38, subnormals are fp32 subnormals).
    """
    arr = np.asarray(w)
    if arr.dtype.kind != "f":
        raise ValueError(f"cast_bf16: w must be floating, got {arr.dtype}")
    f32 = arr.astype(np.float32)
    u = f32.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f32)
    bits = np.where(nan, ((u >> 16).astype(np.uint16) | np.uint16(0x0040)), rounded)
    bits = bits.astype(np.uint16)
    back = bf16_to_float32(bits)
    finite, nonzero = np.isfinite(f32), f32 != 0
    stats = {
        "overflow": int(np.sum(finite & np.isinf(back))),
        "clipped_to_max": 0,
        "flushed_to_zero": int(np.sum(nonzero & (back == 0))),
        "subnormal": int(np.sum((back != 0) & (np.abs(back) < np.finfo(np.float32).tiny))),
    }
    return bits, stats


def bf16_to_float32(bits) -> np.ndarray:
    """Widen bfloat16 bits (uint16) to float32 exactly."""
    arr = np.asarray(bits)
    if arr.dtype != np.uint16:
        raise ValueError(f"bf16_to_float32: bits must be uint16, got {arr.dtype}")
    return (arr.astype(np.uint32) << 16).view(np.float32)
