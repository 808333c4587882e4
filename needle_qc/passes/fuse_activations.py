"""``fuse-activations``: fold a ReLU into the op before it.

- ``linear``/``conv2d`` + ``relu`` -> the layer with the attr ``activation="relu"`` (the
  quantizer then clamps in the int32 -> int8 output stage instead of running a separate op);
- ``add`` + ``relu`` -> ``add_relu`` (ResNet's residual join).

A ReLU is fused only when it is the sole user of the op before it (else the pre-activation
value is still needed elsewhere).

The ``linear`` and ``conv2d`` rows declare the optional attr ``activation`` (absent means none)
and ``add_relu`` is a row of the op table (:mod:`needle_qc.opset.highlevel`).
"""

from needle_qc.opset import get_op
from needle_qc.passes import register_pass

ACTIVATIONS = ("relu",)


def _sole_relu_user(node):
    users = node.users
    if len(users) == 1 and users[0].op == "relu":
        return users[0]
    return None


def fuse_layer(graph, layer, relu):
    """Give ``layer`` ``activation="relu"`` and drop ``relu``."""
    layer.attrs["activation"] = "relu"
    relu.replace_all_uses_with(layer)
    graph.erase(relu)


def fuse_add(graph, add, relu):
    """Replace ``add`` + ``relu`` by one ``add_relu`` node where the relu was."""
    with graph.inserting_before(relu):
        fused = graph.call("add_relu", add.inputs, name=f"{add.name}_relu",
                           meta={k: v for k, v in relu.meta.items()})
    relu.replace_all_uses_with(fused)
    graph.erase(relu)
    graph.erase(add)


@register_pass("fuse-activations")
def fuse_activations(graph):
    """Fuse every eligible relu (in place); True if any."""
    changed = False
    for node in graph.nodes:
        if node.graph is None:
            continue  # erased by an earlier fusion in this sweep
        relu = _sole_relu_user(node)
        if relu is None:
            continue
        if "activation" in get_op(node.op).attrs and not node.attrs.get("activation"):
            fuse_layer(graph, node, relu)
        elif node.op == "add":
            fuse_add(graph, node, relu)
        else:
            continue
        changed = True
    return changed
