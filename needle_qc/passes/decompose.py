"""``decompose``: rewrite high-level ops into Needle primitive ops.

``linear`` -> ``matmul`` + ``broadcast_to`` + ``add``; ``conv2d`` -> NCHW<->NHWC ``transpose``
pairs around the ``conv`` primitive; ``batch_norm`` and ``layer_norm`` -> elementwise arithmetic
on broadcast statistics. A fused ``activation="relu"`` becomes a ``relu`` node; ``relu`` itself
is already a primitive. Results equal the high-level op within float32 rounding (1e-6).
New nodes are named ``<op node>.<step>`` and keep the op node's ``module_path``.
"""

from needle_qc.passes import register_pass


class _Builder:
    """Emits primitive nodes for one high-level node, naming them after it."""

    def __init__(self, graph, node):
        self.graph, self.node = graph, node

    def __call__(self, op, inputs, step, **attrs):
        new = self.graph.call(op, inputs, attrs, name=f"{self.node.name}.{step}")
        if "module_path" in self.node.meta:
            new.meta["module_path"] = self.node.meta["module_path"]
        return new

    def expand(self, vector, shape, like, step):
        """``vector`` reshaped to ``shape`` then broadcast to the shape of ``like``."""
        if tuple(vector.meta["shape"]) != tuple(shape):
            vector = self("reshape", [vector], f"{step}_reshape", shape=shape)
        return self("broadcast_to", [vector], f"{step}_broadcast", shape=like.meta["shape"])

    def activation(self, value):
        if self.node.attrs.get("activation") == "relu":
            return self("relu", [value], "relu")
        return value


def decompose_linear(b, node):
    x, w, *bias = node.inputs
    x_shape = x.meta["shape"]
    flat = x if len(x_shape) == 2 else b("reshape", [x], "flatten", shape=(-1, w.meta["shape"][0]))
    y = b("matmul", [flat, w], "matmul")
    if bias:
        y = b("add", [y, b.expand(bias[0], (1, w.meta["shape"][1]), y, "bias")], "add_bias")
    if len(x_shape) != 2:
        y = b("reshape", [y], "unflatten", shape=tuple(x_shape[:-1]) + (w.meta["shape"][1],))
    return b.activation(y)


def decompose_conv2d(b, node):
    x, w, *bias = node.inputs
    nhwc = b("transpose", [b("transpose", [x], "to_nhwc_1", axes=(1, 2))], "to_nhwc",
             axes=(2, 3))
    y = b("conv", [nhwc, w], "conv", stride=node.attrs["stride"],
          padding=node.attrs["padding"])
    if bias:
        y = b("add", [y, b.expand(bias[0], (1, 1, 1, w.meta["shape"][3]), y, "bias")],
              "add_bias")
    nchw = b("transpose", [b("transpose", [y], "to_nchw_1", axes=(2, 3))], "to_nchw",
             axes=(1, 2))
    return b.activation(nchw)


def decompose_batch_norm(b, node):
    x, gamma, beta, mean, var = node.inputs
    channels = x.meta["shape"][1]
    shape = (1, channels) + (1,) * (len(x.meta["shape"]) - 2)
    centered = b("add", [x, b("negate", [b.expand(mean, shape, x, "mean")], "neg_mean")],
                 "centered")
    std = b("power_scalar", [b("add_scalar", [var], "var_eps", scalar=node.attrs["eps"])],
            "std", scalar=0.5)
    y = b("div", [centered, b.expand(std, shape, x, "std")], "normalized")
    y = b("mul", [y, b.expand(gamma, shape, x, "weight")], "scaled")
    return b("add", [y, b.expand(beta, shape, x, "bias")], "shifted")


def _row_mean(b, value, step):
    shape = value.meta["shape"]
    total = b("summation", [value], f"{step}_sum", axes=(len(shape) - 1,))
    mean = b("div_scalar", [total], f"{step}_mean", scalar=shape[-1])
    return b.expand(mean, tuple(shape[:-1]) + (1,), value, step)


def decompose_layer_norm(b, node):
    x, weight, bias = node.inputs
    features = x.meta["shape"][-1]
    shape = (1,) * (len(x.meta["shape"]) - 1) + (features,)
    centered = b("add", [x, b("negate", [_row_mean(b, x, "mean")], "neg_mean")], "centered")
    var = _row_mean(b, b("mul", [centered, centered], "squared"), "var")
    std = b("power_scalar", [b("add_scalar", [var], "var_eps", scalar=node.attrs["eps"])],
            "std", scalar=0.5)
    y = b("div", [centered, std], "normalized")
    y = b("mul", [y, b.expand(weight, shape, x, "weight")], "scaled")
    return b("add", [y, b.expand(bias, shape, x, "bias")], "shifted")


DECOMPOSITIONS = {
    "linear": decompose_linear,
    "conv2d": decompose_conv2d,
    "batch_norm": decompose_batch_norm,
    "layer_norm": decompose_layer_norm,
}
"""High-level op -> ``fn(builder, node) -> Node`` producing the same value from primitives."""


@register_pass("decompose")
def decompose(graph):
    """Replace every op in :data:`DECOMPOSITIONS` by primitives (in place); True if any."""
    changed = False
    for node in graph.find(list(DECOMPOSITIONS)):
        with graph.inserting_before(node):
            result = DECOMPOSITIONS[node.op](_Builder(graph, node), node)
        node.replace_all_uses_with(result)
        graph.erase(node)
        changed = True
    return changed
