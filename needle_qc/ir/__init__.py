"""The IR: Graph/Node with use lists and lint, the text form, the interpreter, pattern rewrites."""
from needle_qc.ir.graph import Graph, Node
from needle_qc.ir.interpreter import Interpreter
from needle_qc.ir.pattern import Rule, replace_pattern, rewrite

__all__ = ["Graph", "Interpreter", "Node", "Rule", "replace_pattern", "rewrite"]
