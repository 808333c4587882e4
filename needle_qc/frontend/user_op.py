"""``user_op``: a call of an op class of the user's own Needle that needle_qc has no meaning for.

The tracer records such a call (a student's ``Maximum`` that reduces, say) instead of mapping
it to our op of the same name: the node keeps the framework's package name, the class name,
the op's fields and the output type. The interpreter calls the user's op itself (bit for bit);
a compiled program keeps it float: float32 copies of its inputs go into the user's Tensors,
the result is copied back into needle_qc's arrays (never a write through ``to_numpy``), and
``explain()`` lists it as an op-table step.
"""
import sys

import numpy as np

from needle_qc.errors import IRError
from needle_qc.frontend import own
from needle_qc.frontend.framework import from_module
from needle_qc.opset.table import OpDef, Traits, is_plain, normalize_shape, register_op

USER_OP = "user_op"


def user_op_attrs(fw, op, meta):
    """The node attrs of a call of ``op`` (an instance of ``fw``'s op class), or None when
    it cannot be recorded faithfully (fields that are not plain data, a tuple output)."""
    params = dict(vars(op))
    if not is_plain(params) or isinstance(meta.get("dtype"), tuple):
        return None
    return {"framework": fw.module.__name__, "cls": type(op).__name__, "params": params,
            "shape": tuple(meta["shape"]), "dtype": meta["dtype"]}


def _rule(metas, attrs):
    return normalize_shape(attrs["shape"]), attrs["dtype"]


def _restore(value):
    # JSON gives lists back; the op saw tuples (axes) when it was traced
    if isinstance(value, list):
        return tuple(_restore(v) for v in value)
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    return value


def _user_op(attrs):
    module = sys.modules.get(attrs["framework"])
    cls = getattr(getattr(module, "ops", None), attrs["cls"], None)
    if cls is None:
        raise IRError(f"user_op: {attrs['framework']}.ops.{attrs['cls']} is not available "
                      "in this process; import the Needle the model was traced with first")
    op = cls.__new__(cls)
    op.__dict__.update(_restore(attrs["params"]))
    return from_module(module), op


def _evaluate(inputs, attrs, ctx):
    fw, op = _user_op(attrs)
    if all(fw.is_tensor(x) for x in inputs):
        return op(*inputs)  # the interpreter on the model's own Needle
    device = fw.default_device()
    args = [fw.tensor(np.asarray(x.numpy(), np.float32), device, "float32") for x in inputs]
    out = np.array(op(*args).numpy(), dtype=np.float32, copy=True)
    framework = getattr(ctx, "framework", None)
    if framework is None or framework.is_own:
        return own.Tensor(out)
    return framework.tensor(out, ctx.device, "float32")


register_op(OpDef(USER_OP, "variadic",
                  {"framework": "str", "cls": "str", "params": "any", "shape": "shape",
                   "dtype": "str"},
                  _rule, "A call of the user's own op class (kept float; see frontend).",
                  _evaluate, {}, Traits()), replace=True)
