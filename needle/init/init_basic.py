"""Basic tensor factories: rand/randn/constant/ones/zeros/randb/one_hot and *_like."""
import numpy as np

import needle as ndl

__all__ = [
    "rand", "randn", "constant", "ones", "zeros", "randb", "one_hot",
    "zeros_like", "ones_like",
]


def _device(device):
    # Course rule: init functions default to the C++ cpu() device, not default_device().
    return ndl.cpu() if device is None else device


def _tensor(array, device, dtype, requires_grad):
    return ndl.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def rand(*shape, low=0.0, high=1.0, device=None, dtype="float32", requires_grad=False):
    """Uniform samples in [low, high) drawn through ``device.rand`` (numpy global RNG)."""
    device = _device(device)
    array = device.rand(*shape) * (high - low) + low
    return _tensor(array, device, dtype, requires_grad)


def randn(*shape, mean=0.0, std=1.0, device=None, dtype="float32", requires_grad=False):
    """Gaussian samples N(mean, std^2) drawn through ``device.randn`` (numpy global RNG)."""
    device = _device(device)
    array = device.randn(*shape) * std + mean
    return _tensor(array, device, dtype, requires_grad)


def constant(*shape, c=1.0, device=None, dtype="float32", requires_grad=False):
    """Tensor of ``shape`` filled with ``c``."""
    device = _device(device)
    array = device.full(shape, c, dtype=dtype)
    return _tensor(array, device, dtype, requires_grad)


def ones(*shape, device=None, dtype="float32", requires_grad=False):
    """Tensor of ones."""
    return constant(*shape, c=1.0, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype="float32", requires_grad=False):
    """Tensor of zeros."""
    return constant(*shape, c=0.0, device=device, dtype=dtype, requires_grad=requires_grad)


def randb(*shape, p=0.5, device=None, dtype="float32", requires_grad=False):
    """Bernoulli(p) mask as 0/1 values (``rand <= p``).

    The course default dtype is "bool", which NDArray does not have; "bool" is accepted and
    gives a float32 0/1 mask.
    """
    device = _device(device)
    dtype = "float32" if dtype == "bool" else dtype
    array = device.rand(*shape) <= p
    return _tensor(array, device, dtype, requires_grad)


def _class_ids(i, n):
    """Integer numpy ids from a Tensor/array of float or int ids, checked to lie in [0, n)."""
    ids = np.asarray(i.numpy() if isinstance(i, ndl.Tensor) else i)
    if ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids)) or np.any(ids != np.floor(ids)):
            raise ValueError("one_hot: ids must be whole numbers, got non-integral floats")
    elif ids.dtype.kind not in "iub":
        raise TypeError(f"one_hot: ids must be integers or integral floats, got {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise ValueError(
            f"one_hot: ids must lie in [0, {n}), got range [{ids.min()}, {ids.max()}]"
        )
    return ids.astype("int32")


def one_hot(n, i, device=None, dtype="float32", requires_grad=False):
    """One-hot rows of length ``n`` for the integer ids ``i`` (Tensor of float or int ids)."""
    device = _device(device)
    ids = _class_ids(i, n)
    # Built row by row rather than as eye(n)[ids]: an n x n identity is 230 MB for PTB's vocab.
    rows = np.zeros((ids.size, n), dtype=np.float32)
    rows[np.arange(ids.size), ids.reshape(-1)] = 1.0
    return _tensor(rows.reshape(*ids.shape, n), device, dtype, requires_grad)


def zeros_like(array, *, device=None, requires_grad=False):
    """Zeros with the shape and dtype of ``array`` (on its device unless given)."""
    device = device if device else array.device
    return zeros(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


def ones_like(array, *, device=None, requires_grad=False):
    """Ones with the shape and dtype of ``array`` (on its device unless given)."""
    device = device if device else array.device
    return ones(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)

