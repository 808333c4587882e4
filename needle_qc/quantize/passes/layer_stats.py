"""``insert-layer-stats``: a statistics observer before each layer that rounds from calibration.

For every linear/conv2d whose config has ``rounding="gptq"`` or ``bias_correction=True`` (static
or weight-only), the layer's input is read through an ``observer`` node holding a
:class:`~needle_qc.quantize.layer_stats.LayerInputStats` (one node per input value, shared by
the layers reading it). Calibration fills it with the layer's input moments; ``convert`` takes
them (GPTQ Hessian, bias-correction mean) and removes the node. Runs after ``insert-observers``
(a static layer reads ``input -> observer -> stats``), so activation qparams are unaffected.
Weight-only layers that need these statistics are left float by ``weight-only`` and rewritten
by ``convert``. Mutates the graph in place; running it twice adds nothing.
"""

from needle_qc.passes import register_pass
from needle_qc.quantize.annotate import is_weight_layer, node_config
from needle_qc.quantize.layer_stats import (
    LayerInputStats,
    geometry_of,
    is_stats_node,
    needs_hessian,
    needs_input_stats,
)


def _stats_node(graph, value, made):
    node = made.get(value)
    if node is None:
        with graph.inserting_after(value):
            node = graph.call("observer", [value], name=f"{value.name}_stats")
        if "module_path" in value.meta:
            node.meta["module_path"] = value.meta["module_path"]
        graph.observers[node.name] = LayerInputStats(name=node.name)
        made[value] = node
    return node


@register_pass("insert-layer-stats")
def insert_layer_stats(graph):
    """Insert the statistics observers (in place); True if any layer got one."""
    made = {}
    changed = False
    for layer in list(graph.nodes):
        cfg = node_config(layer) if is_weight_layer(layer) else None
        if not needs_input_stats(cfg):
            continue
        value = layer.inputs[0]
        if is_stats_node(graph, value):
            stats = graph.observers[value.name]
        else:
            node = _stats_node(graph, value, made)
            layer.replace_input(value, node)
            stats = graph.observers[node.name]
            changed = True
        stats.add_geometry(geometry_of(layer), needs_hessian(cfg))
    return changed
