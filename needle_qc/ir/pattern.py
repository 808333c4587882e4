r"""Pattern rewriting: ``replace_pattern`` (subgraph templates, torch.fx style) and ``rewrite``
(per-op rules run to a fixed point, tinygrad PatternMatcher style).

Example
-------
>>> from needle import ops
>>> g = Graph.parse("%x = placeholder() : f32[N,2]\n%a = relu(%x) : f32[N,2]\n"
...                 "%b = relu(%a) : f32[N,2]\nreturn %b")
>>> def pattern(x):
...     return ops.relu(ops.relu(x))
>>> def replacement(x):
...     return ops.relu(x)
>>> [m.anchor.name for m in replace_pattern(g, pattern, replacement)]
['b']
>>> print(g)
%x = placeholder() : f32[N,2]
%b_relu = relu(%x) : f32[N,2]
return %b_relu
"""

import inspect
from dataclasses import dataclass, field

import numpy as np

from needle_qc.errors import IRError
from needle_qc.ir.graph import Graph, Node
from needle_qc.opset import traits


def _is_tensor(node):
    return traits(node.op).kind == "tensor"  # param / constant: values in the tensor table

__all__ = ["Match", "Rule", "replace_pattern", "rewrite", "trace_function"]



@dataclass
class Match:
    """One rewritten occurrence of a pattern.

    Attributes
    ----------
    anchor : Node
        The graph node that matched the pattern's result (erased after the rewrite).
    nodes_map : dict[str, Node]
        Pattern node name -> matched graph node (placeholders included).
    replacements : list[Node]
        The nodes inserted for the replacement, in order (the last one is the new result).
    """

    anchor: Node
    nodes_map: dict
    replacements: list = field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    """``fn(node)`` tried on every node whose op is ``op`` (a name, a tuple of names, or None:
    any op).

    By default ``fn`` returns a node computing the same value (nodes it creates are inserted
    right before ``node``; the driver rewires the users and erases ``node``) or None to leave
    ``node`` alone. An ``in_place`` rule does its own surgery (several nodes, names) and returns
    True when it changed the graph.
    """

    op: object
    fn: object
    in_place: bool = False


# ----------------------------------------------------------------------------- tracing

def trace_function(fn, example_inputs=None, framework=None):
    """Trace a plain Needle function of Tensors into a Graph (one placeholder per argument).

    ``example_inputs`` default to float32 ``(2, 2)`` tensors, enough for elementwise ops and
    square matmuls; pass arrays of the right shapes for anything else. The Needle is the one
    the function's globals use (``framework=`` to say it).
    """
    if isinstance(fn, Graph):
        return fn
    from needle_qc.capture.tracer import trace
    from needle_qc.frontend.framework import framework_of_function

    needle = framework_of_function(fn, framework).module

    if example_inputs is None:
        count = len(inspect.signature(fn).parameters)
        example_inputs = [np.full((2, 2), 0.5 + i, np.float32) for i in range(count)]
    return trace(_function_module(fn, needle), *example_inputs)


def _function_module(fn, needle):
    # forward *is* fn (an instance attribute), so the tracer names placeholders after its args.
    module = needle.nn.Module()
    module.forward = fn
    return module


# ----------------------------------------------------------------------------- matching

def _single_result(graph, what):
    out = graph.output_node
    if len(out.inputs) != 1:
        raise IRError(f"replace_pattern: the {what} must return exactly one Tensor, "
                      f"got {len(out.inputs)}")
    return out.inputs[0]


def _same_tensor(pattern, pnode, graph, gnode):
    a = pattern.tensors[pnode.attrs["tensor"]]
    b = graph.tensors[gnode.attrs["tensor"]]
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def _match(pattern, pnode, graph, gnode, mapping):
    """Extend ``mapping`` (pattern node -> graph node) so ``pnode`` matches ``gnode``."""
    if pnode in mapping:
        return mapping[pnode] is gnode
    if pnode.op == "placeholder":
        mapping[pnode] = gnode
        return True
    if gnode in mapping.values() or pnode.op != gnode.op:
        return False
    if _is_tensor(pnode):
        if not _same_tensor(pattern, pnode, graph, gnode):
            return False
    elif pnode.attrs != gnode.attrs or len(pnode.inputs) != len(gnode.inputs):
        return False
    mapping[pnode] = gnode
    return all(_match(pattern, p, graph, g, mapping) for p, g in zip(pnode.inputs, gnode.inputs))


def _contained(mapping, anchor):
    """True if no matched intermediate node is used outside the match."""
    inner = {g for p, g in mapping.items() if p.op != "placeholder"}
    for gnode in inner:
        if gnode is anchor or _is_tensor(gnode):
            continue
        if any(user not in inner for user in gnode.users):
            return False
    return True


def _find_match(pattern, result, graph, gnode, taken):
    mapping = {}
    if not _match(pattern, result, graph, gnode, mapping):
        return None
    inner = [g for p, g in mapping.items() if p.op != "placeholder" and not _is_tensor(p)]
    if any(g in taken for g in inner) or not _contained(mapping, gnode):
        return None
    return mapping


