"""Graph pictures (graphviz): a box per op, colour = dtype, error in dB, diff, large graphs cut.

What is drawn is decided in :mod:`needle_qc.tools.viz_view` (weights folded into their layer's
box, repeated blocks collapsed, the diff); this module turns it into DOT with a title and a
legend and renders it. ``to_networkx`` gives the plain node/edge structure.
"""

import html
import math
import shutil
import warnings
from pathlib import Path

from needle_qc.ir.printer import SHORT_DTYPES, format_tensor_type
from needle_qc.tools.viz_view import build_view, op_counts

DTYPE_COLORS = {
    "float32": "#cfe2f3", "float16": "#d9d2e9", "bfloat16": "#e6d7f5", "float64": "#b7d3ee",
    "int8": "#fce5cd", "uint8": "#fff2cc", "int32": "#d9d9d9", "int4": "#f4cccc",
    "uint4": "#f9dede",
}
"""Fill color per output dtype; tuple values and unknown dtypes are white."""

ADDED, REMOVED, CHANGED = "#38a169", "#e53e3e", "#ed8936"
"""Diff colors of ``draw(..., compare=older)``: border green added, orange changed; nodes
removed are listed in red on the node they came after."""

SQNR_BANDS = ((40.0, "#9ae6b4"), (30.0, "#faf089"), (20.0, "#fbd38d"), (-math.inf, "#feb2b2"))
"""Colour of the dB cell on a node: >= 40 dB green, >= 30 yellow, >= 20 orange, else red."""

MAX_NODES = 150
"""Default cap of drawn boxes: above it repeats collapse, then the middle is cut (noted)."""

_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
_GRAY = "#666666"


def to_networkx(graph):
    """A ``networkx.DiGraph`` of ``graph``: one node per IR node, keyed by name.

    Node attributes: ``op``, ``shape``, ``dtype``, ``attrs``, ``module_path``, ``qparams``,
    ``source``. Edge ``u -> v`` attributes: ``index`` (the first input position of ``u`` in
    ``v``) and ``indices`` (all of them, when a value is used twice).
    """
    import networkx as nx

    nxg = nx.DiGraph()
    for node in graph.nodes:
        meta = node.meta
        nxg.add_node(node.name, op=node.op, shape=meta.get("shape"), dtype=meta.get("dtype"),
                     attrs=dict(node.attrs), module_path=meta.get("module_path"),
                     qparams=meta.get("qparams"), source=meta.get("source"))
    for node in graph.nodes:
        for index, inp in enumerate(node.inputs):
            if nxg.has_edge(inp.name, node.name):
                nxg.edges[inp.name, node.name]["indices"] += (index,)
            else:
                nxg.add_edge(inp.name, node.name, index=index, indices=(index,))
    return nxg


# ----------------------------------------------------------------------------- text

def sig4(value):
    """A number to 4 significant digits (a scale of 0.022093191742897034 -> 0.02209)."""
    return f"{float(value):.4g}"


def format_qparams(qparams):
    """``s=0.02209 z=0``; a per-channel scale reads ``s: 16 values``."""
    if not qparams:
        return ""
    parts = []
    for key, value in qparams.items():
        if isinstance(value, (list, tuple)):
            parts.append(f"{key}: {len(value)} values")
        elif isinstance(value, float):
            parts.append(f"{key}={sig4(value)}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def type_text(node):
    """The node's type without qparams: ``u8[N,16,28,28]`` (tuples joined by commas)."""
    shape, dtype = node.meta.get("shape"), node.meta.get("dtype")
    if shape is None:
        return ""
    if isinstance(dtype, tuple):
        parts = [format_tensor_type(s, d) for s, d in zip(shape, dtype)]
        if len(parts) > 2 and len(set(parts)) == 1:  # a split into 20 equal parts
            return f"({len(parts)} x {parts[0]})"
        return "(" + ", ".join(parts) + ")"
    return format_tensor_type(shape, dtype)


_QUIET_ATTRS = ("observer", "placeholder", "quantize", "dequantize", "requantize")
"""Ops whose attrs say nothing the title and type do not (axis=-1 group_size=0)."""
_HIDDEN_ATTRS = ("tensor", "dtype", "activation", "structure", "symmetric")


def _attr_text(node, limit=3):
    parts = []
    for key, value in node.attrs.items():
        if key in _HIDDEN_ATTRS or value is None:
            continue
        shown = sig4(value) if isinstance(value, float) else str(value).replace("'", "")
        parts.append(f"{key}={shown}")
    return " ".join(parts[:limit]) + (" ..." if len(parts) > limit else "")


def _cut(text, keep=44):
    """Long module paths: keep the tail, which tells nodes apart."""
    return text if len(text) <= keep else "..." + text[-(keep - 3):]


def _esc(text):
    return html.escape(str(text), quote=True)


def _row(text, size=None, color=None, bold=False, bgcolor=None, align="CENTER"):
    body = _esc(text)
    body = f"<B>{body}</B>" if bold else body
    font = "".join([f' POINT-SIZE="{size}"' if size else "", f' COLOR="{color}"' if color else ""])
    body = f"<FONT{font}>{body}</FONT>" if font else body
    bg = f' BGCOLOR="{bgcolor}"' if bgcolor else ""
    return f'<TR><TD ALIGN="{align}"{bg}>{body}</TD></TR>'


def _table(rows):
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
            + "".join(rows) + "</TABLE>>")


