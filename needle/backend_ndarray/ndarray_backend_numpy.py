"""NDArray backend in numpy: the whole backend contract (docs/backend-contract.md), all dtypes.

Floats of every width are computed in float32 and rounded once to the output dtype per op;
bfloat16 buffers hold the raw uint16 bits. Integer add/mul wrap around like numpy (two's
complement); integer matmul and reduce_sum accumulate in (wrapping) int32.
"""

import weakref

import numpy as np

from .dtypes import DEFAULT_DTYPE, bf16_bits_to_fp32, dtype_info, to_storage

__device_name__ = "numpy"

_MEMORY = {"current_bytes": 0, "peak_bytes": 0, "num_allocs": 0}


def _count_alloc(nbytes):
    _MEMORY["current_bytes"] += nbytes
    _MEMORY["num_allocs"] += 1
    _MEMORY["peak_bytes"] = max(_MEMORY["peak_bytes"], _MEMORY["current_bytes"])


def _count_free(nbytes):
    _MEMORY["current_bytes"] -= nbytes
    _MEMORY["num_allocs"] -= 1


def memory_stats():
    """Bytes of live ``Array`` buffers, their peak since the last reset, and how many are live."""
    return dict(_MEMORY)


def reset_peak_memory():
    """Set the peak to the current number of live bytes."""
    _MEMORY["peak_bytes"] = _MEMORY["current_bytes"]


class Array:
    """A flat buffer of ``size`` elements of ``dtype`` (storage in a numpy array)."""

    def __init__(self, size, dtype=DEFAULT_DTYPE):
        info = dtype_info(dtype)
        self.array = np.empty(int(size), dtype=info.storage)
        self.dtype = info.name
        self.itemsize = info.itemsize
        _count_alloc(self.array.nbytes)
        # finalize (not __del__) so the count is right even during interpreter shutdown.
        weakref.finalize(self, _count_free, self.array.nbytes)

    @property
    def size(self):
        return self.array.size

    @property
    def nbytes(self):
        return self.array.nbytes

    def ptr(self):
        return self.array.ctypes.data


def _strided(a, shape, strides, offset):
    item = a.array.itemsize
    return np.lib.stride_tricks.as_strided(
        a.array[offset:], tuple(shape), tuple(s * item for s in strides)
    )


def to_numpy(a, shape, strides, offset):
    """Zero-copy strided view of ``a`` in its storage dtype (bfloat16: uint16 bits)."""
    return _strided(a, shape, strides, offset)


def from_numpy(a, out):
    out.array[:] = a.reshape(-1)


# ---- conversions: every float op goes through float32 values ----------------------------------


def _values(a):
    """The values of ``a`` as float32 (floats) or the raw integers (ints)."""
    if a.dtype == "bfloat16":
        return bf16_bits_to_fp32(a.array)
    if a.dtype == "float16":
        return a.array.astype(np.float32)
    return a.array


def _store(out, values):
    out.array[:] = to_storage(values, out.dtype).reshape(-1)


def _wrap_int(values, out):
    """Integer results wrap to the out dtype (two's complement), as numpy arrays do."""
    out.array[:] = np.asarray(values).astype(np.int64).astype(out.array.dtype).reshape(-1)


# ---- fills and strided copies ------------------------------------------------------------------


def fill(out, val):
    out.array[:] = to_storage(np.array([val], dtype=np.float64), out.dtype)[0]


def compact(a, out, shape, strides, offset):
    # Copy straight into out's buffer (one strided pass; reshape(-1) would copy twice).
    out.array[: out.size].reshape(tuple(shape))[...] = _strided(a, shape, strides, offset)


def ewise_setitem(a, out, shape, strides, offset):
    _strided(out, shape, strides, offset)[...] = a.array[: int(np.prod(shape))].reshape(shape)


def scalar_setitem(size, val, out, shape, strides, offset):
    value = to_storage(np.array([val], np.float64), out.dtype)[0]
    _strided(out, shape, strides, offset)[...] = value


def astype(a, out):
    out.array[:] = to_storage(_values(a), out.dtype)


# ---- elementwise --------------------------------------------------------------------------------


def _ewise(fn, a, b, out):
    if dtype_info(out.dtype).is_int:
        return _wrap_int(fn(a.array.astype(np.int64), b.array.astype(np.int64)), out)
    with np.errstate(all="ignore"):
        _store(out, fn(_values(a), _values(b)))


