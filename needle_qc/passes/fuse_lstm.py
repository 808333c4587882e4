"""``fuse-lstm-cell``: an unrolled LSTM step, found by its dataflow, -> one ``lstm_cell``.

The step it matches (any module names; each add and mul may have its operands either way round,
which is exact in floating point)::

    z = ((x @ W_ih + h @ W_hh) [+ broadcast(b_ih)]) [+ broadcast(b_hh)]   # [N, 4H]
    s = split(reshape(z, (N, 4, H)), axis=1)                              # gates, some order
    c' = sigmoid(s[f]) * c + sigmoid(s[i]) * tanh(s[g])
    h' = sigmoid(s[o]) * tanh(c')

A sigmoid may also be written out as the course's ``Sigmoid`` module computes it,
``power_scalar(add_scalar(exp(negate(v)), 1), -1)``, i.e. ``(1 + exp(-v)) ** -1``; and a model
that adds the two biases first, ``z = (x @ W_ih + h @ W_hh) + broadcast(b_ih + b_hh)``, fuses
with that sum as ``b_ih`` and a zero ``b_hh`` (the same sums). The cell then evaluates with the
``sigmoid`` op: within float32 rounding of the written-out formula, not its bits.

The gate order is read from which part goes where (Needle's is i, f, g, o). A match whose
intermediate values are read outside the step is left alone; so is anything else. ``h`` is the
product whose left operand is a state (a ``full``/constant, or a cell output) when only one is,
else the second one (Needle's ``x @ W_ih + h @ W_hh``). One bias gets a zero partner (adding
+0.0 changes no sum). The anchor is ``h'``: cells fuse in time order, so a step's ``h`` and
``c`` are the previous ``lstm_cell``'s outputs.
"""

import numpy as np

from needle_qc.errors import IRError
from needle_qc.ir.pattern import Rule, rewrite
from needle_qc.passes import register_pass


def _sigmoid_of(node):
    """``(v, inner nodes)`` when ``node`` is ``sigmoid(v)`` or the written-out
    ``power_scalar(add_scalar(exp(negate(v)), 1), -1)``; else None."""
    if node.op == "sigmoid":
        return node.inputs[0], []
    if node.op != "power_scalar" or node.attrs.get("scalar") != -1:
        return None
    one_plus = node.inputs[0]
    if one_plus.op != "add_scalar" or one_plus.attrs.get("scalar") != 1:
        return None
    exp = one_plus.inputs[0]
    if exp.op != "exp" or exp.inputs[0].op != "negate":
        return None
    return exp.inputs[0].inputs[0], [one_plus, exp, exp.inputs[0]]


def _gate(node, act):
    """``(index, split, inner nodes)`` when ``node`` is ``act(tuple_get_item(split))`` (a
    sigmoid possibly written out), else None."""
    found = _sigmoid_of(node) if act == "sigmoid" else \
        (node.inputs[0], []) if node.op == act else None
    if found is None or found[0].op != "tuple_get_item":
        return None
    item, inner = found
    return item.attrs["index"], item.inputs[0], inner


def _one_of(node, act):
    """Operands of binary ``node`` as ``(the gate act(...), the other)``, trying both orders."""
    a, b = node.inputs
    if _gate(a, act) is not None:
        return a, b
    if _gate(b, act) is not None:
        return b, a
    return None, None


def _tail(h_mul):
    """The elementwise tail behind ``h'``: (gates, c, c', intermediates) or None."""
    if len(h_mul.inputs) != 2:
        return None
    for tanh_c, sig_o in (h_mul.inputs, h_mul.inputs[::-1]):
        o = _gate(sig_o, "sigmoid")
        if tanh_c.op != "tanh" or tanh_c.inputs[0].op != "add" or o is None:
            continue
        c_new = tanh_c.inputs[0]
        found = _c_update(c_new)
        if found is not None:
            gates, c, inner = found
            gates["o"] = o[:2]
            return gates, c, c_new, inner + [tanh_c, sig_o, *o[2]]
    return None


def _c_update(c_new):
    """``c' = sig(f) * c + sig(i) * tanh(g)`` -> ({role: (index, split)}, c, intermediates)."""
    for ig, fc in (c_new.inputs, c_new.inputs[::-1]):
        if ig.op != "mul" or fc.op != "mul":
            continue
        tanh_g, sig_i = _one_of(ig, "tanh")
        sig_f, c = _one_of(fc, "sigmoid")
        if tanh_g is None or sig_f is None or _gate(sig_i, "sigmoid") is None:
            continue
        found = {"i": _gate(sig_i, "sigmoid"), "f": _gate(sig_f, "sigmoid"),
                 "g": _gate(tanh_g, "tanh")}
        chains = [n for g in found.values() for n in g[2]]
        return {role: g[:2] for role, g in found.items()}, c, \
            [ig, fc, tanh_g, sig_i, sig_f, *chains]
    return None


