"""The plain-words part of ``CompiledModel.explain()``: per quantized layer, where it runs and
why in one phrase, with its input/output scales and weight format (rounded); the kernel-level
reasons follow in the table below it."""
from __future__ import annotations

from needle_qc.opset import all_ops, traits


def is_quantized_layer(op):
    """An integer-stage op that computes (not a requantize/quantize representation change);
    False for the runtime's own steps (layout copies), which are not ops of the table."""
    if op not in all_ops():
        return False
    t = traits(op)
    return t.integer and t.kind != "quant"


def plain_summary(cm, rows):
    """Lines in plain words for the layers among ``rows`` (explain rows of ``cm``)."""
    layers = [r for r in rows if is_quantized_layer(r["op"])]
    if not layers:
        return []
    kept = [r["node"] for r in layers if r["status"].startswith("kept float")]
    head = f"{len(layers) - len(kept)} of {len(layers)} quantized layers run quantized"
    head += f"; kept in float32: {', '.join(kept)}" if kept else ""
    lines = [f"In plain words ({cm.target}, stage {cm.stage}): {head}."]
    width = max(len(r["node"]) for r in layers)
    for r in layers:
        node = cm.graph.node(r["node"])
        lines.append(f"  {r['node']:<{width}}  {_where(r)}{_numbers(node)}")
    return lines


def _where(row):
    status, int8_us, float_us = row["status"], row["int8_us"], row["float_us"]
    timed = int8_us is not None and float_us is not None and int8_us > 0
    if status.startswith("kept float"):
        return "runs in float32: its int8 kernel was slower when timed" + \
            (f" ({int8_us:.0f} us vs {float_us:.0f} us)" if timed else "")
    if status.startswith("int8 (forced"):
        return "runs in int8 although float measured faster (force_int8)"
    speed = f", {float_us / int8_us:.1f}x the float speed" if timed else ""
    if row["op"].endswith("_weight_only"):
        return f"computes in float32, its weights stored small and widened in the kernel{speed}"
    if row["op"].endswith("_dynamic"):
        return f"runs in int8, its input quantized at run time (a scale per call){speed}"
    if status == "int8":
        return f"runs in int8{speed}"
    return f"runs as {status}"


def _numbers(node):
    parts = []
    inputs = [i for i in node.inputs if i.meta.get("qparams")]
    if inputs:
        parts.append("in " + _qp(inputs[0].meta["qparams"]))
    if node.meta.get("qparams"):
        parts.append("out " + _qp(node.meta["qparams"]))
    weight = _weight(node)
    if weight:
        parts.append(weight)
    return ("; " + ", ".join(parts)) if parts else ""


def _qp(qp):
    return f"scale {float(qp['s']):.4g} zero point {qp.get('z', 0)}"


def _weight(node):
    layer = len(node.inputs) > 2 and node.inputs[1].op == "param"
    if "weight_dtype" in node.attrs:
        group = node.attrs.get("group_size") or 0
        how = f"in groups of {group}" if group else node.attrs.get("granularity") or \
            (_scales_granularity(node) if layer else "")
        return f"weights {node.attrs['weight_dtype']} {how}".rstrip()
    if layer:
        return f"weights {node.inputs[1].meta.get('dtype')} {_scales_granularity(node)}"
    return ""


def _scales_granularity(node):
    scales = node.inputs[2].meta.get("shape") or ()
    return "per channel" if scales and scales != (1,) else "per tensor"


__all__ = ["plain_summary", "is_quantized_layer"]
