"""``fuse-activations``: fold a ReLU into the op before it.

- ``linear``/``conv2d`` + ``relu`` -> the layer with the attr ``activation="relu"`` (the
  quantizer then clamps in the int32 -> int8 output stage instead of running a separate op);
- ``add`` + ``relu`` -> ``add_relu`` (ResNet's residual join).

A ReLU is fused only when it is the sole user of the op before it (else the pre-activation
value is still needed elsewhere).

The ``linear`` and ``conv2d`` rows declare the optional attr ``activation`` (absent means none)
and ``add_relu`` is a row of the op table (:mod:`needle_qc.opset.highlevel`).
"""

from needle_qc.ir.pattern import Rule, rewrite
from needle_qc.opset import get_op
from needle_qc.passes import register_pass

ACTIVATIONS = ("relu",)


def _sole_relu_user(node):
    users = node.users
    if len(users) == 1 and users[0].op == "relu":
        return users[0]
    return None


def fuse_relu_into_layer(layer):
    """A layer whose row declares ``activation``, read only by a relu: set the attr, drop it."""
    relu = _sole_relu_user(layer)
    if relu is None or "activation" not in get_op(layer.op).attrs or layer.attrs.get("activation"):
        return False
    layer.attrs["activation"] = "relu"
    relu.replace_all_uses_with(layer)
    layer.graph.erase(relu)
    return True


def fuse_relu_into_add(add):
    """``add`` read only by a relu -> one ``add_relu`` node where the relu was."""
    relu = _sole_relu_user(add)
    if relu is None:
        return False
    graph = add.graph
    with graph.inserting_before(relu):
        fused = graph.call("add_relu", add.inputs, name=f"{add.name}_relu",
                           meta={k: v for k, v in relu.meta.items()})
    relu.replace_all_uses_with(fused)
    graph.erase(relu)
    graph.erase(add)
    return True


RULES = (
    # relu(layer(x)) -> layer(x) {activation="relu"}
    Rule(None, fuse_relu_into_layer, in_place=True),
    # relu(add(a, b)) -> add_relu(a, b)
    Rule("add", fuse_relu_into_add, in_place=True),
)


@register_pass("fuse-activations")
def fuse_activations(graph):
    """Fuse every eligible relu (in place); True if any."""
    return rewrite(graph, RULES) > 0
