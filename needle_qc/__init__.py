"""needle_qc: post-training quantization compiler for Needle models.

Public API (see docs/architecture.md)::

    import needle_qc as qc
    g = qc.trace(model, x)              # Graph; print(g); g.lint(); g(x) runs the interpreter
    qc.run_passes(g, qc.FLOAT_PIPELINE) # fold-batchnorm, fuse-activations, cse, dce
    qc.draw(g, "g.svg")                 # graphviz, compare= highlights what a pass changed
    qc.ops.quantize_linear(...)         # ONNX-signature integer ops on numpy arrays
"""
from needle_qc import ops, passes, quantize  # noqa: F401  (quantize: the stage package, qc.quantize.*; not in __all__, it is no function)
from needle_qc._version import __version__ as __version__
from needle_qc.capture.tracer import trace
from needle_qc.errors import IRError, TraceError
from needle_qc.frontend.seed_api import enable_seed_api
from needle_qc.ir.graph import Graph, Node
from needle_qc.ir.interpreter import Interpreter
from needle_qc.ir.pattern import Rule, replace_pattern, rewrite
from needle_qc.opset import OpDef, get_op, register_op
from needle_qc.passes import FLOAT_PIPELINE, get_pass, list_passes, register_pass, run_passes
from needle_qc.pipeline import compile, prepare
from needle_qc.quantize import QConfig, make_observer
from needle_qc.quantize.api import calibrate, convert, prepare_stages, quantize_pass, to_integer
from needle_qc.quantize.planner import plan
from needle_qc.quantize.qat import prepare_qat
from needle_qc.runtime.compiled import CompiledModel
from needle_qc.runtime.serialize import load, save
from needle_qc.tools import zoo
from needle_qc.tools.compare import CompareReport, compare, deviation
from needle_qc.tools.export_onnx import export_onnx
from needle_qc.tools.tabulate import tabulate
from needle_qc.tools.viz import draw

__all__ = [
    "CompareReport", "CompiledModel", "FLOAT_PIPELINE", "Graph", "IRError", "Interpreter",
    "Node", "OpDef", "QConfig", "Rule", "TraceError", "calibrate", "compare", "compile",
    "convert", "deviation", "draw", "export_onnx", "get_op", "get_pass", "list_passes", "load",
    "make_observer", "ops", "passes", "plan", "prepare", "prepare_qat", "prepare_stages",
    "quantize_pass",
    "register_op", "register_pass", "replace_pattern", "rewrite", "run_passes", "save", "tabulate",
    "to_integer", "trace", "zoo", "enable_seed_api",
]
