"""Picks the array library from NEEDLE_BACKEND: "nd" (default, NDArray) or "np" (numpy)."""

import os

VALID_BACKENDS = ("nd", "np")
BACKEND = os.environ.get("NEEDLE_BACKEND", "nd")

if BACKEND == "nd":
    from . import backend_ndarray as array_api
    from .backend_ndarray import (
        BackendDevice as Device,
    )
    from .backend_ndarray import (
        NDArray,
        all_devices,
        cpu,
        cpu_numpy,
        cuda,
        default_device,
    )
elif BACKEND == "np":
    import numpy as array_api

    from .backend_numpy import Device, all_devices, cpu, default_device

    NDArray = array_api.ndarray

    def cpu_numpy():
        return cpu()

    def cuda():
        """A disabled device: numpy arrays live on the CPU only."""
        from .backend_ndarray import BackendDevice

        return BackendDevice("cuda", None)
else:
    raise RuntimeError(
        f"unknown NEEDLE_BACKEND {BACKEND!r}; valid values: {', '.join(VALID_BACKENDS)}"
    )

__all__ = [
    "BACKEND",
    "Device",
    "NDArray",
    "all_devices",
    "array_api",
    "cpu",
    "cpu_numpy",
    "cuda",
    "default_device",
]