def _scalar_op(fn, a, val, out):
    if dtype_info(out.dtype).is_int:
        return _wrap_int(fn(a.array.astype(np.int64), int(val)), out)
    with np.errstate(all="ignore"):
        _store(out, fn(_values(a), np.float32(val)))


def _unary(fn, a, out):
    # float64 then one rounding: numpy's SIMD float32 exp/log are off by up to ~2.5 ulp.
    with np.errstate(all="ignore"):
        _store(out, fn(_values(a).astype(np.float64)).astype(np.float32))


def ewise_add(a, b, out):
    _ewise(np.add, a, b, out)


def ewise_mul(a, b, out):
    _ewise(np.multiply, a, b, out)


def ewise_div(a, b, out):
    _ewise(np.divide, a, b, out)


def ewise_maximum(a, b, out):
    _ewise(np.maximum, a, b, out)


def ewise_eq(a, b, out):
    _ewise(np.equal, a, b, out)


def ewise_ge(a, b, out):
    _ewise(np.greater_equal, a, b, out)


def scalar_add(a, val, out):
    _scalar_op(np.add, a, val, out)


def scalar_mul(a, val, out):
    _scalar_op(np.multiply, a, val, out)


def scalar_div(a, val, out):
    _scalar_op(np.divide, a, val, out)


def scalar_power(a, val, out):
    _scalar_op(np.power, a, val, out)


def scalar_maximum(a, val, out):
    _scalar_op(np.maximum, a, val, out)


def scalar_eq(a, val, out):
    _scalar_op(np.equal, a, val, out)


def scalar_ge(a, val, out):
    _scalar_op(np.greater_equal, a, val, out)


def ewise_log(a, out):
    _unary(np.log, a, out)


def ewise_exp(a, out):
    _unary(np.exp, a, out)


def ewise_tanh(a, out):
    _unary(np.tanh, a, out)


# ---- matmul and reductions ----------------------------------------------------------------------


def matmul(a, b, out, m, n, p):
    """(m x n) @ (n x p). Floats: fp32 accumulation. Ints: int32 out, wrapping int32 sums."""
    if dtype_info(a.dtype).is_int:
        return _wrap_int(_int_matmul(a.array[: m * n], b.array[: n * p], m, n, p), out)
    _store(out, _values(a)[: m * n].reshape(m, n) @ _values(b)[: n * p].reshape(n, p))


def matmul_batched(a, b, out, count, m, n, p):
    """``count`` products a[i] (m x n) @ b[i] (n x p) -> out[i]; dtypes as :func:`matmul`."""
    if dtype_info(a.dtype).is_int:
        a3, b3 = a.array[: count * m * n], b.array[: count * n * p]
        parts = [_int_matmul(a3[i * m * n:(i + 1) * m * n], b3[i * n * p:(i + 1) * n * p], m, n, p)
                 for i in range(count)]
        flat = np.concatenate([x.reshape(-1) for x in parts]) if parts else np.zeros(0)
        return _wrap_int(flat, out)
    a3 = _values(a)[: count * m * n].reshape(count, m, n)
    _store(out, np.matmul(a3, _values(b)[: count * n * p].reshape(count, n, p)))


def _int_matmul(a, b, m, n, p):
    a, b = a.reshape(m, n), b.reshape(n, p)
    # float64 BLAS is exact while every partial sum stays below 2**53 (true for 8-bit inputs).
    if a.itemsize == 1 and n * 128 * 255 < 2**53:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64))
    return a.astype(np.int64) @ b.astype(np.int64)


def reduce_sum(a, out, reduce_size):
    """Sum contiguous blocks of ``reduce_size``. Ints sum into int32 (wrapping)."""
    if dtype_info(a.dtype).is_int:
        blocks = a.array[: out.size * reduce_size].astype(np.int64).reshape(-1, reduce_size)
        return _wrap_int(blocks.sum(axis=1), out)
    values = _values(a)[: out.size * reduce_size].reshape(-1, reduce_size)
    _store(out, values.sum(axis=1, dtype=np.float32))


def reduce_max(a, out, reduce_size):
    """Max of contiguous blocks of ``reduce_size``, same dtype as ``a``."""
    values = _values(a)[: out.size * reduce_size].reshape(-1, reduce_size)
    _store(out, values.max(axis=1))
