"""Device parametrization shared by every test file: ``from tests.devices import DEVICES``."""

import pytest

import needle as ndl


def _device_param(device, test_id, reason):
    return pytest.param(
        device, marks=pytest.mark.skipif(not device.enabled(), reason=reason), id=test_id
    )


ALL_DEVICES = [
    _device_param(ndl.cpu_numpy(), "cpu_numpy", "numpy backend unavailable"),
    _device_param(ndl.cpu(), "cpu", "C++ backend ndarray_backend_cpu not built"),
    _device_param(ndl.cuda(), "cuda", "no CUDA backend module or no visible GPU"),
]
DEVICES = ALL_DEVICES

# The C++/CUDA devices only (for kernel tests that don't need the numpy reference device).
NATIVE_DEVICES = ALL_DEVICES[1:]
