"""Shared helpers of the quantization passes: per-node configs, observers, new params.

``annotate_qconfig(graph, cfg)`` resolves the QConfig for every quantizable node (overrides by
module path and module type) and stores it as plain data in ``node.meta["qconfig"]``; the
registered passes (``insert-observers``, ``weight-only``, ``dynamic``, ``convert``,
``fuse-qdq``) read it from there, so they are ordinary ``fn(graph) -> bool`` passes and the
decision survives ``graph.copy()``.
"""

import numpy as np

from needle_qc.errors import IRError
from needle_qc.opset import FLOAT_DTYPES, traits
from needle_qc.quantize.overrides import check_matches, excluded
from needle_qc.quantize.qconfig import QConfig


def is_weight_layer(node):
    """A layer quantized through its weight param: static (QDQ/integer), dynamic or weight-only
    (its row's ``traits.quantizable == "weight"``)."""
    return traits(node.op).quantizable == "weight"


def is_activation_op(node):
    """An op of two activations, quantized only in static mode."""
    return traits(node.op).quantizable == "activations"


def _is_param(node):
    return node.op in ("param", "constant")



def is_quantizable(node):
    """True for nodes a QConfig may quantize (a layer with a param weight, or matmul/add),
    reading float activations."""
    activations = node.inputs[:1] if is_weight_layer(node) else node.inputs
    if any(a.meta.get("dtype") not in FLOAT_DTYPES for a in activations):
        return False
    if is_weight_layer(node):
        return len(node.inputs) >= 2 and _is_param(node.inputs[1]) and \
            (len(node.inputs) < 3 or _is_param(node.inputs[2]))
    if is_activation_op(node):
        if any(_is_param(i) for i in node.inputs):
            return False
        return node.op == "matmul" or \
            node.inputs[0].meta.get("shape") == node.inputs[1].meta.get("shape")
    return False


def annotate_qconfig(graph, cfg):
    """Store the resolved per-node config in ``meta["qconfig"]``; returns the count annotated.

    A ``matmul`` of an activation by a 2-D param whose module is quantized is first rewritten
    as the equivalent bias-free ``linear`` (looked up with the module type ``Linear``).

    A node whose config is None (kept float by an override) or has no weight dtype gets no
    annotation. Raises ValueError if ``cfg`` is not a QConfig.
    """
    if not isinstance(cfg, QConfig):
        raise ValueError(f"quantize: config must be a QConfig, got {type(cfg).__name__}")
    check_matches(graph, cfg)  # an override matching no layer would silently do nothing
    count = 0
    for node in graph.nodes:
        if _is_weight_matmul(node) and _config_for(cfg, node, "linear") is not None:
            node = matmul_to_linear(graph, node)
        node.meta.pop("qconfig", None)
        if not is_quantizable(node):
            continue
        local = _config_for(cfg, node, node.op)
        if local is None or local.weight is None:
            continue
        if is_activation_op(node) and local.activation != "static":
            continue
        node.meta["qconfig"] = local.to_dict()
        count += 1
    return count


def _config_for(cfg, node, op):
    if excluded(cfg, node, op):
        return None
    path = node.meta.get("module_path") or ""
    return cfg.for_module(path, node.meta.get("module_type") or traits(op).module_type)


def _is_weight_matmul(node):
    """``matmul(x [M, K], param [K, N])``: a linear layer without bias (e.g. an LSTM cell)."""
    if node.op != "matmul" or not _is_param(node.inputs[1]) or _is_param(node.inputs[0]):
        return False
    x, w = node.inputs[0].meta.get("shape") or (), node.inputs[1].meta.get("shape") or ()
    return len(x) == 2 and len(w) == 2


def matmul_to_linear(graph, node):
    """Replace ``matmul(x, w)`` by the equal ``linear(x, w)`` (same name), so that it can be
    quantized like a layer; returns the new node."""
    with graph.inserting_before(node):
        new = graph.call("linear", node.inputs, name=f"{node.name}_linear")
    for key in ("module_path", "source"):
        if key in node.meta:
            new.meta[key] = node.meta[key]
    node.replace_all_uses_with(new)
    name = node.name
    graph.erase(node)
    rename_node(graph, new, name)
    return new


