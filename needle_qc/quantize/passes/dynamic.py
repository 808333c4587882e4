"""``dynamic``: ``activation="dynamic"`` linear/conv2d -> ``linear_dynamic``/``conv2d_dynamic``.

Weights become symmetric int8 (per channel by default, or per tensor) with fp32 scales; the
activation is quantized to uint8 at run time, per tensor or per token (``activation_granularity``;
linear only: a per-token conv2d stays float and says so in ``explain()``), over [0, 127] with
``reduce_range`` (torch's x86 dynamic linear; the AVX2 u8 x s8 fast path is then proven exact).
The float bias stays.
Layers sharing a weight param share its int8 params. Mutates the graph in place.
"""

import numpy as np

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
from needle_qc.quantize.lowbit import quantize_weight
from needle_qc.quantize.passes.weight_only import float_bias


def dynamic_weight(graph, node, cfg):
    """int8 weight + scale params for one dynamic linear/conv2d (per channel = output axis)."""
    gran = cfg.resolved_weight_granularity
    if cfg.weight != "int8" or not cfg.weight_symmetric or gran == "per_group":
        raise ValueError(f"dynamic: %{node.name} asks for {cfg.weight} {gran} "
                         f"(symmetric={cfg.weight_symmetric}) weights; dynamic quantization "
                         "takes symmetric int8 weights per tensor or per channel")
    w_node = node.inputs[1]
    qw = quantize_weight(param_array(w_node).astype(np.float32), "int8", gran, symmetric=True)
    path = w_node.meta.get("module_path")
    return [new_param(graph, node, f"{w_node.name}_q", qw.q, path),
            new_param(graph, node, f"{w_node.name}_scale", np.asarray(qw.scale, np.float32),
                      path)]


def rewrite_dynamic(graph, node, cache):
    """Replace one dynamic linear/conv2d by ``linear_dynamic`` / ``conv2d_dynamic``."""
    cfg = node_config(node)
    params = shared_weight(cache, node.inputs[1], cfg,
                           lambda: dynamic_weight(graph, node, cfg))
    inputs = [node.inputs[0], *params, *float_bias(graph, node)]
    # only when set, so graphs without it print (and save) as before
    seven_bit = {"reduce_range": True} if cfg.reduce_range else {}
    if node.op == "linear":
        attrs = {"granularity": cfg.activation_granularity, **seven_bit}
        return replace_layer(graph, node, "linear_dynamic", inputs, attrs)
    attrs = {"stride": node.attrs["stride"], "padding": node.attrs["padding"], **seven_bit}
    return replace_layer(graph, node, "conv2d_dynamic", inputs, attrs)


PER_TOKEN_CONV_REASON = ("dynamic per_token quantization has no conv2d form (a conv's "
                         "activation is quantized per tensor): this conv stays float32")


def _dynamic_layers(graph):
    """The layers to rewrite; a per-token conv is marked float (``meta["float_reason"]``, shown
    by ``explain()``) instead."""
    todo = []
    for node in graph.nodes:
        if not is_weight_layer(node) or mode_of(node) != "dynamic":
            continue
        if node.op == "conv2d" and node_config(node).activation_granularity == "per_token":
            node.meta["float_reason"] = PER_TOKEN_CONV_REASON
            continue
        todo.append(node)
    return todo


@register_pass("dynamic")
def dynamic(graph):
    """Rewrite every dynamic linear/conv2d (in place); True if any."""
    todo = _dynamic_layers(graph)
    cache = {}  # one int8 copy per shared weight param (e.g. an unrolled LSTM cell)
    for node in todo:
        rewrite_dynamic(graph, node, cache)
    if todo:
        graph.eliminate_dead_code()
    return bool(todo)
