"""NDArray: an n-d strided view over a flat backend buffer, with dtypes and devices."""

import builtins
import operator
from functools import reduce

import numpy as np

from . import ndarray_backend_numpy
from .dtypes import DEFAULT_DTYPE, DTYPES, bf16_bits_to_fp32, check_dtype, dtype_info, to_storage

try:
    from . import ndarray_backend_cpu
except ImportError:  # the C++ module is optional (not built yet, or built without it)
    ndarray_backend_cpu = None


def prod(x):
    """Product of an iterable of ints (1 for an empty one)."""
    return reduce(operator.mul, x, 1)


class BackendDevice:
    """A device: a name plus the backend module that implements the contract.

    Attribute access falls through to the module, so ``device.ewise_add`` and
    ``hasattr(device, "matmul_tiled")`` work. ``repr`` is ``name + "()"`` (e.g. ``cpu()``).
    """

    def __init__(self, name, mod):
        self.name = name
        self.mod = mod

    def __eq__(self, other):
        return isinstance(other, BackendDevice) and self.name == other.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return self.name + "()"

    def __getattr__(self, name):
        mod = self.__dict__.get("mod")
        if mod is None:
            device = self.__dict__.get("name")
            raise AttributeError(f"device {device}() is not enabled: no {name!r}")
        return getattr(mod, name)

    def enabled(self):
        """True when the backend module is importable (and, for cuda, a GPU is visible)."""
        return self.mod is not None

    def memory_stats(self):
        """``{"current_bytes", "peak_bytes", "num_allocs"}`` of this device's live buffers."""
        return self.__getattr__("memory_stats")()

    def reset_peak_memory(self):
        """Set this device's peak byte count to its current byte count."""
        return self.__getattr__("reset_peak_memory")()

    def randn(self, *shape, dtype=DEFAULT_DTYPE):
        """Standard normal samples from numpy's global RNG."""
        return array(np.random.randn(*shape).astype(np.float32), dtype=dtype, device=self)

    def rand(self, *shape, dtype=DEFAULT_DTYPE):
        """Uniform [0, 1) samples from numpy's global RNG."""
        return array(np.random.rand(*shape).astype(np.float32), dtype=dtype, device=self)

    def one_hot(self, n, i, dtype=DEFAULT_DTYPE):
        """Rows of the n x n identity selected by the integer indices ``i``."""
        return array(np.eye(n, dtype=np.float32)[np.asarray(i)], dtype=dtype, device=self)

    def empty(self, shape, dtype=DEFAULT_DTYPE):
        return NDArray.make(tuple(shape), device=self, dtype=dtype)

    def full(self, shape, fill_value, dtype=DEFAULT_DTYPE):
        arr = self.empty(shape, dtype)
        arr.fill(fill_value)
        return arr


def cpu_numpy():
    """The numpy backend (always available)."""
    return BackendDevice("cpu_numpy", ndarray_backend_numpy)


def cpu():
    """The C++ backend; ``enabled()`` is False when the module was not built."""
    return BackendDevice("cpu", ndarray_backend_cpu)


_CUDA_MODULE = []  # [module or None] once imported: cuda() imports lazily, on first use


def _cuda_module():
    if not _CUDA_MODULE:
        _CUDA_MODULE.append(_import_cuda_if_gpu())
    return _CUDA_MODULE[0]


def _import_cuda_if_gpu():
    try:
        from . import ndarray_backend_cuda as mod
    except ImportError:
        return None
    try:
        count = int(mod.device_count())
    except Exception:  # a missing attribute or a driver error both mean "no usable GPU"
        count = 0
    return mod if count > 0 else None


def cuda():
    """The CUDA backend; ``enabled()`` is False without the module or without a visible GPU."""
    return BackendDevice("cuda", _cuda_module())


def default_device():
    return cpu_numpy()


def all_devices():
    return [cpu(), cuda(), cpu_numpy()]


def _default_dtype_of(np_array):
    name = np_array.dtype.name
    return name if name in DTYPES else DEFAULT_DTYPE


def _check_same_dtype(op, a, b):
    if a.dtype != b.dtype:
        raise TypeError(f"dtype mismatch in {op}: {a.dtype} vs {b.dtype}")


