"""Helpers shared by the kernel builders: node qparams, the kernel modules, weight records."""

import numpy as np

from needle_qc.errors import IRError
from needle_qc.lower.program import WeightRecord

INT32_MAX = 2**31 - 1


# ----------------------------------------------------------------------------- builder helpers

def _qp(node):
    qp = node.meta.get("qparams")
    if not qp:
        raise IRError(f"%{node.name}: no qparams {{s=..., z=...}} in its type")
    return np.float32(qp["s"]), int(qp["z"])


def _kernels():
    """The C++ int8 kernels (:mod:`needle_qc._quant_cpu`), or None when not built."""
    try:
        from needle_qc import _quant_cpu
    except ImportError:
        return None
    return _quant_cpu


def cuda_kernels():
    """The CUDA int8 kernels (:mod:`needle_qc._quant_cuda`), or None when not built.

    The one place the CUDA module is found: the plumbing tests replace this function with a
    stand-in (the CPU kernels behind the CUDA module's API) to exercise the CUDA lowering
    without a GPU.
    """
    try:
        from needle_qc import _quant_cuda
    except ImportError:
        return None
    return _quant_cuda


def kernels_for(target):
    """The kernel module the builders of ``target`` call: CUDA for "cuda", else the CPU's."""
    return cuda_kernels() if target == "cuda" else _kernels()


def accumulator_bound(k, a_range, w_s8, zp_s8=None):
    """max over columns of ``|Σ_k (a - z_a)(w - z_w)|`` for ``a - z_a`` in ``a_range``.

    The NumPy twin of ``_quant_cpu.accumulator_bound`` (the CUDA module has none): computed
    from the int8 weight ``[K, N]`` and its zero points instead of a CPU-packed weight.
    """
    w = np.asarray(w_s8, np.int64).reshape(k, -1)
    zp = 0 if zp_s8 is None else np.asarray(zp_s8, np.int64).reshape(-1)
    col_abs = np.abs(w - zp).sum(axis=0)
    amax = max(abs(int(a_range[0])), abs(int(a_range[1])))
    return int(col_abs.max(initial=0)) * amax


def _weight_record(node, dtype, count, measured, qparam_bytes, resident=""):
    bits = {"int4": 4, "uint4": 4, "int8": 8, "uint8": 8, "float16": 16, "bfloat16": 16}
    theoretical = count * bits.get(dtype, 32) / 8
    return WeightRecord(node.name, dtype, int(count), theoretical, int(measured),
                        int(qparam_bytes), resident)


def _shared_layout(ctx, node):
    layouts = {ctx.layout.get(i.name, "logical") for i in node.inputs if ctx.const(i) is None}
    return layouts.pop() if len(layouts) == 1 else "logical"
