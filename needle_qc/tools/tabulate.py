"""``tabulate(graph)``: a graph as a table (torch.fx's ``print_tabular``), and ``summarize``.

One row per node: name, op, inputs, type (shape, dtype), quantization (scale and zero point
rounded to 4 significant digits, or the weight format of a quantized layer) and module path.
``summarize`` gives the few lines ``needle-qc inspect`` prints: stage, op counts, weight bytes
by dtype, the range of activation scales.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from needle_qc.opset import traits

__all__ = ["tabulate", "summarize"]

COLUMNS = ("name", "op", "inputs", "type", "quantization", "module")


def _stored(node):
    return traits(node.op).kind == "tensor"  # param / constant: summed up in their users


def tabulate(graph, *, params=False, max_width=48):
    """The table of ``graph`` (a Graph or CompiledModel) as one string.

    ``params=True`` also lists the param/constant rows (weights, scales, biases), which are
    otherwise summed up in their users' "quantization" column. Cells longer than ``max_width``
    are cut with "...".
    """
    graph = getattr(graph, "graph", graph)
    rows = [_row(node) for node in graph.nodes if params or not _stored(node)]
    cells = [list(COLUMNS)] + [[_cut(c, max_width) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _row(node):
    values = [f"%{i.name}" for i in node.inputs if not _stored(i)]
    stored = sum(_stored(i) for i in node.inputs)
    inputs = ", ".join(values + ([f"+{stored} params"] if stored else []))
    return [f"%{node.name}", node.op, inputs, _type(node, qparams=False),
            _quantization(node), node.meta.get("module_path") or ""]


def _quantization(node):
    parts = []
    qp = node.meta.get("qparams")
    if qp and "s" in qp:
        parts.append(f"s={_g(qp['s'])} z={qp.get('z', 0)}")
    if "weight_dtype" in node.attrs:
        group = node.attrs.get("group_size") or 0
        how = f"g{group}" if group else node.attrs.get("granularity", "")
        parts.append(f"w {node.attrs['weight_dtype']} {how}".strip())
    elif _weight_of(node):
        parts.append(f"w {_weight_of(node)}")
    return ", ".join(parts)


def _weight_of(node):
    """dtype of a layer's stored integer weight (input 1), for qlinear/qconv2d/dynamic."""
    if len(node.inputs) < 2 or not _stored(node.inputs[1]):
        return ""
    dtype = node.inputs[1].meta.get("dtype")
    return dtype if dtype in ("int8", "uint8") and node.op != "dequantize" else ""


def _g(value):
    return f"{float(value):.4g}"


def _cut(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


def summarize(obj):
    """Lines describing a Graph or CompiledModel: stage, op counts, weights, scales."""
    from needle_qc.pipeline import stage_of

    graph = getattr(obj, "graph", obj)
    lines = [f"stage: {getattr(obj, 'stage', None) or stage_of(graph)}, "
             f"{len(graph.nodes)} nodes"]
    if hasattr(obj, "target"):
        lines.append(f"target: {obj.target}")
    ops = Counter(n.op for n in graph.nodes
                  if traits(n.op).kind not in ("tensor", "structure"))
    lines.append("ops: " + ", ".join(f"{op} x{k}" for op, k in sorted(ops.items())))
    inputs = ", ".join(f"%{p.name}: {_type(p)}" for p in graph.placeholders)
    lines.append(f"inputs: {inputs}")
    lines.append("weights: " + _weight_bytes(graph))
    scales = [float(n.meta["qparams"]["s"]) for n in graph.nodes
              if (n.meta.get("qparams") or {}).get("s") is not None]
    if scales:
        lines.append(f"activation qparams: {len(scales)} tensors, scale "
                     f"{_g(min(scales))} .. {_g(max(scales))}")
    config = getattr(obj, "config", None) or {}
    if config.get("qconfig"):
        cfg = config["qconfig"]
        lines.append(f"qconfig: weight {cfg.get('weight')}, activation "
                     f"{cfg.get('activation') or 'none'}")
    return lines


def _type(node, qparams=True):
    """The node's type as in the text form; ``qparams=False`` leaves the {s, z} out."""
    from needle_qc.ir.printer import format_type

    meta = node.meta if qparams else {k: v for k, v in node.meta.items() if k != "qparams"}
    return format_type(meta) or ""


def _weight_bytes(graph):
    by_dtype = Counter()
    for node in graph.nodes:
        if _stored(node):
            array = graph.tensors.get(node.attrs["tensor"])
            if array is not None:
                by_dtype[str(np.asarray(array).dtype)] += int(np.asarray(array).nbytes)
    total = sum(by_dtype.values())
    parts = ", ".join(f"{dtype} {n:,} B" for dtype, n in by_dtype.most_common())
    return f"{total:,} B ({parts})" if parts else "none"
