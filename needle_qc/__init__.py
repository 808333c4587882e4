"""needle_qc: post-training quantization compiler for Needle models.

Public API (see docs/architecture.md)::

    import needle_qc as qc
    g = qc.trace(model, x)              # Graph; print(g); g.lint(); g(x) runs the interpreter
    qc.run_passes(g, qc.FLOAT_PIPELINE) # fold-batchnorm, fuse-activations, cse, dce
    qc.draw(g, "g.svg")                 # graphviz, compare= highlights what a pass changed
    qc.ops.quantize_linear(...)         # ONNX-signature integer ops on numpy arrays
"""
from . import ops, passes, quantize, zoo
from .compare import CompareReport, compare, deviation
from .compile import compile
from .errors import IRError, TraceError
from .interpreter import Interpreter
from .ir import Graph, Node
from .opset import OpDef, get_op, register_op
from .passes import FLOAT_PIPELINE, get_pass, list_passes, register_pass, run_passes
from .pattern import Rule, replace_pattern, rewrite
from .quantize import QConfig, make_observer
from .quantize.api import calibrate, convert, prepare_stages, quantize_pass, to_integer
from .runtime import CompiledModel
from .serialize import load, save
from .tracer import trace
from .viz import draw

__all__ = [
    "CompareReport", "CompiledModel", "FLOAT_PIPELINE", "Graph", "IRError", "Interpreter",
    "Node", "OpDef", "QConfig", "Rule", "TraceError", "calibrate", "compare", "compile",
    "convert", "deviation", "draw", "get_op", "get_pass", "list_passes", "load",
    "make_observer", "ops", "passes", "prepare_stages", "quantize", "quantize_pass",
    "register_op", "register_pass", "replace_pattern", "rewrite", "run_passes", "save",
    "to_integer", "trace", "zoo",
]
