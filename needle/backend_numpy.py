"""The plain-numpy device used when NEEDLE_BACKEND=np (arrays are numpy.ndarray)."""

import numpy as np

__all__ = ["Device", "CPUDevice", "cpu", "default_device", "all_devices"]


class Device:
    """Base class of numpy-backend devices."""


class CPUDevice(Device):
    """The only numpy-backend device; repr ``needle.cpu()``."""

    def __repr__(self):
        return "needle.cpu()"

    def __hash__(self):
        return self.__repr__().__hash__()

    def __eq__(self, other):
        return isinstance(other, CPUDevice)

    def enabled(self):
        return True

    def zeros(self, *shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)

    def ones(self, *shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)

    def randn(self, *shape, dtype="float32"):
        return np.random.randn(*shape).astype(dtype)

    def rand(self, *shape, dtype="float32"):
        return np.random.rand(*shape).astype(dtype)

    def one_hot(self, n, i, dtype="float32"):
        return np.eye(n, dtype=dtype)[np.asarray(i)]

    def empty(self, shape, dtype="float32"):
        return np.empty(shape, dtype=dtype)

    def full(self, shape, fill_value, dtype="float32"):
        return np.full(shape, fill_value, dtype=dtype)


def cpu():
    """The numpy CPU device."""
    return CPUDevice()


def default_device():
    return cpu()


def all_devices():
    """All numpy-backend devices (just the CPU)."""
    return [cpu()]
