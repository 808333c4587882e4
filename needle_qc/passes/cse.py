"""``cse``: merge nodes computing the same pure op on the same inputs with the same attrs."""

from needle_qc.opset import traits
from needle_qc.passes import register_pass

"""Ops never merged: inputs are distinct by definition and there is one output.

Every other IR op is a pure function of its inputs and attrs (eval-mode Dropout is traced away;
nothing in the op table draws random numbers). ``param``/``constant`` nodes merge only when
they name the same tensor key: equal values under different keys are distinct parameters
that a later pass (quantization) may treat differently."""


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_freeze(v) for v in value)
    return (type(value).__name__, value)


def node_key(node):
    """Hashable identity of what ``node`` computes, or None if it must never be merged."""
    if traits(node.op).kind == "structure":  # graph inputs and the output are never merged
        return None
    qparams = node.meta.get("qparams")
    return node.op, tuple(id(i) for i in node.inputs), _freeze(node.attrs), _freeze(qparams)


@register_pass("cse")
def common_subexpression_elimination(graph):
    """Replace each repeated computation by its first occurrence (in place); True if any."""
    seen = {}
    changed = False
    for node in graph.nodes:
        key = node_key(node)
        if key is None:
            continue
        first = seen.setdefault(key, node)
        if first is not node:
            node.replace_all_uses_with(first)
            graph.erase(node)
            changed = True
    return changed
