"""``dynamic``: linear layers whose config has ``activation="dynamic"`` -> ``linear_dynamic``.

Weights become symmetric int8 (per channel by default, or per tensor) with fp32 scales; the
activation is quantized to uint8 at run time, per tensor or per token
(``activation_granularity``). The float bias stays. conv2d has no dynamic form and stays float.
Mutates the graph in place.
"""

import numpy as np

from ..quantize import qops  # noqa: F401  (registers the quantization ops)
from ..quantize.annotate import mode_of, new_param, node_config, param_array, replace_layer
from ..quantize.lowbit import quantize_weight
from . import register_pass
from .weight_only import float_bias


def dynamic_weight(graph, node, cfg):
    """int8 weight + scale params for one dynamic linear."""
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


@register_pass("dynamic")
def dynamic(graph):
    """Rewrite every dynamic linear (in place); True if any."""
    todo = [n for n in graph.nodes if n.op == "linear" and mode_of(n) == "dynamic"]
    for node in todo:
        cfg = node_config(node)
        params = dynamic_weight(graph, node, cfg)
        inputs = [node.inputs[0], *params, *float_bias(graph, node)]
        replace_layer(graph, node, "linear_dynamic", inputs,
                      {"granularity": cfg.activation_granularity})
    if todo:
        graph.eliminate_dead_code()
    return bool(todo)