def node_config(node):
    """The node's resolved QConfig, or None when it stays float."""
    data = node.meta.get("qconfig")
    return None if data is None else QConfig.from_dict(data)


def mode_of(node):
    """``"static"``, ``"dynamic"``, ``"weight_only"`` or None (float) for an annotated node."""
    cfg = node_config(node)
    if cfg is None:
        return None
    return {"static": "static", "dynamic": "dynamic"}.get(cfg.activation, "weight_only")


def fused_output(node):
    """The value a layer's quantized output stands for: the node itself, or its sole relu user.

    With ``fuse-activations`` the relu is already an ``activation="relu"`` attr; without it a
    relu that is the only user of the layer is folded into the quantized op's clamp.
    """
    users = node.users
    if is_weight_layer(node) and node.attrs.get("activation") is None and len(users) == 1 \
            and users[0].op == "relu":
        return users[0]
    return node


def fused_activation(node):
    """The activation a layer's output passes through (its ``activation`` attr, a sole relu
    user, ``"relu"`` for ``add_relu``), or None."""
    if node.op == "add_relu":
        return "relu"
    if node.attrs.get("activation") is not None:
        return node.attrs["activation"]
    return "relu" if fused_output(node) is not node else None


def new_param(graph, before, name, array, module_path=None):
    """Add a ``param`` holding ``array`` under a fresh name, right before the node ``before``."""
    array = np.asarray(array)
    # ascontiguousarray would turn a per-tensor () scale into shape (1,)
    stored = np.ascontiguousarray(array) if array.ndim else array.copy()
    with graph.inserting_before(before):
        return graph.param(name, stored, module_path=module_path)


def weight_scheme_key(w_node, cfg):
    """``(tensor key, weight scheme)``: layers sharing one param and one weight scheme share
    one quantized copy of it (an unrolled LSTM's cell weight is used at every step)."""
    scheme = (cfg.weight, cfg.resolved_weight_granularity, cfg.group_size,
              cfg.weight_symmetric)
    return w_node.attrs.get("tensor", w_node.name), scheme


def shared_weight(cache, w_node, cfg, make):
    """``make()`` once per :func:`weight_scheme_key` of ``cache`` (a dict local to one pass
    run); later layers get the same result, so they reference the same param nodes."""
    key = weight_scheme_key(w_node, cfg)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def param_array(node):
    """The stored array of a param/constant node; IRError naming it otherwise."""
    if not _is_param(node):
        raise IRError(f"%{node.name} is a {node.op}, expected a param")
    return node.graph.tensors[node.attrs["tensor"]]


def rename_node(graph, node, name):
    """Give ``node`` the free name ``name`` (a rewritten op takes over its float op's name)."""
    graph.rename(node, name)


def replace_layer(graph, old, op, inputs, attrs):
    """Insert ``op(inputs)`` where ``old`` is, move its users, erase it, take its name.

    A fused activation of ``old`` becomes a separate node after the new one: ``relu`` for
    relu, the generic ``activation {name=...}`` op for any other.
    """
    act = old.attrs.get("activation")
    with graph.inserting_before(old):
        new = graph.call(op, inputs, attrs, name=f"{old.name}_new")
        # print attrs in the op table's declared order, not defaults-first
        new.attrs = {key: new.attrs[key] for key in new.opdef.attrs if key in new.attrs}
        out = new
        if act == "relu":
            out = graph.call("relu", [new], name=f"{old.name}_relu")
        elif act is not None:
            out = graph.call("activation", [new], {"name": act}, name=f"{old.name}_{act}")
    for node in (new, out):
        if "module_path" in old.meta:
            node.meta["module_path"] = old.meta["module_path"]
    old.replace_all_uses_with(out)
    name = old.name
    graph.erase(old)
    rename_node(graph, new, name)
    return new