# ----------------------------------------------------------------------------- rewriting

def _insert_replacement(graph, replacement, bindings, anchor):
    """Copy ``replacement``'s nodes before ``anchor``; returns the new nodes."""
    env = dict(bindings)
    new_nodes = []
    with graph.inserting_before(anchor):
        for rnode in replacement.nodes:
            if rnode.op in ("placeholder", "output"):
                continue
            if _is_tensor(rnode):
                value = replacement.tensors[rnode.attrs["tensor"]]
                env[rnode] = graph.constant(value, name=f"{anchor.name}_{rnode.name}")
            else:
                env[rnode] = graph.call(rnode.op, [env[i] for i in rnode.inputs], rnode.attrs,
                                        name=f"{anchor.name}_{rnode.name}")
            new_nodes.append(env[rnode])
    return new_nodes, env[_single_result(replacement, "replacement")]


def _erase_matched(graph, mapping):
    for gnode in reversed(graph.nodes):
        if gnode in mapping.values() and gnode.graph is graph and not gnode.users:
            if gnode.op != "placeholder":
                graph.erase(gnode)


def replace_pattern(g, pattern_fn, replacement_fn, example_inputs=None):
    """Replace every non-overlapping occurrence of ``pattern_fn`` in ``g`` by ``replacement_fn``.

    Both are plain Needle functions of Tensors with the same arguments (or traced Graphs).
    A pattern's inputs match any node; its ops must match op, attrs and use-def structure
    exactly (inputs in order, no commutativity). A match whose intermediate values are used
    outside it is skipped. ``g`` is mutated in place; run ``dce`` afterwards for dead params.

    Returns
    -------
    list[Match]
    """
    pattern = trace_function(pattern_fn, example_inputs)
    replacement = trace_function(replacement_fn, example_inputs)
    if len(pattern.placeholders) != len(replacement.placeholders):
        raise IRError(f"replace_pattern: the pattern takes {len(pattern.placeholders)} inputs "
                      f"but the replacement takes {len(replacement.placeholders)}")
    result = _single_result(pattern, "pattern")
    if result.op == "placeholder":
        raise IRError("replace_pattern: the pattern must compute something, not return an input")
    matches, taken = [], set()
    for gnode in g.nodes:
        if gnode.graph is not g or gnode.op != result.op:
            continue
        mapping = _find_match(pattern, result, g, gnode, taken)
        if mapping is None:
            continue
        taken.update(n for p, n in mapping.items() if p.op != "placeholder")
        bindings = dict(zip(replacement.placeholders,
                            (mapping[p] for p in pattern.placeholders)))
        new_nodes, new_result = _insert_replacement(g, replacement, bindings, gnode)
        gnode.replace_all_uses_with(new_result)
        _erase_matched(g, mapping)
        matches.append(Match(gnode, {p.name: n for p, n in mapping.items()}, new_nodes))
    return matches


def rewrite(g, rules, max_iterations=100, after_sweep=None):
    """Apply ``rules`` to every node, sweep after sweep, until none fires (a fixed point).

    The first rule that fires on a node wins for that sweep. ``after_sweep(g) -> bool`` runs
    after each sweep (e.g. ``Graph.eliminate_dead_code``); its True keeps the sweeps going.
    Returns the number of rewrites; IRError if ``max_iterations`` sweeps still change the graph
    (a rule that undoes another). Replaced nodes are erased; their inputs may become dead
    (run ``dce``, or pass it as ``after_sweep``).
    """
    for rule in rules:
        if not isinstance(rule, Rule) or not callable(rule.fn):
            raise IRError(f"rewrite: {rule!r} is not a Rule(op, fn) with a callable fn")
    total = 0
    for _ in range(max_iterations):
        fired = _sweep(g, rules)
        cleaned = after_sweep(g) if after_sweep is not None else False
        if not fired and not cleaned:
            return total
        total += fired
    raise IRError(f"rewrite: rules still changed the graph after {max_iterations} sweeps; "
                  "two rules probably undo each other")


def _sweep(g, rules):
    fired = 0
    for node in g.nodes:
        for rule in rules:
            if node.graph is not g or (rule.op is not None and not _op_matches(rule.op, node)):
                continue
            with g.inserting_before(node):
                new = rule.fn(node)
            if rule.in_place:
                if new is True:
                    fired += 1
                    break
                if new is not False and new is not None:
                    raise IRError(f"rewrite: in-place rule for {rule.op!r} returned {new!r} for "
                                  f"%{node.name}; expected True (changed) or False")
                continue
            if new is None or new is node:
                continue
            if not isinstance(new, Node) or new.graph is not g:
                raise IRError(f"rewrite: rule for {rule.op!r} returned {new!r} for %{node.name};"
                              " expected a Node of the same graph or None")
            node.replace_all_uses_with(new)
            if not node.users:
                g.erase(node)
            fired += 1
            break
    return fired


def _op_matches(op, node):
    return node.op == op if isinstance(op, str) else node.op in op
