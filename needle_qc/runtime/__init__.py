"""Runtime: CompiledModel (the run loop over a lowered Program) and the NQC1 file format."""
from needle_qc.runtime.compiled import CompiledModel
from needle_qc.runtime.serialize import load, save

__all__ = ["CompiledModel", "load", "save"]
