"""Sequential GPTQ: each layer's Hessian measured with the layers before it already rounded.

GPTQ (Frantar et al. 2022, sec. 3) quantizes layer by layer, feeding every layer the outputs of
the already-quantized ones, so a layer also compensates the error that reaches its input. For
weight-only layers with ``gptq_sequential=True``, ``calibrate`` runs this after its ordinary
pass: in graph order, the layer's current input moments are frozen for it
(``LayerInputStats.frozen``), its weight is rounded (GPTQ on those moments) and put in the
graph in place of the float one, the later layers' moments are cleared and the batches run
again. The float weights are restored at the end; ``convert`` rounds each layer again from its
frozen moments (the same result). One more pass over the batches per layer. Only for graphs
whose observers are all layer statistics (weight-only); weights shared by several layers (an
unrolled LSTM) are skipped (their layers pool their moments).
"""
import numpy as np

from needle_qc.opset import traits
from needle_qc.quantize.annotate import is_weight_layer, new_param, node_config, param_array
from needle_qc.quantize.layer_stats import (
    LayerInputStats,
    geometry_of,
    is_stats_node,
)
from needle_qc.quantize.rounding import round_weight


def sequential_layers(graph):
    """The layers to round sequentially, in graph order."""
    out = []
    for node in graph.nodes:
        if not is_weight_layer(node) or not is_stats_node(graph, node.inputs[0]):
            continue
        cfg = node_config(node)
        if cfg is not None and cfg.gptq_sequential and len(node.inputs[1].users) == 1:
            out.append(node)
    return out


def sequential_pending(graph) -> bool:
    """True when ``graph`` has layers for sequential GPTQ and only layer-statistics observers
    (the extra passes must not feed activation observers quantized-prefix data)."""
    observers = graph.observers
    return bool(sequential_layers(graph)) and all(
        isinstance(obs, LayerInputStats) for obs in observers.values())


def _round_in_place(graph, layer, moments):
    """Put ``layer``'s rounded weight (dequantized, float) in place of its float weight."""
    cfg = node_config(layer)
    w_node = layer.inputs[1]
    gran = cfg.resolved_weight_granularity
    axis = traits(layer.op).reduction_axis if gran == "per_group" else None
    qw = round_weight(param_array(w_node).astype(np.float32), cfg, gran, axis, moments,
                      layer.name)
    tmp = new_param(graph, layer, f"{w_node.name}_sequential", qw.dequantize(),
                    w_node.meta.get("module_path"))
    layer.replace_input(w_node, tmp)
    return layer, w_node, tmp


def calibrate_sequential(prepared, batches, run_batch):
    """Freeze every sequential layer's moments under the rounded prefix (see the module)."""
    stats = [obs for obs in prepared.observers.values() if isinstance(obs, LayerInputStats)]
    swapped = []
    try:
        for i, layer in enumerate(sequential_layers(prepared)):
            if i:
                for obs in stats:
                    obs.moments = {}
                for batch in batches:
                    run_batch(batch)
            obs = prepared.observers[layer.inputs[0].name]
            moments = obs.moments[geometry_of(layer)]
            obs.frozen[layer.name] = moments
            swapped.append(_round_in_place(prepared, layer, moments))
    finally:
        for layer, original, tmp in swapped:
            layer.replace_input(tmp, original)
            prepared.erase(tmp)