def _check_same_device(op, a, b):
    if a.device != b.device:
        raise ValueError(f"device mismatch in {op}: {a.device} vs {b.device}")


def _check_float(op, dtype):
    if not dtype_info(dtype).is_float:
        raise TypeError(f"{op} is not defined for integer dtype {dtype}")


def _check_scalar(op, dtype, val):
    if isinstance(val, (np.ndarray, list, tuple)):
        raise TypeError(f"{op}: expected an NDArray or a scalar, got {type(val).__name__}")
    if dtype_info(dtype).is_int and not float(val).is_integer():
        raise TypeError(f"{op} of a {dtype} array with the non-integral scalar {val!r}")
    return int(val) if dtype_info(dtype).is_int else float(val)


class NDArray:
    """An n-d array: shape, strides and offset (in elements) over a device buffer of one dtype.

    Views (``reshape``, ``permute``, ``broadcast_to``, ``__getitem__``) share the buffer.
    Float16/bfloat16 math runs in float32 and is rounded once per op. ``numpy()`` of a bfloat16
    array returns float32 values; the raw uint16 bits are ``storage_numpy()``.
    """

    def __init__(self, other, device=None, dtype=None):
        if isinstance(other, NDArray):
            src = other.to(device or other.device)
            copy = src.astype(dtype or src.dtype)
            self._init(copy if copy is not other else other.compact_copy())
            return
        values = other if isinstance(other, np.ndarray) else np.array(other)
        dtype = check_dtype(dtype or _default_dtype_of(values))
        storage = np.ascontiguousarray(to_storage(values, dtype))
        arr = NDArray.make(values.shape, device=device or default_device(), dtype=dtype)
        arr.device.from_numpy(storage, arr._handle)
        self._init(arr)

    def _init(self, other):
        self._shape = other._shape
        self._strides = other._strides
        self._offset = other._offset
        self._device = other._device
        self._handle = other._handle

    @staticmethod
    def compact_strides(shape):
        """Row-major strides, in elements."""
        stride, res = 1, []
        for dim in reversed(shape):
            res.append(stride)
            stride *= dim
        return tuple(reversed(res))

    @staticmethod
    def make(shape, strides=None, device=None, handle=None, offset=0, dtype=DEFAULT_DTYPE):
        """A new NDArray over ``handle`` (a fresh buffer of ``dtype`` when None)."""
        arr = NDArray.__new__(NDArray)
        arr._shape = tuple(int(s) for s in shape)
        arr._strides = NDArray.compact_strides(arr._shape) if strides is None else tuple(strides)
        arr._offset = offset
        arr._device = device if device is not None else default_device()
        if handle is None:
            handle = arr._device.Array(prod(arr._shape), check_dtype(dtype))
        arr._handle = handle
        return arr

    # ---- properties -----------------------------------------------------------------------------

    @property
    def shape(self):
        return self._shape

    @property
    def strides(self):
        return self._strides

    @property
    def device(self):
        return self._device

    @property
    def dtype(self):
        return self._handle.dtype

    @property
    def ndim(self):
        return len(self._shape)

    @property
    def size(self):
        return prod(self._shape)

    @property
    def nbytes(self):
        """Bytes of the elements this array shows (``size * itemsize``)."""
        return self.size * dtype_info(self.dtype).itemsize

    @property
    def flat(self):
        return self.reshape((self.size,))

    def __repr__(self):
        dtype = "" if self.dtype == DEFAULT_DTYPE else f", dtype={self.dtype}"
        return f"NDArray({self.numpy()}, device={self.device}{dtype})"

    def __str__(self):
        return self.numpy().__str__()

    # ---- memory, conversion, copies --------------------------------------------------------------

    def fill(self, value):
        """Set every element of the buffer to ``value`` (converted with the astype rules)."""
        self._device.fill(self._handle, value)

    def to(self, device):
        """The same values on ``device`` (self when already there); bits are kept exactly."""
        if device == self.device:
            return self
        out = NDArray.make(self.shape, device=device, dtype=self.dtype)
        device.from_numpy(np.ascontiguousarray(self.storage_numpy()), out._handle)
        return out

    def storage_numpy(self):
        """The elements in their storage dtype (bfloat16: raw uint16 bits); zero-copy on CPU."""
        return self._device.to_numpy(self._handle, self._shape, self._strides, self._offset)

    def numpy(self):
        """The values as a numpy array; bfloat16 is widened to float32 values."""
        raw = self.storage_numpy()
        return bf16_bits_to_fp32(raw) if self.dtype == "bfloat16" else raw

    def astype(self, dtype):
        """Convert to ``dtype`` (self when unchanged): float -> int rounds half to even and
        saturates (NaN -> 0); float narrowing rounds to nearest even."""
        dtype = check_dtype(dtype)
        if dtype == self.dtype:
            return self
        out = NDArray.make(self.shape, device=self.device, dtype=dtype)
        self._device.astype(self.compact()._handle, out._handle)
        return out

    def is_compact(self):
        return (
            self._strides == self.compact_strides(self._shape)
            and prod(self._shape) == self._handle.size
            and self._offset == 0
        )

    def compact(self):
        """Self when compact, else a compact copy."""
        if self.is_compact():
            return self
        return self.compact_copy()

    def compact_copy(self):
        out = NDArray.make(self.shape, device=self.device, dtype=self.dtype)
        self._device.compact(self._handle, out._handle, self._shape, self._strides, self._offset)
        return out

    def as_strided(self, shape, strides):
        """A view with new shape and strides (same buffer and offset)."""
        if len(shape) != len(strides):
            raise ValueError(f"as_strided: shape {tuple(shape)} vs strides {tuple(strides)}")
        return NDArray.make(shape, strides, self._device, self._handle, self._offset)

    # ---- views ----------------------------------------------------------------------------------

    def reshape(self, new_shape):
        """A view with ``new_shape`` (one entry may be -1). Needs a compact array."""
        new_shape = _resolve_shape(tuple(new_shape), self.size, self.shape)
        if not self.is_compact():
            raise ValueError(f"reshape of a non-compact array {self.shape}: call compact() first")
        return NDArray.make(new_shape, device=self.device, handle=self._handle)

    def permute(self, new_axes):
        """A view with the axes reordered (``new_axes`` is a permutation of range(ndim))."""
        new_axes = tuple(a % self.ndim if self.ndim else a for a in new_axes)
        if sorted(new_axes) != list(range(self.ndim)):
            raise ValueError(f"permute: {new_axes} is not a permutation of axes of {self.shape}")
        shape = tuple(self._shape[a] for a in new_axes)
        strides = tuple(self._strides[a] for a in new_axes)
        return self.as_strided(shape, strides)

    def broadcast_to(self, new_shape):
        """A view broadcast to ``new_shape`` (numpy rules; broadcast dims get stride 0)."""
        new_shape = tuple(new_shape)
        lead = len(new_shape) - self.ndim
        if lead < 0:
            raise ValueError(f"cannot broadcast shape {self.shape} to {new_shape}")
        strides = [0] * lead
        for dim, old, stride in zip(new_shape[lead:], self._shape, self._strides):
            if old != dim and old != 1:
                raise ValueError(f"cannot broadcast shape {self.shape} to {new_shape}")
            strides.append(stride if old == dim else 0)
        return self.as_strided(new_shape, tuple(strides))

    def __getitem__(self, idxs):
        """Basic slicing view; ints keep their axis (size 1), so the rank never drops."""
        slices = _normalize_index(idxs, self._shape)
        shape = tuple(len(range(s.start, s.stop, s.step)) for s in slices)
        strides = tuple(st * s.step for st, s in zip(self._strides, slices))
        offset = self._offset + builtins.sum(st * s.start for st, s in zip(self._strides, slices))
        return NDArray.make(shape, strides, self._device, self._handle, offset)

    def __setitem__(self, idxs, other):
        """Write ``other`` (an NDArray of the same dtype, or a scalar) into a view, in place."""
        view = self[idxs]
        if not isinstance(other, NDArray):
            val = _check_scalar("setitem", self.dtype, other)
            self._device.scalar_setitem(
                view.size, val, view._handle, view.shape, view.strides, view._offset
            )
            return
        _check_same_dtype("setitem", self, other)
        _check_same_device("setitem", self, other)
        if _without_ones(other.shape) != _without_ones(view.shape):
            # Same elements in the same row-major order is fine; otherwise broadcast or fail.
            other = other.broadcast_to(view.shape)
        src = other.compact()
        self._device.ewise_setitem(
            src._handle, view._handle, view.shape, view.strides, view._offset
        )

    # ---- elementwise ----------------------------------------------------------------------------

    def _binary(self, other, ewise, scalar, op):
        out = NDArray.make(self.shape, device=self.device, dtype=self.dtype)
        if isinstance(other, NDArray):
            _check_same_dtype(op, self, other)
            _check_same_device(op, self, other)
            if self.shape != other.shape:
                raise ValueError(f"shape mismatch in {op}: {self.shape} vs {other.shape}")
            fn = getattr(self._device, ewise)
            fn(self.compact()._handle, other.compact()._handle, out._handle)
        else:
            val = _check_scalar(op, self.dtype, other)
            getattr(self._device, scalar)(self.compact()._handle, val, out._handle)
        return out

    def _unary(self, name, op):
        _check_float(op, self.dtype)
        out = NDArray.make(self.shape, device=self.device, dtype=self.dtype)
        getattr(self._device, name)(self.compact()._handle, out._handle)
        return out

    def __add__(self, other):
        return self._binary(other, "ewise_add", "scalar_add", "add")

    __radd__ = __add__

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __mul__(self, other):
        return self._binary(other, "ewise_mul", "scalar_mul", "multiply")

    __rmul__ = __mul__

    def __truediv__(self, other):
        _check_float("divide", self.dtype)
        return self._binary(other, "ewise_div", "scalar_div", "divide")

    def __rtruediv__(self, other):
        _check_float("divide", self.dtype)
        return self._device.full(self.shape, other, self.dtype) / self

    def __neg__(self):
        return self * (-1)

    def __pow__(self, other):
        _check_float("power", self.dtype)
        if isinstance(other, NDArray):
            raise TypeError("power: NDArray ** NDArray is not supported, use a scalar exponent")
        return self._binary(other, None, "scalar_power", "power")

    def maximum(self, other):
        return self._binary(other, "ewise_maximum", "scalar_maximum", "maximum")

    def __eq__(self, other):
        return self._binary(other, "ewise_eq", "scalar_eq", "eq")

    def __ge__(self, other):
        return self._binary(other, "ewise_ge", "scalar_ge", "ge")

    def __ne__(self, other):
        return 1 - (self == other)

    def __gt__(self, other):
        return (self >= other) - (self == other)

    def __lt__(self, other):
        return 1 - (self >= other)

    def __le__(self, other):
        return 1 - (self > other)

    __hash__ = None

    def log(self):
        return self._unary("ewise_log", "log")

    def exp(self):
        return self._unary("ewise_exp", "exp")

    def tanh(self):
        return self._unary("ewise_tanh", "tanh")

    # ---- matmul ---------------------------------------------------------------------------------

    def __matmul__(self, other):
        """Matrix product; leading dims broadcast. Integer inputs give an int32 result."""
        _check_matmul(self, other)
        if self.ndim == 2 and other.ndim == 2:
            return _matmul_2d(self, other)
        if other.ndim == 2:
            n, p = other.shape
            flat = _matmul_2d(self.compact().reshape((-1, n)), other)
            return flat.reshape(self.shape[:-1] + (p,))
        return _matmul_batched(self, other)

    # ---- reductions -----------------------------------------------------------------------------

    def reduce_view_out(self, axis, keepdims=False):
        """(view with the reduced axis last and compact, out array) for one axis or all."""
        if isinstance(axis, (tuple, list)):
            if len(axis) != 1:
                raise ValueError(f"reduce_view_out takes one axis, got {tuple(axis)}")
            axis = axis[0]
        if axis is None:
            view = self.compact().reshape((1,) * (self.ndim - 1) + (self.size,))
            out_shape = (1,) * (self.ndim if keepdims else 1)
            return view, out_shape
        axis = _normalize_axis(axis, self.ndim)
        order = tuple(a for a in range(self.ndim) if a != axis) + (axis,)
        view = self.permute(order)
        if keepdims:
            out_shape = tuple(1 if i == axis else s for i, s in enumerate(self.shape))
        else:
            out_shape = tuple(s for i, s in enumerate(self.shape) if i != axis)
        return view, out_shape

    def _reduce(self, axis, keepdims, name, out_dtype):
        if isinstance(axis, (tuple, list)) and len(axis) > 1:
            return self._reduce_many(axis, keepdims, name, out_dtype)
        if isinstance(axis, (tuple, list)) and len(axis) == 0:
            raise ValueError(f"{name}: empty axis tuple")
        view, out_shape = self.reduce_view_out(axis, keepdims)
        if view.shape and view.shape[-1] == 0 and name == "reduce_max":
            raise ValueError(f"max of an empty axis in shape {self.shape}")
        out = NDArray.make(out_shape, device=self.device, dtype=out_dtype)
        reduce_size = view.shape[-1] if view.shape else 1
        getattr(self._device, name)(view.compact()._handle, out._handle, reduce_size)
        return out

    def _reduce_many(self, axes, keepdims, name, out_dtype):
        axes = sorted({_normalize_axis(a, self.ndim) for a in axes}, reverse=True)
        res = self
        for a in axes:
            res = res._reduce(a, True, name, out_dtype)
        if keepdims:
            return res
        return res.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))

    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (None, int, or tuple). Integer arrays sum into int32."""
        out_dtype = "int32" if dtype_info(self.dtype).is_int else self.dtype
        return self._reduce(axis, keepdims, "reduce_sum", out_dtype)

    def max(self, axis=None, keepdims=False):
        """Max over ``axis`` (None, int, or tuple); same dtype."""
        return self._reduce(axis, keepdims, "reduce_max", self.dtype)

    # ---- hw4 additions --------------------------------------------------------------------------

    def flip(self, axes=None):
        """A compact copy reversed along ``axes`` (all axes when None)."""
        axes = range(self.ndim) if axes is None else axes
        axes = {_normalize_axis(a, self.ndim) for a in _as_tuple(axes)}
        strides = tuple(-s if i in axes else s for i, s in enumerate(self._strides))
        offset = self._offset + builtins.sum(
            (self._shape[i] - 1) * self._strides[i] for i in axes if self._shape[i] > 0
        )
        view = NDArray.make(self._shape, strides, self._device, self._handle, offset)
        return view.compact_copy()

    def pad(self, axes):
        """Zero padding like np.pad: ``axes`` is one (before, after) pair per dimension."""
        if len(axes) != self.ndim:
            raise ValueError(f"pad needs {self.ndim} (before, after) pairs, got {tuple(axes)}")
        shape = tuple(s + lo + hi for s, (lo, hi) in zip(self._shape, axes))
        out = self._device.full(shape, 0, self.dtype)
        out[tuple(slice(lo, lo + s) for s, (lo, _) in zip(self._shape, axes))] = self
        return out


# ---- helpers ------------------------------------------------------------------------------------


def _without_ones(shape):
    return tuple(s for s in shape if s != 1)


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list, range)) else (x,)


def _normalize_axis(axis, ndim):
    if not -builtins.max(ndim, 1) <= axis < builtins.max(ndim, 1):
        raise ValueError(f"axis {axis} is out of range for {ndim} dimensions")
    return axis % builtins.max(ndim, 1)


def _resolve_shape(shape, size, old_shape):
    if shape.count(-1) > 1:
        raise ValueError(f"reshape {old_shape} -> {shape}: only one -1 allowed")
    if -1 in shape:
        known = prod(s for s in shape if s != -1)
        shape = tuple(size // known if s == -1 and known else s for s in shape)
    if prod(shape) != size:
        raise ValueError(f"cannot reshape array of shape {old_shape} into shape {shape}")
    return shape


def _normalize_index(idxs, shape):
    idxs = idxs if isinstance(idxs, tuple) else (idxs,)
    if len(idxs) > len(shape):
        raise IndexError(f"too many indices {idxs} for shape {shape}")
    idxs = idxs + (slice(None),) * (len(shape) - len(idxs))
    return tuple(_normalize_one(i, dim, shape) for i, dim in zip(idxs, shape))


def _normalize_one(idx, dim, shape):
    if isinstance(idx, slice):
        start, stop, step = idx.indices(dim)
        if step <= 0:
            raise ValueError(f"slice {idx} of shape {shape}: only positive steps are supported")
        return slice(start, builtins.max(start, stop), step)
    if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
        if not -dim <= idx < dim:
            raise IndexError(f"index {idx} is out of bounds for axis of size {dim} in {shape}")
        idx = int(idx) % dim
        return slice(idx, idx + 1, 1)
    raise TypeError(f"NDArray index must be int or slice, got {type(idx).__name__}")


def _check_matmul(a, b):
    if not isinstance(b, NDArray):
        raise TypeError(f"matmul needs two NDArrays, got {type(b).__name__}")
    _check_same_dtype("matmul", a, b)
    _check_same_device("matmul", a, b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"shape mismatch in matmul: {a.shape} vs {b.shape}")


def _matmul_out_dtype(dtype):
    return "int32" if dtype_info(dtype).is_int else dtype


def _matmul_2d(a, b):
    (m, n), p = a.shape, b.shape[1]
    device = a.device
    tile = getattr(device, "__tile_size__", None) if hasattr(device, "matmul_tiled") else None
    # Our C++ matmul packs and cache-blocks internally; the course's tiled layout would only add
    # three strided copies there, so `cpu()` always takes the plain path.
    divisible = tile and m % tile == 0 and n % tile == 0 and p % tile == 0
    if device.name != "cpu" and a.dtype == "float32" and divisible:
        return _matmul_tiled(a, b, tile)
    out = NDArray.make((m, p), device=device, dtype=_matmul_out_dtype(a.dtype))
    device.matmul(a.compact()._handle, b.compact()._handle, out._handle, m, n, p)
    return out


def _tiles(a, t):
    rows, cols = a.shape
    return a.compact().as_strided((rows // t, cols // t, t, t), (cols * t, t, cols, 1)).compact()


def _matmul_tiled(a, b, t):
    (m, n), p = a.shape, b.shape[1]
    out = NDArray.make((m // t, p // t, t, t), device=a.device, dtype=a.dtype)
    out.fill(0.0)
    a.device.matmul_tiled(_tiles(a, t)._handle, _tiles(b, t)._handle, out._handle, m, n, p)
    return out.permute((0, 2, 1, 3)).compact().reshape((m, p))


def _matmul_batched(a, b):
    try:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        raise ValueError(f"shape mismatch in matmul: {a.shape} vs {b.shape}") from None
    (m, n), p, count = a.shape[-2:], b.shape[-1], prod(batch)
    a3 = a.broadcast_to(batch + (m, n)).compact().reshape((count, m, n))
    b3 = b.broadcast_to(batch + (n, p)).compact().reshape((count, n, p))
    out = NDArray.make((count, m, p), device=a.device, dtype=_matmul_out_dtype(a.dtype))
    if hasattr(a.device, "matmul_batched"):  # optional backend entry: one call, no Python loop
        a.device.matmul_batched(a3.compact()._handle, b3.compact()._handle, out._handle, count,
                                m, n, p)
        return out.reshape(batch + (m, p))
    for i in range(count):
        part = _matmul_2d(a3[i].compact().reshape((m, n)), b3[i].compact().reshape((n, p)))
        out[i] = part.reshape((1, m, p))
    return out.reshape(batch + (m, p))


# ---- module functions ---------------------------------------------------------------------------


def array(a, dtype=None, device=None):
    """An NDArray from an NDArray, numpy array or nested list.

    ``dtype=None`` keeps a needle dtype of the input, else float32 (so int64/float64 -> float32).
    """
    if isinstance(a, NDArray):
        dtype = check_dtype(dtype or a.dtype)
        return a.to(device or a.device).astype(dtype)
    return NDArray(a, device=device, dtype=dtype)


def empty(shape, dtype=DEFAULT_DTYPE, device=None):
    device = device if device is not None else default_device()
    return device.empty(shape, dtype)


def full(shape, fill_value, dtype=DEFAULT_DTYPE, device=None):
    device = device if device is not None else default_device()
    return device.full(shape, fill_value, dtype)


def broadcast_to(array, new_shape):
    return array.broadcast_to(new_shape)


def reshape(array, new_shape):
    return array.reshape(new_shape)


def maximum(a, b):
    return a.maximum(b)


def log(a):
    return a.log()


def exp(a):
    return a.exp()


def tanh(a):
    return a.tanh()


def sum(a, axis=None, keepdims=False):
    return a.sum(axis=axis, keepdims=keepdims)


def max(a, axis=None, keepdims=False):
    return a.max(axis=axis, keepdims=keepdims)


def flip(a, axes):
    return a.flip(axes)
