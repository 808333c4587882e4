"""A QConfig's overrides against one graph: exclusions, and keys that match no layer.

``module_types`` / ``module_paths`` keys, ``exclude_ops`` and ``exclude_paths`` that match no
quantizable node of the graph would silently quantize everything (``"Conv2d"`` for Needle's
``Conv``, ``"layers.0.conv"`` for ``"layers.modules.0.conv"``): :func:`check_matches` raises
instead, with a did-you-mean taken from the graph's own names.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from needle_qc.opset import traits


@dataclass(frozen=True)
class Candidate:
    """A node a QConfig decides about, with the names overrides match against."""

    node: object
    op: str  # the op it is configured as ("linear" for a matmul by a weight)
    path: str
    module_type: str | None
    aliases: tuple = ()  # other op names exclude_ops may give it (FUSED_NAMES)


FUSED_NAMES = {"lstm_cell": (("linear", "matmul"), "Linear")}
"""A fused op -> (op names, module type) its parts answered to before the fusion: an LSTM
cell's products were ``matmul`` nodes configured as ``linear`` layers (type ``Linear``), so
configs written for them keep their effect: those ``exclude_ops`` keep the cell float and,
without an entry for the cell's own type, ``module_types["Linear"]`` configures it."""


def candidates(graph):
    """Every node ``annotate_qconfig`` or ``quantize-lstm`` may quantize, in graph order."""
    from needle_qc.quantize.annotate import _is_weight_matmul, is_quantizable

    out = []
    for node in graph.nodes:
        op = "linear" if _is_weight_matmul(node) else node.op
        path = node.meta.get("module_path") or ""
        if node.op in FUSED_NAMES:
            out.append(Candidate(node, node.op, path, traits(node.op).module_type,
                                 FUSED_NAMES[node.op][0]))
        elif _is_weight_matmul(node) or is_quantizable(node):
            kind = node.meta.get("module_type") or traits(op).module_type
            out.append(Candidate(node, op, path, kind))
    return out


def excluded(cfg, node, op):
    """True if ``exclude_ops`` or ``exclude_paths`` keeps ``node`` (configured as ``op``) float."""
    ops = (op, node.op, *FUSED_NAMES.get(node.op, ((), None))[0])
    if any(o in cfg.exclude_ops for o in ops):
        return True
    names = [n for n in (node.meta.get("module_path"), node.name) if n]
    return any(re.fullmatch(p, n) for p in cfg.exclude_paths for n in names)


def fused_config(cfg, node):
    """The config of a fused op's node (an ``lstm_cell``) under ``cfg``, or None (float): its
    own module type's entry, else that of the type its parts had (:data:`FUSED_NAMES`)."""
    if excluded(cfg, node, node.op):
        return None
    kind = traits(node.op).module_type
    legacy = FUSED_NAMES[node.op][1]
    if kind not in cfg.module_types and legacy in cfg.module_types:
        kind = legacy
    return cfg.for_module(node.meta.get("module_path") or "", kind)


def check_matches(graph, cfg):
    """Raise ValueError for any override key, excluded op or pattern matching no candidate."""
    found = candidates(graph)
    if not found:
        return
    _check_types(cfg, found)
    _check_paths(cfg, found)
    _check_exclusions(cfg, found)


def _check_types(cfg, found):
    kinds = sorted({c.module_type for c in found if c.module_type} |
                   {FUSED_NAMES[c.node.op][1] for c in found if c.node.op in FUSED_NAMES})
    for key in cfg.module_types:
        if key not in kinds:
            raise ValueError(f"QConfig: module_types key {key!r} matches no layer of this graph"
                             f"{_did_you_mean(key, kinds)} Module types here: "
                             f"{', '.join(kinds)}")


def _check_paths(cfg, found):
    paths = sorted({c.path for c in found if c.path})
    for key in cfg.module_paths:
        if not any(p == key or p.startswith(key + ".") for p in paths):
            raise ValueError(f"QConfig: module_paths key {key!r} matches no quantizable layer"
                             f"{_did_you_mean(key, _with_prefixes(paths))} Layer paths here: "
                             f"{_listing(paths)}")


def _check_exclusions(cfg, found):
    ops = sorted({c.op for c in found} | {c.node.op for c in found} |
                 {a for c in found for a in c.aliases})
    for op in cfg.exclude_ops:
        if op not in ops:
            raise ValueError(f"QConfig: exclude_ops entry {op!r} matches no layer of this graph;"
                             f" quantizable ops here: {', '.join(ops)}")
    names = sorted({n for c in found for n in (c.path, c.node.name) if n})
    for pattern in cfg.exclude_paths:
        if not any(re.fullmatch(pattern, n) for n in names):
            raise ValueError(f"QConfig: exclude_paths pattern {pattern!r} matches no layer path "
                             f"or node name (whole-name match){_did_you_mean(pattern, names)} "
                             f"Layer paths here: {_listing(sorted({c.path for c in found}))}")


def _with_prefixes(paths):
    out = set()
    for path in paths:
        parts = path.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(out)


def _did_you_mean(key, options):
    close = difflib.get_close_matches(key, options, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "."


def _listing(names, limit=8):
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


__all__ = ["Candidate", "FUSED_NAMES", "candidates", "check_matches", "excluded",
           "fused_config"]
