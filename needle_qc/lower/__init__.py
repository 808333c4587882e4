"""Lowering: a Graph at any stage -> a Program of kernel calls (weights packed once).

:mod:`~needle_qc.lower.driver` (lower, tune, measure), :mod:`~needle_qc.lower.walk` (the graph
walk, layouts), :mod:`~needle_qc.lower.builders` (op -> builder), the builders by family
(:mod:`~needle_qc.lower.int8`, :mod:`~needle_qc.lower.quant_ops`,
:mod:`~needle_qc.lower.weight_only`, :mod:`~needle_qc.lower.float_ops`) and the records
(:mod:`~needle_qc.lower.program`).
"""
from needle_qc.lower.driver import bind_inputs, lower, measure, tune
from needle_qc.lower.program import Program

__all__ = ["Program", "bind_inputs", "lower", "measure", "tune"]