# ----------------------------------------------------------------------------- boxes

def sqnr_fill(db):
    """The dB cell colour (:data:`SQNR_BANDS`); NaN is gray."""
    if db is None or math.isnan(db):
        return "#e2e8f0"
    return next(color for bound, color in SQNR_BANDS if db >= bound)


def _db_text(db):
    if db is None or math.isnan(db):
        return "SQNR n/a"
    return "SQNR exact" if math.isinf(db) and db > 0 else f"SQNR {db:.1f} dB"


def _title(node):
    op = node.op
    act = node.attrs.get("activation")
    if op == "observer":
        sign = "sym" if node.attrs.get("symmetric") else "asym"
        return f"observer -> {_short_dtype(node.attrs.get('dtype'))} {sign}"
    if op in ("quantize", "requantize") and node.attrs.get("dtype"):
        op = f"{op} -> {_short_dtype(node.attrs['dtype'])}"
    return f"{op} + {act}" if act else op


def _short_dtype(dtype):
    return SHORT_DTYPES.get(dtype, str(dtype))


def _node_label(box, errors):
    node = box.node
    rows = [_row(_title(node), bold=True), _row(f"%{_cut(node.name)}", size=8, color=_GRAY)]
    if node.op not in ("observer", "output"):
        rows.append(_row(" ".join(t for t in (type_text(node), format_qparams(
            node.meta.get("qparams"))) if t)))
    attrs = _attr_text(node)
    if attrs and node.op not in _QUIET_ATTRS:
        rows.append(_row(attrs, size=8))
    for role, text in box.folded:
        rows.append(_row(f"{role}: {_cut(text, 48)}", size=8, color="#333333", align="LEFT"))
    if errors is not None and node.name in errors:
        db = errors[node.name]
        rows.append(_row(_db_text(db), bold=True, bgcolor=sqnr_fill(db)))
    if box.was:
        rows.append(_row(box.was, size=8, color="#c05621"))
    if box.removed_here:
        gone = ", ".join(dict.fromkeys(n.op for n in box.removed_here))
        rows.append(_row(f"removed after it: {gone}", size=8, color=REMOVED))
    return _table(rows)


def _group_label(box, errors):
    if box.kind == "repeat":
        head = f"x {box.reps} more copies of the {box.period}-node block above"
    else:
        head = f"{len(box.members)} nodes not drawn"
    counts = op_counts(box.members)
    counts = counts if len(counts) <= 60 else counts[:57] + "..."
    rows = [_row(head, bold=True), _row(counts, size=8)]
    if errors is not None:
        values = [errors[n.name] for n in box.members if n.name in errors
                  and not math.isnan(errors[n.name])]
        if values:
            rows.append(_row(f"worst {_db_text(min(values))}", bgcolor=sqnr_fill(min(values))))
    return _table(rows)


def _shape_style(node):
    """(shape, style) by role: observers dashed hexagons, quantize/dequantize trapezia."""
    op = node.op
    if op in ("placeholder", "output"):
        return "oval", "filled"
    if op == "observer":
        return "hexagon", "dashed,filled"
    if op in ("quantize", "requantize"):
        return "invtrapezium", "filled"
    if op == "dequantize":
        return "trapezium", "filled"
    if op in ("param", "constant"):
        return "note", "filled"
    return "box", ("filled,bold" if _is_layer(op) else "rounded,filled")


