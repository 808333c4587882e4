"""``fuse-lstm-layer``: a chain of fused LSTM steps over one split sequence -> one layer op.

What it matches (``lstm_cell`` chains -> ``lstm_layer``, ``qlstm_cell`` chains ->
``qlstm_layer``)::

    s = split(xs, axis=0)                                  # T items, xs (T, N, I)
    (h_1, c_1) = cell(s[0], h0, c0, W..);  (h_2, c_2) = cell(s[1], h_1, c_1, W..) ...  # T steps

each step reading the previous one's ``h`` and ``c`` and the same weights and attrs (a static
``qlstm_cell``'s qparams become the layer's per-step tuples). The layer gives ``(hs, h_T, c_T)``:
a ``stack(h_1 .. h_T, axis=0)`` becomes ``hs``; any other reader of a step's ``h`` reads item t
of one ``split(hs, axis=0)``, so the next layer of a multi-layer LSTM (whose ``x_t`` are those
``h``) is again a chain over one split and fuses in turn. A chain whose intermediate ``c`` is
read outside it, or whose ``x_t`` are not the items of one split in order, stays cells.
The numbers do not change: the layer's evaluation (and kernel) is the cells', step by step.
"""

from needle_qc.opset.recurrent import STATIC_KEYS
from needle_qc.passes import register_pass

LAYER_OF = {"lstm_cell": "lstm_layer", "qlstm_cell": "qlstm_layer"}


def _item(cell, index):
    """The one ``tuple_get_item(cell, index)``, or None (none or several)."""
    found = [u for u in cell.users if u.op == "tuple_get_item" and u.attrs["index"] == index]
    return found[0] if len(found) == 1 else None


def _same_step(a, b):
    """Same op, weights, gate order and quantization kind (static vs per call)."""
    return a.op == b.op and len(a.inputs) == len(b.inputs) and \
        all(x is y for x, y in zip(a.inputs[3:], b.inputs[3:])) and \
        a.attrs.get("gate_order") == b.attrs.get("gate_order") and \
        a.attrs.get("dtype") == b.attrs.get("dtype") and \
        (a.attrs.get("x_scale") is None) == (b.attrs.get("x_scale") is None)


def _next_step(cell):
    """The step that reads ``cell``'s h and c as its state (c read by nothing else), or None."""
    h, c = _item(cell, 0), _item(cell, 1)
    if h is None or c is None or len(c.users) != 1:
        return None
    nxt = c.users[0]
    if nxt.op != cell.op or nxt.inputs[1] is not h or nxt.inputs[2] is not c or \
            nxt.inputs[0] in (h, c) or not _same_step(cell, nxt):
        return None
    return nxt


def _chains(graph):
    """Every maximal chain of steps, in graph order."""
    seen, chains = set(), []
    for node in graph.nodes:
        if node.op not in LAYER_OF or node in seen:
            continue
        chain = [node]
        while (nxt := _next_step(chain[-1])) is not None:
            chain.append(nxt)
        seen.update(chain)
        chains.append(chain)
    return chains


def _sequence(chain):
    """The split whose items 0..T-1 are the steps' x, in order; None otherwise."""
    xs = [cell.inputs[0] for cell in chain]
    split = xs[0].inputs[0] if xs[0].op == "tuple_get_item" else None
    if split is None or split.op != "split" or split.attrs.get("axis") != 0 or \
            len(split.meta.get("shape") or ()) != len(chain):
        return None
    for t, x in enumerate(xs):
        if x.op != "tuple_get_item" or x.inputs[0] is not split or x.attrs["index"] != t:
            return None
    return split


def _layer_attrs(chain):
    attrs = dict(chain[0].attrs)
    for key in STATIC_KEYS:
        if attrs.get(key) is not None:
            attrs[key] = tuple(cell.attrs[key] for cell in chain)
    return attrs


def _fuse(chain, split):
    graph, first, last = chain[0].graph, chain[0], chain[-1]
    hs_items = [_item(cell, 0) for cell in chain]
    with graph.inserting_before(first):
        layer = graph.call(LAYER_OF[first.op], [split.inputs[0], *first.inputs[1:]],
                           _layer_attrs(chain), name=f"{first.name}_layer")
        hs, h_last, c_last = (graph.call("tuple_get_item", [layer], {"index": k},
                                         name=f"{layer.name}_{role}")
                              for k, role in enumerate(("hs", "h", "c")))
    if "module_path" in first.meta:
        layer.meta["module_path"] = first.meta["module_path"]
    _read_hs(graph, chain, hs_items, hs, layer)
    if hs_items[-1] is not None:
        hs_items[-1].replace_all_uses_with(h_last)
    c_item = _item(last, 1)
    if c_item is not None:
        c_item.replace_all_uses_with(c_last)
    for cell in reversed(chain):
        for item in list(cell.users):
            graph.erase(item)
        graph.erase(cell)
    _drop_unused(graph, split)


def _read_hs(graph, chain, hs_items, hs, layer):
    """``stack(h_1..h_T, axis=0)`` -> ``hs``; the other readers of an intermediate h, and the
    steps of a next layer reading the last one as their x, -> its item of ``split(hs)``."""
    for user in {u for h in hs_items if h is not None for u in h.users}:
        if user.op == "stack" and user.attrs.get("axis") == 0 and \
                list(user.inputs) == hs_items:
            user.replace_all_uses_with(hs)
            graph.erase(user)
    view = None
    for t, h in enumerate(hs_items):
        if h is None:
            continue
        inside = chain[t + 1:t + 2]
        outside = [u for u in h.users if u not in inside and
                   (t + 1 < len(chain) or (u.op in LAYER_OF and u.inputs[0] is h))]
        if not outside:
            continue
        if view is None:
            with graph.inserting_before(chain[0]):
                view = graph.call("split", [hs], {"axis": 0}, name=f"{layer.name}_steps")
        with graph.inserting_before(chain[0]):
            item = graph.call("tuple_get_item", [view], {"index": t}, name=f"{view.name}_{t}")
        h.replace_all_uses_with(item, except_for=tuple(u for u in h.users if u not in outside))


def _drop_unused(graph, split):
    for item in [u for u in split.users if not u.users]:
        graph.erase(item)
    if not split.users:
        graph.erase(split)


def has_layers(graph):
    """True when ``fuse-lstm-layer`` would change ``graph`` (it looks, changes nothing)."""
    return any(_sequence(chain) is not None for chain in _chains(graph))


@register_pass("fuse-lstm-layer")
def fuse_lstm_layer(graph):
    """Fuse every chain of ``lstm_cell`` / ``qlstm_cell`` steps over one split (in place);
    True if any."""
    changed = False
    for chain in _chains(graph):  # in graph order: a layer's h views exist for the next layer
        split = _sequence(chain)
        if split is not None:
            _fuse(chain, split)
            changed = True
    return changed
