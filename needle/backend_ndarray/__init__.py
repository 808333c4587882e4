"""The NDArray package: arrays, devices and the dtype table."""

from .dtypes import DTYPES, FLOAT_DTYPES, INT_DTYPES, check_dtype, dtype_info  # noqa: F401
from .ndarray import *  # noqa: F403
from .ndarray import BackendDevice, NDArray, all_devices, cpu, cpu_numpy, cuda, default_device  # noqa: F401