def _is_layer(op):
    from needle_qc import opset

    try:
        return opset.get_op(op).traits.kind in ("layer", "qlayer")
    except (KeyError, AttributeError):
        return False


def _fill(node, node_colors):
    if node_colors and node.name in node_colors:
        return node_colors[node.name]
    if node.op == "observer":
        return "white"
    dtype = node.meta.get("dtype")
    return DTYPE_COLORS.get(dtype, "white") if isinstance(dtype, str) else "white"


def _emit_box(dot, box, errors, node_colors):
    border = {"added": ADDED, "changed": CHANGED}.get(box.status)
    extra = {"color": border, "penwidth": "3"} if border else {}
    if box.kind != "node":
        dot.node(box.key, _group_label(box, errors), shape="box3d", style="filled",
                 fillcolor="#f7fafc", **extra)
        return
    shape, style = _shape_style(box.node)
    if box.node.op == "observer":
        extra.setdefault("color", _GRAY)
    if shape.endswith("trapezium"):
        extra["margin"] = "0"  # the slanted sides add their own room
    dot.node(box.key, _node_label(box, errors), shape=shape, style=style,
             fillcolor=_fill(box.node, node_colors), **extra)


# ----------------------------------------------------------------------------- title, legend

def _legend_label(graph, view, title, errors):
    rows = [f'<TR><TD ALIGN="LEFT"><B><FONT POINT-SIZE="14">{_esc(title)}'
            "</FONT></B></TD></TR>"]
    folded = any(box.folded for box in view.boxes)
    where = (" (weights, scales and biases are listed inside the box of the op that uses them)"
             if folded else "")
    rows.append(_text_row(f"{view.total} nodes, {len(view.boxes)} boxes drawn{where}"))
    for note in view.notes:
        rows.append(_text_row(note, color=REMOVED))
    dtypes = sorted({n.meta.get("dtype") for n in graph.nodes
                     if isinstance(n.meta.get("dtype"), str)} & set(DTYPE_COLORS),
                    key=list(DTYPE_COLORS).index)
    cells = [(DTYPE_COLORS[d], _short_dtype(d)) for d in dtypes]
    rows.append(_swatch_row("fill = output dtype:", cells))
    rows.append(_text_row("bold box = layer, rounded box = op, hexagon (dashed) = observer, "
                          "trapezium = quantize/dequantize, oval = input/output"))
    if view.diff is not None:
        rows.append(_swatch_row("border = vs older graph:", [
            (ADDED, f"added {view.diff['added']}"), (CHANGED, f"changed {view.diff['changed']}"),
            ("white", f"removed {view.diff['removed']}: " + _removed_text(view.diff))]))
    if errors is not None:
        rows.append(_swatch_row("SQNR vs float (dB):", [(c, f">= {b:g}" if b > -math.inf
                                                          else "< 20") for b, c in SQNR_BANDS]))
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="2">'
            + "".join(rows) + "</TABLE>>")


def _removed_text(diff):
    counts = diff["removed_ops"]
    return ", ".join(f"{k} {op}" for op, k in counts.most_common(6)) or "none"


def _text_row(text, color=None):
    font = f' COLOR="{color}"' if color else ""
    return (f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="10"{font}>{_esc(text)}'
            "</FONT></TD></TR>")


def _swatch_row(head, cells):
    """A head and coloured cells (a nested table spreads them over the legend's width)."""
    tds = "".join(f'<TD BGCOLOR="{c}" BORDER="1"><FONT POINT-SIZE="10">{_esc(t)}</FONT></TD>'
                  for c, t in cells)
    return (f'<TR><TD><TABLE BORDER="0" CELLSPACING="2" CELLPADDING="1"><TR><TD ALIGN="LEFT">'
            f'<FONT POINT-SIZE="10">{_esc(head)}</FONT></TD>{tds}</TR></TABLE></TD></TR>')


def _default_title(graph):
    from needle_qc.pipeline import stage_of

    return f"{stage_of(graph)} graph"


# ----------------------------------------------------------------------------- public

def _error_map(errors):
    """``{node name: dB}`` from a dict or a CompareReport (its local SQNR per row)."""
    if errors is None or isinstance(errors, dict):
        return errors
    rows = getattr(errors, "rows", None)
    if rows is None:
        raise TypeError(f"draw: errors must be a dict {{node name: dB}} or a CompareReport, "
                        f"got {type(errors).__name__}")
    return {r.name: r.local_sqnr for r in rows}


