"""The closed op vocabulary: one OpDef row per op (arity, attrs, shape rule, evaluation, traits).

The table and its helpers are :mod:`~needle_qc.opset.table`; the rows live beside it, one module
per family: :mod:`~needle_qc.opset.highlevel` (graph structure and the high-level ops passes
reason about), :mod:`~needle_qc.opset.primitives` (one row per Needle primitive) and
:mod:`~needle_qc.opset.quant` (the quantization ops, evaluated by
:mod:`~needle_qc.opset.quant_eval`). Importing this package registers every row, in that order
(the order ``all_ops()`` lists them in).
"""
from needle_qc.opset import highlevel, primitives, quant, recurrent
from needle_qc.opset.table import (
    ATTR_TYPES,
    FLOAT_DTYPES,
    KINDS,
    OpDef,
    Traits,
    all_ops,
    check_attr,
    dim_parts,
    format_dim,
    get_op,
    is_plain,
    is_symbolic,
    make_dim,
    normalize_shape,
    ops_where,
    register_op,
    resolve_dim,
    resolve_shape,
    shape_size,
    traits,
    unary_rule,
    unregister_op,
)

quant.register_quant_ops()

__all__ = [
    "ATTR_TYPES", "FLOAT_DTYPES", "KINDS", "OpDef", "Traits", "ops_where", "traits", "all_ops",
    "check_attr", "dim_parts", "format_dim", "get_op",
    "highlevel", "is_plain", "is_symbolic", "make_dim", "normalize_shape", "primitives", "quant",
    "recurrent",
    "register_op", "resolve_dim", "resolve_shape", "shape_size", "unary_rule",
    "unregister_op",
]
