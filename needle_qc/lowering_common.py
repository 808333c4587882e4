"""Helpers shared by the kernel builders: node qparams, the C++ module, weight records."""

import numpy as np

from .errors import IRError
from .lowering_program import WeightRecord

INT32_MAX = 2**31 - 1


# ----------------------------------------------------------------------------- builder helpers

def _qp(node):
    qp = node.meta.get("qparams")
    if not qp:
        raise IRError(f"%{node.name}: no qparams {{s=..., z=...}} in its type")
    return np.float32(qp["s"]), int(qp["z"])


def _kernels():
    try:
        from . import _quant_cpu
    except ImportError:
        return None
    return _quant_cpu


def _weight_record(node, dtype, count, measured, qparam_bytes):
    bits = {"int4": 4, "uint4": 4, "int8": 8, "uint8": 8, "float16": 16, "bfloat16": 16}
    theoretical = count * bits.get(dtype, 32) / 8
    return WeightRecord(node.name, dtype, int(count), theoretical, int(measured),
                        int(qparam_bytes))


def _shared_layout(ctx, node):
    layouts = {ctx.layout.get(i.name, "logical") for i in node.inputs if ctx.const(i) is None}
    return layouts.pop() if len(layouts) == 1 else "logical"
