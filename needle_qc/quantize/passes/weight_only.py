"""``weight-only``: linear/conv2d whose config has ``activation=None`` -> weight-only ops.

The weight becomes a float16 / bfloat16 param (IEEE round to nearest even), or int8 / uint8 /
int4 / uint4 integers with per-tensor, per-channel (output axis) or per-group (reduction axis)
scales; 4-bit values are packed two per byte along the reduction axis (K for linear, C_in for
conv). Zero points are added only where they are not 0 (unsigned or asymmetric weights). The
float bias stays. Mutates the graph in place.
"""

import numpy as np

from needle_qc.opset import traits
from needle_qc.passes import register_pass
from needle_qc.quantize.annotate import (
    is_weight_layer,
    mode_of,
    new_param,
    node_config,
    param_array,
    replace_layer,
    shared_weight,
)
from needle_qc.quantize.layer_stats import needs_input_stats
from needle_qc.quantize.lowbit import cast_bf16, cast_fp16, pack_int4
from needle_qc.quantize.rounding import as_single_group, corrected_bias, round_weight

FLOAT_FORMATS = {"fp16": "float16", "bf16": "bfloat16"}


def needs_zero_point(qw):
    """True when dequantizing needs a zero point input (unsigned or asymmetric weights)."""
    return qw.dtype in ("uint8", "uint4") or not qw.symmetric or bool(np.any(qw.zp != 0))


def integer_weight(cfg, w, red_axis, where, moments=None):
    """``(weight array as stored, scale, zero point or None, attrs, QuantizedWeight)`` for
    integer weights, rounded as ``cfg.rounding`` says (GPTQ reads ``moments``)."""
    gran = cfg.resolved_weight_granularity
    low_bit = cfg.weight in ("int4", "uint4")
    if low_bit and gran not in ("per_group", "per_channel"):
        raise ValueError(f"weight-only: %{where} asks for {cfg.weight} {gran} weights; 4-bit "
                         "weights are per_group or per_channel")
    axis = red_axis if gran == "per_group" else None
    qw = round_weight(w, cfg, gran, axis, moments, where)
    if low_bit:  # the 4-bit kernels take groups: per channel is one group over the whole axis
        qw = as_single_group(qw, red_axis)
    data = pack_int4(qw.q, axis=red_axis) if low_bit else qw.q
    zp = qw.zp if needs_zero_point(qw) else None
    attrs = {"weight_dtype": cfg.weight, "granularity": qw.granularity,
             "group_size": qw.group_size if qw.granularity == "per_group" else 0,
             "has_zero_point": zp is not None}
    return data, np.asarray(qw.scale, np.float32), zp, attrs, qw


def weight_inputs(graph, node, cfg, moments=None):
    """New weight params (weight, scale, zero point), the op's attrs and the QuantizedWeight
    (None for float formats) for one layer."""
    w_node = node.inputs[1]
    w = param_array(w_node).astype(np.float32)
    path = w_node.meta.get("module_path")
    if cfg.weight in FLOAT_FORMATS:
        data = cast_fp16(w)[0] if cfg.weight == "fp16" else cast_bf16(w)[0]
        suffix = cfg.weight
        attrs = {"weight_dtype": FLOAT_FORMATS[cfg.weight], "granularity": "none",
                 "group_size": 0, "has_zero_point": False}
        return [new_param(graph, node, f"{w_node.name}_{suffix}", data, path)], attrs, None
    data, scale, zp, attrs, qw = integer_weight(cfg, w, traits(node.op).reduction_axis,
                                                node.name, moments)
    params = [new_param(graph, node, f"{w_node.name}_q", data, path),
              new_param(graph, node, f"{w_node.name}_scale", scale, path)]
    if zp is not None:
        params.append(new_param(graph, node, f"{w_node.name}_zp", zp, path))
    return params, attrs, qw


def float_bias(graph, node):
    """The layer's bias as a 1-D float32 param (the original one when it already is)."""
    if len(node.inputs) < 3:
        return []
    b_node = node.inputs[2]
    bias = param_array(b_node)
    if bias.ndim == 1 and bias.dtype == np.float32:
        return [b_node]
    return [new_param(graph, node, f"{b_node.name}_f32", bias.astype(np.float32).reshape(-1),
                      b_node.meta.get("module_path"))]


def rewrite_weight_only(graph, node, cache=None, moments=None):
    """Replace one linear/conv2d by its weight-only op; returns the new node.

    ``cache`` (a dict kept across one pass run) makes layers that share a weight param share
    its quantized params too, instead of one copy per use. ``moments``: the layer's calibrated
    input moments (``rounding="gptq"``, ``bias_correction=True``).
    """
    cfg = node_config(node)
    cache = {} if cache is None else cache
    params, attrs, qw = shared_weight(cache, node.inputs[1], cfg,
                                      lambda: weight_inputs(graph, node, cfg, moments))
    attrs = dict(attrs)
    bias = float_bias(graph, node)
    if cfg.bias_correction and qw is not None:
        bias = [corrected_bias_param(graph, node, qw, moments)]
    attrs["has_bias"] = bool(bias)
    if node.op == "conv2d":
        attrs.update(stride=node.attrs["stride"], padding=node.attrs["padding"])
    op = "linear_weight_only" if node.op == "linear" else "conv2d_weight_only"
    return replace_layer(graph, node, op, [node.inputs[0], *params, *bias], attrs)


def corrected_bias_param(graph, node, qw, moments):
    """A new float32 bias param ``b + E[x] (W - W_q)`` (bias correction; creates a bias when
    the layer had none)."""
    if moments is None:
        raise ValueError(f"%{node.name}: bias_correction needs the layer's calibration inputs; "
                         "run calibrate() before converting")
    w = param_array(node.inputs[1]).astype(np.float32)
    b_node = node.inputs[2] if len(node.inputs) > 2 else None
    bias = None if b_node is None else param_array(b_node)
    name = f"{(b_node or node).name}_corrected"
    return new_param(graph, node, name, corrected_bias(bias, w, qw, moments),
                     node.inputs[1].meta.get("module_path"))


@register_pass("weight-only")
def weight_only(graph):
    """Rewrite every weight-only layer (in place); True if any. Layers that round or correct
    from calibration inputs (``insert-layer-stats``) are left to ``convert``."""
    todo = [n for n in graph.nodes if is_weight_layer(n) and mode_of(n) == "weight_only"
            and not needs_input_stats(node_config(n))]
    cache = {}
    for node in todo:
        rewrite_weight_only(graph, node, cache)
    if todo:
        graph.eliminate_dead_code()
    return bool(todo)
