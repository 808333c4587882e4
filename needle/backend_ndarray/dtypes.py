"""The one table of NDArray dtypes, plus the fp32 <-> bfloat16 bit conversions."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DTypeInfo:
    """Facts about one dtype name.

    Attributes
    ----------
    name : str
        The dtype string used everywhere in needle (``"float32"``, ``"int8"``, ...).
    itemsize : int
        Bytes per element.
    storage : numpy.dtype
        The numpy dtype backends store and ``to_numpy`` returns (bfloat16: uint16 bits).
    kind : str
        ``"float"`` or ``"int"``.
    min, max : float | int
        Representable range (ints: saturation bounds; floats: largest finite magnitudes).
    """

    name: str
    itemsize: int
    storage: np.dtype
    kind: str
    min: float
    max: float

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind == "int"


def _float_info(name, storage, largest):
    storage = np.dtype(storage)
    return DTypeInfo(name, storage.itemsize, storage, "float", -largest, largest)


def _int_info(name):
    info = np.iinfo(name)
    return DTypeInfo(name, info.bits // 8, np.dtype(name), "int", int(info.min), int(info.max))


# bfloat16 keeps fp32's exponent, so its largest finite value is (2 - 2**-7) * 2**127.
_BF16_MAX = float((2 - 2**-7) * 2.0**127)

DTYPES = {
    "float32": _float_info("float32", np.float32, float(np.finfo(np.float32).max)),
    "float16": _float_info("float16", np.float16, float(np.finfo(np.float16).max)),
    "bfloat16": _float_info("bfloat16", np.uint16, _BF16_MAX),
    "int8": _int_info("int8"),
    "uint8": _int_info("uint8"),
    "int32": _int_info("int32"),
}

DEFAULT_DTYPE = "float32"
FLOAT_DTYPES = tuple(n for n, d in DTYPES.items() if d.is_float)
INT_DTYPES = tuple(n for n, d in DTYPES.items() if d.is_int)


def check_dtype(name) -> str:
    """Return ``name`` as a dtype string, or raise ValueError listing the valid names.

    numpy dtypes and ``numpy.float32``-style types are accepted when they name a table entry.
    """
    key = _dtype_key(name)
    if key not in DTYPES:
        valid = ", ".join(DTYPES)
        raise ValueError(f"unknown dtype {name!r}; valid dtypes: {valid}")
    return key


def _dtype_key(name):
    if isinstance(name, str):
        return name
    try:
        return np.dtype(name).name
    except TypeError:
        return repr(name)


def dtype_info(name) -> DTypeInfo:
    """The :class:`DTypeInfo` of a dtype name (validated with :func:`check_dtype`)."""
    return DTYPES[check_dtype(name)]


def is_float(name) -> bool:
    """True for float32, float16 and bfloat16."""
    return dtype_info(name).is_float


def is_int(name) -> bool:
    """True for int8, uint8 and int32."""
    return dtype_info(name).is_int


def fp32_to_bf16_bits(values) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest, ties to even) and return the uint16 bits.

    NaN stays NaN (quiet bit set, sign kept); values past the bf16 range become +-inf.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds the dropped half to nearest even.
    lowest_kept = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = (bits + np.uint32(0x7FFF) + lowest_kept) >> np.uint32(16)
    nan_bits = (bits >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(np.isnan(values), nan_bits, rounded).astype(np.uint16)


def bf16_bits_to_fp32(bits) -> np.ndarray:
    """Exact widening of bfloat16 bits (uint16) to float32 values."""
    wide = np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return wide.view(np.float32)


def fp64_to_bf16_bits(values) -> np.ndarray:
    """Round float64 values straight to bfloat16 bits, without double rounding.

    float64 -> float32 is done with round-to-odd (truncate, then set the last bit when inexact),
    which keeps enough information for the final round-to-nearest-even to be correct.
    """
    wide = np.asarray(values, dtype=np.float64)
    narrow = wide.astype(np.float32)
    with np.errstate(invalid="ignore"):
        overshoot = np.abs(narrow.astype(np.float64)) > np.abs(wide)
    bits = narrow.view(np.uint32).copy()
    finite = np.isfinite(narrow)
    bits[overshoot & finite] -= np.uint32(1)
    inexact = (bits.view(np.float32).astype(np.float64) != wide) & finite
    bits[inexact] |= np.uint32(1)
    return fp32_to_bf16_bits(bits.view(np.float32))


def to_storage(values, dtype) -> np.ndarray:
    """Convert numeric values (any numpy dtype) to the storage array of ``dtype``.

    The contract's astype rules: float -> int rounds half to even, saturates, NaN -> 0;
    int -> int saturates; float -> float16/bfloat16 rounds to nearest even (overflow -> inf);
    int -> float is exact where representable, else nearest even. bfloat16 comes back as bits.
    """
    info = dtype_info(dtype)
    values = np.asarray(values)
    if info.is_int:
        return _to_int_storage(values, info)
    if info.name == "bfloat16":
        if values.dtype.kind == "f" and values.dtype.itemsize <= 4:
            return fp32_to_bf16_bits(values.astype(np.float32))
        return fp64_to_bf16_bits(values.astype(np.float64))
    if values.dtype.kind in "iu":
        # int -> float64 is exact for our int dtypes; numpy then rounds once to nearest even.
        values = values.astype(np.float64)
    with np.errstate(over="ignore"):
        return values.astype(info.storage)


def _to_int_storage(values, info):
    if values.dtype.kind in "iub":
        return np.clip(values.astype(np.int64), info.min, info.max).astype(info.storage)
    with np.errstate(invalid="ignore"):
        rounded = np.rint(values.astype(np.float64))
        rounded = np.nan_to_num(np.clip(rounded, info.min, info.max), nan=0.0)
    return rounded.astype(info.storage)