def build(graph, compare=None, *, params=False, max_nodes=MAX_NODES):
    """The :class:`~needle_qc.tools.viz_view.View` :func:`draw` renders (boxes, edges, notes)."""
    graph = getattr(graph, "graph", graph)
    older = getattr(compare, "graph", compare)
    return build_view(graph, type_text, older, params=params, max_nodes=max_nodes)


def to_dot(graph, compare=None, node_colors=None, *, errors=None, params=False,
           max_nodes=MAX_NODES, title=None):
    """The ``graphviz.Digraph`` that :func:`draw` renders (same arguments)."""
    return _render(graph, compare, node_colors, errors, params, max_nodes, title)[0]


def _render(graph, compare, node_colors, errors, params, max_nodes, title):
    """(``graphviz.Digraph``, the View it shows)."""
    import graphviz

    graph = getattr(graph, "graph", graph)
    view = build(graph, compare, params=params, max_nodes=max_nodes)
    errors = _error_map(errors)
    dot = graphviz.Digraph("needle_qc", graph_attr={
        "rankdir": "TB", "nodesep": "0.25", "ranksep": "0.3", "fontname": "Helvetica",
        "labelloc": "t", "labeljust": "l",
        "label": _legend_label(graph, view, title or _default_title(graph), errors)},
        node_attr={"fontname": "Helvetica", "fontsize": "10", "margin": "0.08,0.04"},
        edge_attr={"color": "#4a5568", "arrowsize": "0.6", "fontsize": "8",
                   "fontname": "Helvetica"})
    for box in view.boxes:
        _emit_box(dot, box, errors, node_colors)
    for tail, head, label in view.edges:
        dot.edge(tail, head, label=label) if label else dot.edge(tail, head)
    return dot, view


def draw(g, path, compare=None, node_colors=None, *, errors=None, params=False,
         max_nodes=MAX_NODES, title=None):
    """Draw ``g`` (Graph or CompiledModel) to ``path`` (``.svg``/``.png``/``.pdf``, or ``.dot``).

    One box per op: bold title (op, ``+ relu`` when an activation is fused), name, output type
    with qparams to 4 significant digits, and one line per weight/scale/bias it uses (those are
    not separate boxes; ``params=True`` draws them as boxes). Fill = output dtype
    (:data:`DTYPE_COLORS`); observers are dashed hexagons, quantize/dequantize trapezia. A
    title (``title=``, default the stage) and a legend sit on top.

    ``compare=older_graph`` marks nodes added (green border) and changed (orange, with what
    they were: ``was conv2d``), matched by name; nodes removed are listed on the node they
    came after and counted in the legend. ``errors={name: dB}`` or a CompareReport prints the
    SQNR on each node in a cell coloured by :data:`SQNR_BANDS` (the fill stays the dtype).
    ``node_colors={name: color}`` overrides fills.

    Above ``max_nodes`` boxes, identical consecutive blocks (unrolled time steps) keep their
    first and last copies and one box stands for the rest; if still too many, the middle is
    cut. The picture's legend says what was left out and a warning is raised.
    ``max_nodes=None`` draws everything (graphviz may take minutes on ~600 nodes).

    Without graphviz's ``dot`` binary on PATH the ``.dot`` source is written next to ``path``
    and a warning says so.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None and path.suffix.lower() not in (".dot", ".gv"):
        raise ValueError(f"draw: unknown file type {path.suffix!r} for {path}; use "
                         f"{', '.join(_FORMATS)} or .dot")
    source, view = _render(g, compare, node_colors, errors, params, max_nodes, title)
    if view.notes:
        warnings.warn(f"draw: {view.total} nodes is over max_nodes={max_nodes}: "
                      + "; ".join(view.notes), stacklevel=2)
    if fmt is None:
        path.write_text(source.source)
        return path
    if shutil.which("dot") is None:
        fallback = path.with_suffix(".dot")
        fallback.write_text(source.source)
        warnings.warn(f"graphviz 'dot' is not on PATH: wrote the source to {fallback} instead "
                      f"of {path} (install graphviz to render it)", stacklevel=2)
        return fallback
    path.write_bytes(source.pipe(format=fmt))
    return path

