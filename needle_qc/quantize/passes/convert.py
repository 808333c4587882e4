"""``convert``: observed graph -> reference QDQ graph (the accuracy oracle).

* every ``observer`` becomes ``quantize`` (qparams from its statistics, in the type) followed by
  ``dequantize``; an observer without data is an error naming it;
* an activation input of a static node that reuses another value's qparams (through reshape,
  transpose, permute, max) gets a ``quantize``/``dequantize`` pair with those qparams;
* the weight of a static ``linear``/``conv2d`` becomes integer params dequantized in the graph
  (``quantize_weight``: per channel along the output axis by default), its bias an int32 param
  at scale ``s_x * s_w`` (``quantize_bias``) dequantized in the graph.

Everything between ``dequantize`` and ``quantize`` stays float. Mutates the graph in place.
"""

import numpy as np

from needle_qc.errors import IRError
from needle_qc.passes import register_pass
from needle_qc.quantize.annotate import (
    is_weight_layer,
    mode_of,
    new_param,
    node_config,
    param_array,
    shared_weight,
)
from needle_qc.quantize.layer_stats import needs_input_stats, take_input_moments
from needle_qc.quantize.passes.insert_observers import activation_inputs, shares_input_qparams
from needle_qc.quantize.passes.weight_only import corrected_bias_param, rewrite_weight_only
from needle_qc.quantize.qparams import range_qparams
from needle_qc.quantize.reference import quantize_bias
from needle_qc.quantize.rounding import round_weight

STATIC_WEIGHT_DTYPES = ("int8", "uint8", "int4")  # int4: W4A8, symmetric per channel


def set_qparams(node, scale, zero_point, value_range=None):
    """Write per-tensor qparams into a node's type (exact fp32 scale as a Python float), with
    ``value_range`` (``{"qmin", "qmax"}`` of a reduce_range value, :func:`range_qparams`)."""
    node.meta["qparams"] = {"s": float(np.float32(scale)), "z": int(zero_point),
                            **(value_range or {})}


def observer_qparams(graph, obs):
    """``(scale, zero point)`` of an observer node from ``graph.observers``."""
    stats = graph.observers.get(obs.name)
    if stats is None:
        raise IRError(f"convert: observer %{obs.name} has no statistics in graph.observers")
    try:
        return stats.qparams(obs.attrs["dtype"], obs.attrs["symmetric"],
                             bool(obs.attrs.get("reduce_range")))
    except RuntimeError as e:
        raise ValueError(f"convert: observer %{obs.name} has no calibration data; run "
                         f"calibrate(prepared, batches) first ({e})") from None


def quantize_pair(graph, value, dtype, scale, zero_point, before, base, value_range=None):
    """Insert ``quantize(value)`` with these qparams and its ``dequantize`` before ``before``."""
    with graph.inserting_before(before):
        q = graph.call("quantize", [value], {"dtype": dtype}, name=f"{base}_q")
        set_qparams(q, scale, zero_point, value_range)
        dq = graph.call("dequantize", [q], name=f"{base}_dq")
    for key in ("module_path",):
        if key in value.meta:
            q.meta[key] = dq.meta[key] = value.meta[key]
    return dq


def _replace_observers(graph):
    changed = False
    for obs in graph.find("observer"):
        value = obs.inputs[0]
        scale, zp = observer_qparams(graph, obs)
        reduced = range_qparams(obs.attrs["dtype"], bool(obs.attrs.get("reduce_range")))
        dq = quantize_pair(graph, value, obs.attrs["dtype"], scale, zp, obs, value.name, reduced)
        obs.replace_all_uses_with(dq)
        graph.erase(obs)
        graph.observers.pop(obs.name, None)
        changed = True
    return changed


def _is_activation_dq(node):
    return node.op == "dequantize" and len(node.inputs) == 1


def _shared_dq_source(value):
    """The activation ``dequantize`` whose qparams ``value`` reuses, or None."""
    while shares_input_qparams(value):
        value = value.inputs[0]
    return value if _is_activation_dq(value) else None


def _quantize_shared_inputs(graph):
    made = {}
    for node in graph.nodes:
        if mode_of(node) != "static":
            continue
        for value in activation_inputs(node):
            if _is_activation_dq(value):
                continue
            source = _shared_dq_source(value)
            if source is None:
                raise IRError(f"convert: input %{value.name} of static %{node.name} has no "
                              "qparams (it is neither observed nor a reshape of an observed "
                              "value); run insert-observers first")
            if value not in made:
                qp = source.inputs[0].meta["qparams"]
                reduced = {k: qp[k] for k in ("qmin", "qmax") if k in qp}
                made[value] = quantize_pair(graph, value, source.inputs[0].meta["dtype"],
                                            qp["s"], qp["z"], node, value.name, reduced)
            node.replace_input(value, made[value])
    return bool(made)


