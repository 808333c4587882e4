"""``fold-batchnorm``: fold an eval-mode ``batch_norm`` into the ``conv2d``/``linear`` before it.

With ``s = gamma / sqrt(var + eps)`` per output channel the pair computes
``(conv(x, w) + b - mean) * s + beta = conv(x, w * s) + (b - mean) * s + beta``, so the new weight
is ``w' = w * s`` along the output channel (axis 3 of Needle's ``(K, K, Cin, Cout)`` conv weight,
axis 1 of Linear's ``(in, out)`` weight) and the new bias ``b' = (b - mean) * s + beta`` (``b = 0``
when the layer had none). The arithmetic runs in float64 and is stored as float32.

Folded only when every batch-norm input and the layer's weight/bias are params/constants and
nothing but the batch norm uses the layer's output (else the unnormalized value is still
needed). The new params are named ``<layer>.weight_folded`` / ``<layer>.bias_folded`` and carry
the layer's ``module_path``.
"""

import numpy as np

from needle_qc.opset import traits
from needle_qc.passes import register_pass
from needle_qc.passes.fold_constants import is_tensor

"""Output-channel axis of the weight of each foldable layer op."""


def foldable_layer(bn):
    """The conv2d/linear node ``bn`` can fold into, or None."""
    if bn.op != "batch_norm":
        return None
    layer = bn.inputs[0]
    if traits(layer.op).kind != "layer" or layer.users != [bn] or layer.attrs.get("activation"):
        return None
    if not all(is_tensor(i) for i in list(bn.inputs[1:]) + list(layer.inputs[1:])):
        return None
    return layer


def folded_tensors(graph, layer, bn):
    """``(w', b')`` as float32 numpy arrays (computed in float64)."""
    def value(node):
        return graph.tensors[node.attrs["tensor"]].astype(np.float64)

    gamma, beta, mean, var = (value(n).reshape(-1) for n in bn.inputs[1:])
    scale = gamma / np.sqrt(var + bn.attrs["eps"])
    weight = value(layer.inputs[1])
    axis = traits(layer.op).out_axis
    shape = [1] * weight.ndim
    shape[axis] = -1
    new_weight = weight * scale.reshape(shape)
    bias = value(layer.inputs[2]).reshape(-1) if len(layer.inputs) > 2 else 0.0
    new_bias = (bias - mean) * scale + beta
    if len(layer.inputs) > 2:
        new_bias = new_bias.reshape(graph.tensors[layer.inputs[2].attrs["tensor"]].shape)
    return new_weight.astype(np.float32), new_bias.astype(np.float32)


def fold_one(graph, layer, bn):
    """Rewire ``layer`` to folded params and remove ``bn`` (and params left unused)."""
    weight, bias = folded_tensors(graph, layer, bn)
    module_path = layer.meta.get("module_path")
    with graph.inserting_before(layer):
        w = graph.param(f"{layer.name}.weight_folded", weight, module_path=module_path)
        b = graph.param(f"{layer.name}.bias_folded", bias, module_path=module_path)
    old = list(layer.inputs[1:]) + list(bn.inputs[1:])
    layer.inputs = (layer.inputs[0], w, b)
    bn.replace_all_uses_with(layer)
    graph.erase(bn)
    for node in dict.fromkeys(old):
        if not node.users:
            graph.erase(node)


@register_pass("fold-batchnorm")
def fold_batchnorm(graph):
    """Fold every foldable conv2d/linear + batch_norm pair (in place); True if any."""
    changed = False
    for bn in graph.find("batch_norm"):
        layer = foldable_layer(bn)
        if layer is not None:
            fold_one(graph, layer, bn)
            changed = True
    return changed
