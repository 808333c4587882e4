"""What compiled programs compute on: needle_qc's own arrays, or the bundled Needle's.

The compiler owns its data. A graph traced from a user's Needle is lowered onto NumPy arrays
and needle_qc's kernels only (:data:`~needle_qc.frontend.framework.OWN`): no integer arrays in
the user's NDArray, no writes through its ``to_numpy``, no calls into its backend's ``.mod``.
The bundled reference Needle's C++ backend is used for fp32 GEMMs, and its op evaluations
for steps without a kernel, only when that Needle is the one loaded as ``needle`` (the
outputs of its models stay what they were).
"""
import sys

import numpy as np

from needle_qc.frontend.framework import OWN, default, from_module

_ZERO_COPY = {}  # id(backend module) -> bool


def compute_framework(graph):
    """The framework a compiled program evaluates ``graph``'s kernel-less steps with."""
    fw = getattr(graph, "framework", None)
    if fw is not None and not from_module(fw).bundled:
        return OWN
    return default()


def bundled_cpu_module():
    """The bundled Needle's C++ backend module when it is the loaded ``needle``, else None."""
    fw = default()
    if not fw.bundled or "needle" not in sys.modules:
        return None
    cpu = fw.module.cpu()
    return cpu.mod if cpu.enabled() else None


def zero_copy(mod):
    """True when ``mod.to_numpy`` returns a view of the buffer (writes through it land);
    probed once per backend module, never assumed."""
    key = id(mod)
    if key not in _ZERO_COPY:
        try:
            buf = mod.Array(4)
            mod.from_numpy(np.zeros(4, np.float32), buf)
            mod.to_numpy(buf, (4,), (1,), 0)[:] = np.arange(1, 5, dtype=np.float32)
            back = mod.to_numpy(buf, (4,), (1,), 0)
            _ZERO_COPY[key] = bool(np.array_equal(back, np.arange(1, 5, dtype=np.float32)))
        except Exception:  # noqa: BLE001 (a read-only view or a copying backend)
            _ZERO_COPY[key] = False
    return _ZERO_COPY[key]