def _split_source(gates):
    """The [N, 4H] gate sum behind one split of (N, 4, H) on axis 1, the gate order, and the
    split's nodes; None if the four parts are not the four items of one such split."""
    splits = {split for _, split in gates.values()}
    order = {index: role for role, (index, _) in gates.items()}
    if len(splits) != 1 or sorted(order) != [0, 1, 2, 3]:
        return None
    split = splits.pop()
    shape = split.inputs[0].meta.get("shape") or ()
    if split.op != "split" or split.attrs["axis"] != 1 or len(shape) != 3 or shape[1] != 4:
        return None
    reshape = split.inputs[0]
    if reshape.op != "reshape":
        return None
    items = [u for u in split.users]
    return reshape.inputs[0], "".join(order[k] for k in range(4)), [reshape, split, *items]


def _bias(node, n4):
    """``b`` of ``broadcast_to(b)`` with 4H values (a reshape of a 4H vector stripped)."""
    if node.op != "broadcast_to":
        return None
    b = node.inputs[0]
    if b.op == "reshape" and _size(b.inputs[0]) == n4:
        b = b.inputs[0]
    return b if _size(b) == n4 else None


def _size(node):
    shape = node.meta.get("shape")
    if shape is None or any(not isinstance(d, int) for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))


def _sum_terms(z, n4):
    """``((mm + mm) [+ b]) [+ b]`` -> ([matmul, matmul], [biases], adds) or None."""
    biases, adds = [], []
    while True:
        if z.op != "add":
            return None
        adds.append(z)
        a, b = z.inputs
        if a.op == "matmul" and b.op == "matmul":
            return [a, b], biases[::-1], adds
        for term, rest in ((b, a), (a, b)):
            bias = _bias(term, n4)
            if bias is not None and len(biases) < 2:
                biases.append(bias)
                z = rest
                break
        else:
            return None


def _is_state(node):
    if node.op in ("full", "constant"):
        return True
    return node.op == "tuple_get_item" and node.inputs[0].op == "lstm_cell"


def _x_and_h(mms):
    first, second = mms
    if _is_state(first.inputs[0]) and not _is_state(second.inputs[0]):
        first, second = second, first
    return first, second


def _contained(inner, outputs):
    """No intermediate but the ``outputs`` (h', c') is read outside the step."""
    inside = set(inner)
    return all(n in outputs or all(u in inside for u in n.users) for n in inner)


def fuse_lstm_step(h_mul):
    """The in-place rule: ``h'`` of a recognised step -> ``tuple_get_item(lstm_cell, 0)``."""
    tail = _tail(h_mul)
    if tail is None:
        return False
    gates, c, c_new, inner = tail
    source = _split_source(gates)
    if source is None:
        return False
    z, order, split_nodes = source
    n4 = (z.meta.get("shape") or (None, None))[-1]
    terms = _sum_terms(z, n4) if isinstance(n4, int) else None
    if terms is None:
        return False
    mms, biases, adds = terms
    mm_x, mm_h = _x_and_h(mms)
    inner = [h_mul, c_new, *inner, *split_nodes, *adds, mm_x, mm_h]
    if not _contained(inner, (h_mul, c_new)):
        return False
    return _replace(h_mul, c_new, [mm_x.inputs[0], mm_h.inputs[0], c, mm_x.inputs[1],
                                   mm_h.inputs[1]], biases, order, mm_x, inner)


def _zero_partner(graph, biases):
    """``([zero b_hh], [nodes made])`` for a lone bias: one zero constant per bias node, shared
    by every step that reads that bias (``([], [])`` for none or two)."""
    if len(biases) != 1:
        return [], []
    name = f"{biases[0].name}_zero_partner"
    found = [n for n in graph.nodes if n.name == name and n.op == "constant"]
    if found:
        return found, []
    dtype = np.dtype(biases[0].meta["dtype"])
    made = [graph.constant(np.zeros(_size(biases[0]), dtype), name=name)]
    return made, made


def _replace(h_mul, c_new, inputs, biases, order, mm_x, inner):
    graph = h_mul.graph
    with graph.inserting_before(c_new):
        zero, made = _zero_partner(graph, biases)
        try:
            cell = graph.call("lstm_cell", [*inputs, *biases, *zero], {"gate_order": order})
        except IRError:  # shapes that are not an LSTM cell's (the rule says why): leave it
            for node in made:
                graph.erase(node)
            return False
        h_out = graph.call("tuple_get_item", [cell], {"index": 0}, name=f"{cell.name}_h")
        c_out = graph.call("tuple_get_item", [cell], {"index": 1}, name=f"{cell.name}_c")
    if "module_path" in mm_x.meta:
        cell.meta["module_path"] = mm_x.meta["module_path"]
    c_new.replace_all_uses_with(c_out, except_for=inner)
    h_mul.replace_all_uses_with(h_out)
    for node in sorted(inner, key=graph.nodes.index, reverse=True):
        if node.graph is graph and not node.users:
            graph.erase(node)
    return True


RULES = (
    # mul(sigmoid(o), tanh(f*c + i*g)) of one split gate sum -> lstm_cell(x, h, c, W.., b..)
    Rule("mul", fuse_lstm_step, in_place=True),
)


@register_pass("fuse-lstm-cell")
def fuse_lstm_cell(graph):
    """Fuse every recognised LSTM step (in place); True if any."""
    return rewrite(graph, RULES) > 0
