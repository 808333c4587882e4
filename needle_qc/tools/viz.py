"""Graph pictures (graphviz, colored by dtype, diff against an older graph) and networkx views."""

import shutil
import warnings
from pathlib import Path

from needle_qc.ir.printer import format_type

DTYPE_COLORS = {
    "float32": "#cfe2f3", "float16": "#d9d2e9", "bfloat16": "#e6d7f5", "float64": "#b7d3ee",
    "int8": "#fce5cd", "uint8": "#fff2cc", "int32": "#d9d9d9", "int4": "#f4cccc",
    "uint4": "#f9dede",
}
"""Fill color per dtype; tuple values and unknown dtypes are white."""

ADDED, REMOVED, CHANGED = "#38a169", "#e53e3e", "#ed8936"
"""Border colors of ``draw(..., compare=older)``: green added, red removed, orange changed."""

_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}


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


def _label(node):
    # "\\n" is DOT's own line break escape: one source line per node, centered lines.
    type_text = format_type(node.meta)
    parts = [f"%{node.name}", node.op] + ([type_text] if type_text else [])
    return "\\n".join(part.replace("\\", "\\\\") for part in parts)


def _fill(node, node_colors):
    if node_colors and node.name in node_colors:
        return node_colors[node.name]
    dtype = node.meta.get("dtype")
    return DTYPE_COLORS.get(dtype, "white") if isinstance(dtype, str) else "white"


def _shape_of(node):
    if node.op in ("param", "constant", "full"):
        return "note"
    if node.op in ("placeholder", "output"):
        return "oval"
    return "box"


def _diff(graph, older):
    """(status by node name, removed nodes of ``older``); a node is matched by name and op."""
    if older is None:
        return {}, []
    old = {(n.name, n.op): n for n in older.nodes}
    status = {}
    for node in graph.nodes:
        before = old.get((node.name, node.op))
        if before is None:
            status[node.name] = ADDED
        elif _fingerprint(before) != _fingerprint(node):
            status[node.name] = CHANGED
    new_keys = {(n.name, n.op) for n in graph.nodes}
    removed = [n for key, n in old.items() if key not in new_keys]
    return status, removed


def _fingerprint(node):
    meta = {k: node.meta.get(k) for k in ("shape", "dtype", "qparams")}
    return [i.name for i in node.inputs], node.attrs, meta


def to_dot(graph, compare=None, node_colors=None):
    """The ``graphviz.Digraph`` that :func:`draw` renders."""
    import graphviz

    dot = graphviz.Digraph("needle_qc", graph_attr={"rankdir": "TB"},
                           node_attr={"style": "filled", "fontname": "Helvetica",
                                      "fontsize": "10"})
    status, removed = _diff(graph, compare)
    for node in graph.nodes:
        border = status.get(node.name)
        extra = {"color": border, "penwidth": "3"} if border else {}
        dot.node(node.name, _label(node), shape=_shape_of(node),
                 fillcolor=_fill(node, node_colors), **extra)
    for node in graph.nodes:
        for inp in dict.fromkeys(node.inputs):
            dot.edge(inp.name, node.name)
    _draw_removed(dot, graph, removed)
    return dot


def _draw_removed(dot, graph, removed):
    names = {n.name for n in graph.nodes}
    for node in removed:
        ghost = f"{node.name}__removed" if node.name in names else node.name
        dot.node(ghost, _label(node), shape=_shape_of(node), style="dashed", color=REMOVED,
                 fontcolor=REMOVED)
        for inp in dict.fromkeys(node.inputs):
            if inp.name in names:
                dot.edge(inp.name, ghost, style="dashed", color=REMOVED)


def draw(g, path, compare=None, node_colors=None):
    """Draw ``g`` to ``path`` (``.svg``, ``.png``, ``.pdf`` by suffix, or ``.dot`` source).

    Nodes are colored by dtype (:data:`DTYPE_COLORS`) and labeled with name, op, shape and
    qparams. ``compare=older_graph`` highlights nodes added (green), changed (orange) and
    removed (red, dashed ghosts), matching nodes by name and op. ``node_colors={name: color}``
    overrides fills (e.g. per-node SQNR). Without graphviz's ``dot`` binary on PATH the
    ``.dot`` source is written next to ``path`` and a warning says so.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    source = to_dot(g, compare, node_colors)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        if path.suffix.lower() not in (".dot", ".gv"):
            raise ValueError(f"draw: unknown file type {path.suffix!r} for {path}; use "
                             f"{', '.join(_FORMATS)} or .dot")
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

