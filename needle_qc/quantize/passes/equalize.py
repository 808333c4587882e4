"""``equalize``: cross-layer equalization of conv/linear chains (Nagel et al. 2019, sec. 4.1).

For consecutive layers ``y = f(x W1 + b1) W2`` with f a ReLU (fused ``activation="relu"`` or a
sole ``relu`` user) or nothing, both configured with ``equalization=True``: layer 1's output
channel i is divided by ``s_i = sqrt(r1_i / r2_i)`` and layer 2's input channel i multiplied by
it (:func:`~needle_qc.quantize.algorithms.equalize_chain`), which leaves the float output
unchanged (ReLU is positively homogeneous) and balances the per-channel weight ranges. Layer 2
must read layer 1's output directly (no flatten), and each weight and bias param must belong
to its layer alone. Runs after batch norm folding (``quantize_pass`` runs it before
``insert-observers``). New params replace the old ones (tensors are never changed in place).
"""

import numpy as np

from needle_qc.passes import register_pass
from needle_qc.quantize.algorithms.bias_correction import equalize_chain
from needle_qc.quantize.annotate import is_weight_layer, new_param, node_config, param_array


def _eligible(layer):
    if not is_weight_layer(layer) or len(layer.inputs) < 2:
        return False
    cfg = node_config(layer)
    params = layer.inputs[1:]
    return cfg is not None and cfg.equalization and all(
        p.op == "param" and len(p.users) == 1 for p in params)


def _next_layer(layer):
    """The layer reading ``layer``'s output (through a ReLU or nothing) alone, or None."""
    if layer.attrs.get("activation") not in (None, "relu"):
        return None
    out = layer
    if len(out.users) == 1 and out.users[0].op == "relu" and layer.attrs.get("activation") is None:
        out = out.users[0]
    users = out.users
    if len(users) != 1 or not _eligible(users[0]) or users[0].inputs[0] is not out:
        return None
    return users[0]


def chains(graph):
    """Maximal chains ``[layer1, layer2, ...]`` of eligible layers, in graph order."""
    nxt = {}
    for layer in graph.nodes:
        if _eligible(layer):
            follower = _next_layer(layer)
            if follower is not None:
                nxt[layer] = follower
    starts = [n for n in nxt if n not in set(nxt.values())]
    out = []
    for start in starts:
        chain = [start]
        while chain[-1] in nxt:
            chain.append(nxt[chain[-1]])
        out.append(chain)
    return out


def _set_param(graph, layer, index, array):
    old = layer.inputs[index]
    shape = param_array(old).shape  # a bias keeps its traced shape ([N] or [1, N])
    new = new_param(graph, layer, f"{old.name}_eq", np.asarray(array, np.float32).reshape(shape),
                    old.meta.get("module_path"))
    layer.replace_input(old, new)


def equalize_layers(graph, chain):
    """Equalize one chain in place (new weight/bias params for its layers)."""
    weights = [param_array(layer.inputs[1]).astype(np.float32) for layer in chain]
    biases = [param_array(layer.inputs[2]).astype(np.float32).reshape(-1)
              if len(layer.inputs) > 2 else None for layer in chain]
    new_w, new_b = equalize_chain(weights, biases)
    for layer, w, b, b_old in zip(chain, new_w, new_b, biases):
        _set_param(graph, layer, 1, w)
        if b is not None and b is not b_old:
            _set_param(graph, layer, 2, b)


@register_pass("equalize")
def equalize(graph):
    """Cross-layer equalization of every eligible chain (in place); True if any."""
    found = chains(graph)
    for chain in found:
        equalize_layers(graph, chain)
    if found:
        graph.eliminate_dead_code()
    return bool(found)