def _check_static_weight(node, cfg):
    gran = cfg.resolved_weight_granularity
    if cfg.weight not in STATIC_WEIGHT_DTYPES or gran == "per_group" or \
            (cfg.weight == "int4" and (gran != "per_channel" or not cfg.weight_symmetric)):
        raise ValueError(f"convert: %{node.name} asks for static activations with "
                         f"{cfg.weight} {gran} weights; static quantization takes int8/uint8 "
                         "weights per tensor or per channel, or symmetric int4 per channel "
                         "(use activation=None for int4/per-group weight-only)")
    return gran


def quantized_weight_params(graph, node, cfg, moments=None):
    """Integer weight params (q, scale[, zero point]) + the QuantizedWeight, for one layer
    (rounded as ``cfg.rounding`` says; GPTQ reads the calibrated input ``moments``)."""
    w_node = node.inputs[1]
    gran = _check_static_weight(node, cfg)
    qw = round_weight(param_array(w_node).astype(np.float32), cfg, gran, None, moments,
                      node.name)
    path = w_node.meta.get("module_path")
    inputs = [new_param(graph, node, f"{w_node.name}_q", qw.q, path),
              new_param(graph, node, f"{w_node.name}_scale", np.asarray(qw.scale, np.float32),
                        path)]
    if cfg.weight not in ("int8", "int4") or not cfg.weight_symmetric:  # int4 zp is 0
        inputs.append(new_param(graph, node, f"{w_node.name}_zp", qw.zp, path))
    return inputs, qw


def quantized_weight_node(graph, node, cfg, cache=None, moments=None):
    """Integer weight params + their ``dequantize``; returns ``(dq node, QuantizedWeight)``.

    ``cache`` (kept across one pass run) gives layers sharing a weight param the same integer
    params (each layer still gets its own ``dequantize`` node).
    """
    w_node = node.inputs[1]
    cache = {} if cache is None else cache
    inputs, qw = shared_weight(cache, w_node, cfg,
                               lambda: quantized_weight_params(graph, node, cfg, moments))
    with graph.inserting_before(node):
        dq = graph.call("dequantize", list(inputs), {"axis": -1, "group_size": 0},
                        name=f"{w_node.name}_dq")
    return dq, qw


def quantized_bias_node(graph, node, s_x, qw):
    """int32 bias param at scale ``s_x * s_w`` + its scale param + ``dequantize``."""
    b_node = node.inputs[2]
    bias = param_array(b_node).astype(np.float32).reshape(-1)
    try:
        b_q = quantize_bias(bias, s_x, qw.scale)
    except OverflowError as e:
        raise OverflowError(f"convert: bias of %{node.name}: {e}") from None
    b_scale = np.broadcast_to(np.multiply(np.float32(s_x), qw.scale, dtype=np.float32),
                              bias.shape)
    path = b_node.meta.get("module_path")
    inputs = [new_param(graph, node, f"{b_node.name}_q", b_q, path),
              new_param(graph, node, f"{b_node.name}_scale", b_scale.astype(np.float32), path)]
    with graph.inserting_before(node):
        return graph.call("dequantize", inputs, {"axis": 0, "group_size": 0},
                          name=f"{b_node.name}_dq")


def _quantize_layer(graph, node, cache, moments=None):
    x_dq = node.inputs[0]
    if not _is_activation_dq(x_dq) or node.inputs[1].op == "dequantize":
        return False
    cfg = node_config(node)
    w_dq, qw = quantized_weight_node(graph, node, cfg, cache, moments)
    if cfg.bias_correction:  # b + E[x] (W - W_q), then quantized like any bias
        node.inputs = (*node.inputs[:2], corrected_bias_param(graph, node, qw, moments))
    inputs = [x_dq, w_dq]
    if len(node.inputs) == 3:
        inputs.append(quantized_bias_node(graph, node, x_dq.inputs[0].meta["qparams"]["s"], qw))
    node.inputs = inputs
    return True


def _deferred_weight_only(graph, moments):
    """Weight-only layers the ``weight-only`` pass left for their calibration statistics."""
    todo = [n for n in graph.nodes if is_weight_layer(n) and mode_of(n) == "weight_only"
            and needs_input_stats(node_config(n))]
    cache = {}
    for node in todo:
        rewrite_weight_only(graph, node, cache, moments.get(node.name))
    return bool(todo)


@register_pass("convert")
def convert(graph):
    """Observed graph -> QDQ graph (in place); True if anything changed."""
    moments = take_input_moments(graph)  # GPTQ / bias correction statistics (their nodes go)
    changed = bool(moments)
    changed |= _replace_observers(graph)
    changed |= _quantize_shared_inputs(graph)
    cache = {}
    for node in graph.nodes:
        if is_weight_layer(node) and mode_of(node) == "static":
            changed |= _quantize_layer(graph, node, cache, moments.get(node.name))
    changed |= _deferred_weight_only(graph, moments)
    changed |= graph.eliminate_dead_code()
    return changed
