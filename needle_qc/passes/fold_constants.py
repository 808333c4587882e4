"""``fold-constants``: evaluate nodes whose inputs are all params/constants, once, at compile time.

Each such node is run with the reference interpreter and replaced by a ``constant`` holding the
result, so ``transpose(param)`` or ``reshape(constant)`` cost nothing at run time. Chains fold
in one sweep because nodes are visited in topological order (intermediate results are not
kept). Params that end up unused stay for ``dce`` to remove.
"""

import numpy as np

from needle_qc import opset
from needle_qc.ir.graph import Graph
from needle_qc.opset import traits
from needle_qc.passes import register_pass


def is_tensor(node):
    """A param or constant: its value lives in the graph's tensor table."""
    return traits(node.op).kind == "tensor"


def is_foldable(node):
    """True if ``node`` computes one concrete tensor from params/constants only."""
    if traits(node.op).kind == "structure" or not node.inputs:  # sources and the output
        return False
    if not all(is_tensor(i) for i in node.inputs):
        return False
    shape, dtype = node.meta.get("shape"), node.meta.get("dtype")
    if shape is None or not isinstance(dtype, str):
        return False  # tuple-valued or unknown: nothing to store as one constant
    return not any(opset.is_symbolic(d) for d in shape)


def evaluate_node(graph, node):
    """The value of ``node`` (all inputs params/constants) as a numpy array."""
    mini = Graph()
    inputs = [mini.constant(graph.tensors[i.attrs["tensor"]], name=i.name) for i in node.inputs]
    result = mini.call(node.op, inputs, node.attrs, name=node.name, meta=dict(node.meta))
    mini.output(result)
    value = mini()
    return np.array(value.numpy(), copy=True)


@register_pass("fold-constants")
def fold_constants(graph):
    """Replace foldable nodes by constants (in place); True if any were folded."""
    created = set()
    for node in graph.nodes:
        if not is_foldable(node):
            continue
        inputs = node.inputs
        value = evaluate_node(graph, node)
        with graph.inserting_before(node):
            folded = graph.constant(value, name=f"{node.name}_folded")
        for key in ("module_path", "source"):
            if key in node.meta:
                folded.meta[key] = node.meta[key]
        node.replace_all_uses_with(folded)
        graph.erase(node)
        created.add(folded)
        for dead in (i for i in dict.fromkeys(inputs) if i in created and not i.users):
            graph.erase(dead)  # an intermediate this pass made; user params are left to dce
    return bool(created)
