"""The kernel builders, one module per family; each registers its builders with ``@builder``
(:mod:`needle_qc.lower.registry`) next to their code. Importing this module loads them all."""

from needle_qc.lower import (  # noqa: F401  (registers)
    attention,
    float_ops,
    int8,
    quant_ops,
    recurrent,
    sequence_ops,
    weight_only,
)
from needle_qc.lower.registry import BUILDERS, builder, register_builder, unregister_builder

__all__ = ["BUILDERS", "builder", "register_builder", "unregister_builder"]
