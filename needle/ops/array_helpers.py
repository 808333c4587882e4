"""Array calls that differ between numpy (NEEDLE_BACKEND=np) and NDArray, behind one name each."""

import numpy

from ..backend_selection import array_api


def is_numpy(a):
    return isinstance(a, (numpy.ndarray, numpy.generic))


def dtype_of(a):
    dt = a.dtype
    return dt if isinstance(dt, str) else numpy.dtype(dt).name


def full(shape, value, dtype, like):
    """An array of ``shape`` filled with ``value``, on the device of ``like``."""
    if is_numpy(like):
        return numpy.full(shape, value, dtype=dtype)
    return like.device.full(tuple(shape), value, dtype)


def compact(a):
    return numpy.ascontiguousarray(a) if is_numpy(a) else a.compact()


def reshape(a, shape):
    return a.reshape(tuple(shape)) if is_numpy(a) else a.compact().reshape(tuple(shape))


def permute(a, axes):
    return numpy.transpose(a, axes) if is_numpy(a) else a.permute(tuple(axes))


def broadcast_to(a, shape):
    return array_api.broadcast_to(a, tuple(shape))


def element_strides(a):
    return tuple(s // a.itemsize for s in a.strides) if is_numpy(a) else a.strides


def as_strided(a, shape, strides):
    """A view with ``strides`` in elements; ``a`` must be compact."""
    if is_numpy(a):
        byte_strides = tuple(s * a.itemsize for s in strides)
        return numpy.lib.stride_tricks.as_strided(a, tuple(shape), byte_strides)
    return a.as_strided(tuple(shape), tuple(strides))


def reduce_sum(a, axes, keepdims=False):
    return a.sum(axis=axes, keepdims=keepdims)


def reduce_max(a, axes, keepdims=False):
    return a.max(axis=axes, keepdims=keepdims)


def maximum(a, b):
    return array_api.maximum(a, b)


def flip(a, axes):
    return numpy.flip(a, axes) if is_numpy(a) else a.flip(axes)


def pad(a, pads):
    return numpy.pad(a, pads) if is_numpy(a) else a.pad(pads)


def astype(a, dtype):
    return a.astype(dtype)


def as_dtype_of(mask, like):
    """A 0/1 comparison result as an array of ``like``'s dtype."""
    return mask.astype(like.dtype) if is_numpy(mask) else mask


def power(a, b):
    """Elementwise a ** b; NDArray only has a scalar power, so go through numpy values."""
    if is_numpy(a):
        return a**b
    values = numpy.power(a.numpy().astype(numpy.float32), b.numpy().astype(numpy.float32))
    return array_api.array(values, dtype=a.dtype, device=a.device)
