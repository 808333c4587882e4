"""What a graph picture shows: one box per op (weights folded in), repeats collapsed, the diff.

:func:`build_view` turns a Graph into :class:`Box` es and edges that ``viz.to_dot`` renders:

* **folding**: ``param``/``constant``/``full`` nodes and whatever is computed from them alone
  (a weight's ``dequantize``) become lines inside the box of each node that uses them;
  ``params=True`` draws them as boxes of their own. ``tuple_get_item`` becomes an edge label.
* **size**: above ``max_nodes`` boxes, runs of identical consecutive blocks (an unrolled LSTM's
  time steps) keep their first and last copy and the copies between become one box; if that is
  not enough, the middle of the graph becomes one "not drawn" box (the picture says so).
* **diff** against an older graph: nodes matched by name; a node whose op, type, qparams,
  attrs or weights differ is "changed" (with what it was), a new name is "added", and a
  removed node is listed on the nearest surviving node it came after (a batch norm on its
  conv), never drawn as a disconnected ghost.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from needle_qc.opset import traits


def _stored(node):
    return traits(node.op).kind == "tensor"  # param / constant: drawn inside their users
SOURCE_OPS = ("full",)
"""Ops computed from nothing (a zero initial state): folded like stored tensors."""
MIN_REPEATS = 4
"""A run of identical blocks is collapsed only from this many copies on (it keeps two)."""


@dataclass
class Box:
    """One drawn box: an IR node, or a group of nodes (``kind`` "repeat" or "elided")."""

    key: str  # the DOT node id; group keys start with "#", which no IR name contains
    kind: str = "node"
    node: object = None
    folded: list = field(default_factory=list)  # (role, description) of folded inputs
    members: list = field(default_factory=list)  # nodes a group box stands for
    reps: int = 0  # repeat boxes: how many copies the box stands for
    period: int = 0  # repeat boxes: nodes per copy
    status: str | None = None  # diff: "added" or "changed"
    was: str = ""  # diff: what a changed node was
    removed_here: list = field(default_factory=list)  # diff: older nodes removed after this


@dataclass
class View:
    """Boxes in graph order, edges ``(tail key, head key, label)``, and notes for the title."""

    boxes: list
    edges: list
    notes: list
    diff: dict | None
    total: int


# ----------------------------------------------------------------------------- folding

def folded_names(graph):
    """Names of nodes computed from stored tensors only (drawn inside their users' boxes)."""
    folded = set()
    for node in graph.nodes:  # topological order: inputs are decided first
        if node.op in ("placeholder", "output"):
            continue
        if _stored(node) or (node.op in SOURCE_OPS and not node.inputs):
            folded.add(node.name)
        elif node.inputs and all(i.name in folded for i in node.inputs):
            folded.add(node.name)
    return folded


def describe_folded(node, type_text, depth=0):
    """``i8[3,3,1,16]`` for a stored tensor, ``dequantize(i8[..], f32[16])`` for one computed
    from stored tensors (one level deep: a longer chain reads as ``op(...)``)."""
    if not node.inputs:
        prefix = "" if _stored(node) else f"{node.op} "
        return prefix + type_text(node)
    if depth >= 1:
        return f"{node.op}(...)"
    inner = ", ".join(describe_folded(i, type_text, depth + 1) for i in node.inputs)
    return f"{node.op}({inner})"


def _role(node):
    """The last part of a dotted name: ``layers.0.conv.weight_q`` -> ``weight_q``."""
    return node.name.rsplit(".", 1)[-1]


# ----------------------------------------------------------------------------- the view

def build_view(graph, type_text, older=None, params=False, max_nodes=None):
    """The :class:`View` of ``graph``; ``type_text(node)`` formats a node's type."""
    folded = set() if params else folded_names(graph)
    drawn = [n for n in graph.nodes if n.name not in folded and not _is_edge(n, folded)]
    boxes = {}
    for node in drawn:
        lines = [(_role(i), describe_folded(i, type_text)) for i in dict.fromkeys(node.inputs)
                 if i.name in folded]
        boxes[node.name] = Box(key=node.name, node=node, folded=lines)
    diff = _apply_diff(graph, older, boxes, folded) if older is not None else None
    units, notes = _size_units(drawn, boxes, max_nodes)
    unit_of = {}
    for unit in units:
        for member in unit.members or [unit.node]:
            unit_of[member.name] = unit.key
    edges = _edges(drawn, folded, unit_of)
    return View(units, edges, notes, diff, len(graph.nodes))


def _is_edge(node, folded):
    """A tuple_get_item of a drawn tuple is drawn as an edge label, not a box."""
    return node.op == "tuple_get_item" and node.inputs and node.inputs[0].name not in folded


def _data_inputs(node, folded):
    """(producer, edge label) of each drawn input; tuple_get_item resolved to its tuple."""
    out = []
    for inp in dict.fromkeys(node.inputs):
        if inp.name in folded:
            continue
        if _is_edge(inp, folded):
            out.append((inp.inputs[0], f"[{inp.attrs.get('index')}]"))
        else:
            out.append((inp, ""))
    return out


def _edges(drawn, folded, unit_of):
    edges = {}
    for node in drawn:
        head = unit_of[node.name]
        for producer, label in _data_inputs(node, folded):
            tail = unit_of.get(producer.name)
            if tail is None or tail == head:
                continue
            grouped = tail.startswith("#") or head.startswith("#")  # a group box: no labels
            key = (tail, head)
            if key not in edges:
                edges[key] = "" if grouped else label
            elif edges[key] != label:
                edges[key] = ""
    return [(t, h, label) for (t, h), label in edges.items()]


# ----------------------------------------------------------------------------- size

def _signature(box):
    """What makes two boxes "the same step": op, fused activation, type, weights used."""
    node = box.node
    meta = node.meta
    return (node.op, node.attrs.get("activation"), str(meta.get("dtype")),
            str(meta.get("shape")), tuple(text for _, text in box.folded))


def best_repeat(sigs, lo, hi, min_reps=MIN_REPEATS):
    """The run of identical consecutive blocks in ``sigs[lo:hi]`` whose collapse saves the most
    boxes: ``(saved, start, period, reps)`` or None. A smaller period wins a tie."""
    best = None
    for period in range(1, (hi - lo) // min_reps + 1):
        run = 0
        for i in range(lo, hi - period + 1):
            if i < hi - period and sigs[i] == sigs[i + period]:
                run += 1
                continue
            reps = (run + period) // period
            if run and reps >= min_reps:
                saved = (reps - 2) * period - 1
                if best is None or saved > best[0]:
                    best = (saved, i - run, period, reps)
            run = 0
    return best


def _size_units(drawn, boxes, max_nodes):
    """Boxes in graph order, with repeats collapsed and then the middle elided if needed."""
    units = [boxes[n.name] for n in drawn]
    if max_nodes is None or len(units) <= max_nodes:
        return units, []
    units, notes = _collapse_repeats(units)
    if len(units) > max_nodes:
        units, note = _elide_middle(units, max_nodes)
        notes.append(note)
    return units, notes


def _collapse_repeats(units):
    sigs = [_signature(u) for u in units]
    segments, found = [(0, len(units))], []
    # over the cap, every run of repeats collapses (not just enough of them): a picture with
    # some time steps collapsed and others spelled out reads as if the steps differed
    while segments:
        candidates = [(best_repeat(sigs, lo, hi), (lo, hi)) for lo, hi in segments]
        candidates = [c for c in candidates if c[0] is not None]
        if not candidates:
            break
        (saved, start, period, reps), (lo, hi) = max(candidates, key=lambda c: c[0][0])
        found.append((start, period, reps))
        segments.remove((lo, hi))
        segments += [s for s in ((lo, start + period), (start + (reps - 1) * period, hi))
                     if s[1] - s[0] >= MIN_REPEATS]
    out, notes, skip = [], [], {}
    for start, period, reps in found:
        skip[start + period] = (period, reps)
    i = 0
    while i < len(units):
        if i in skip:
            period, reps = skip[i]
            members = units[i:i + (reps - 2) * period]
            out.append(_repeat_box(members, period, reps - 2))
            notes.append(f"{reps - 2} of {reps} repeats of a {period}-node block drawn as one "
                         "box (first and last copies shown)")
            i += len(members)
        else:
            out.append(units[i])
            i += 1
    return out, notes


def _repeat_box(members, period, reps):
    nodes = [m.node for m in members]
    box = Box(key=f"#repeat.{nodes[0].name}", kind="repeat", members=nodes, reps=reps,
              period=period)
    box.status = _group_status(members)
    return box


def _elide_middle(units, max_nodes):
    head = (max_nodes - 1) // 2
    tail = max_nodes - 1 - head
    middle = units[head:len(units) - tail]
    nodes = [n for u in middle for n in (u.members or [u.node])]
    box = Box(key=f"#elided.{nodes[0].name}", kind="elided", members=nodes)
    box.status = _group_status(middle)
    note = (f"{len(nodes)} nodes in the middle not drawn (over max_nodes={max_nodes}); "
            "pass max_nodes=None to draw all")
    return units[:head] + [box] + units[len(units) - tail:], note


def _group_status(members):
    counts = Counter(m.status for m in members if m.status)
    return "changed" if counts else None


def op_counts(nodes):
    """``"qlinear x2, qadd x4"``: the ops of a group, most frequent first."""
    counts = Counter(n.op for n in nodes)
    return ", ".join(f"{op} x{k}" for op, k in counts.most_common())


# ----------------------------------------------------------------------------- diff

def _apply_diff(graph, older, boxes, folded):
    """Mark ``boxes`` added/changed against ``older``; returns the summary counts."""
    old = {n.name: n for n in older.nodes}
    old_folded = folded_names(older)
    added = changed = 0
    for name, box in boxes.items():
        before = old.get(name)
        if before is None:
            box.status, added = "added", added + 1
            continue
        was = _what_changed(before, box.node, old_folded, folded)
        if was:
            box.status, box.was, changed = "changed", was, changed + 1
    names = {n.name for n in graph.nodes}
    removed = [n for n in older.nodes if n.name not in names]
    for node in removed:
        if _stored(node) or node.name in old_folded:
            continue
        anchor = _surviving_anchor(node, boxes, old_folded)
        if anchor is not None:
            anchor.removed_here.append(node)
    return {"added": added, "changed": changed, "removed": len(removed),
            "removed_ops": Counter("weights/consts" if n.name in old_folded else n.op
                                  for n in removed)}


def _what_changed(before, node, old_folded, folded):
    """Text saying how ``node`` differs from ``before`` ("" when it does not)."""
    from needle_qc.ir.printer import format_type

    was = []
    if before.op != node.op:
        was.append(before.op)
    bare = {k: before.meta.get(k) for k in ("shape", "dtype")}
    if bare != {k: node.meta.get(k) for k in ("shape", "dtype")}:
        was.append(format_type(bare) or "untyped")
    parts = ["was " + " ".join(was)] if was else []
    if not parts and before.meta.get("qparams") != node.meta.get("qparams"):
        parts.append("qparams changed")
    old_attrs = {k: v for k, v in before.attrs.items() if k != "tensor"}
    new_attrs = {k: v for k, v in node.attrs.items() if k != "tensor"}
    keys = sorted(k for k in set(old_attrs) | set(new_attrs)
                  if old_attrs.get(k) != new_attrs.get(k))
    if keys and before.op == node.op:
        parts.append("attrs " + ", ".join(keys))
    old_w = [i.name for i in before.inputs if i.name in old_folded]
    new_w = [i.name for i in node.inputs if i.name in folded]
    if old_w != new_w and (old_w or new_w):
        parts.append("weights changed")
    return "; ".join(parts)


def _surviving_anchor(node, boxes, old_folded):
    """The nearest node ``node`` came after (first data input, walking up) that is drawn."""
    cur = node
    for _ in range(10_000):
        data = [i for i in cur.inputs if i.name not in old_folded]
        if not data:
            return None
        cur = data[0]
        if cur.name in boxes:
            return boxes[cur.name]
    return None
