"""``insert-observers``: an observer after every value a static quantized node reads or writes.

Reads the per-node config that :func:`needle_qc.quantize.annotate.annotate_qconfig` stored in
``meta["qconfig"]`` (``quantize_pass`` does both). For each node whose config is static it
observes the activation inputs and the output (after a fused relu). A value computed by a
shared-qparams op (reshape, transpose, permute, max) from an observed value gets no observer of
its own: it will reuse its source's qparams. Each observer's statistics object is stored in
``graph.observers[observer_name]``. Mutates the graph in place; running it twice adds nothing.
"""

from needle_qc.opset import traits
from needle_qc.passes import register_pass
from needle_qc.quantize.annotate import (
    fused_output,
    is_weight_layer,
    mode_of,
    node_config,
)
from needle_qc.quantize.observers import make_observer


def shares_input_qparams(node):
    """A one-input op that runs on raw integers keeping its input's qparams."""
    return traits(node.op).shares_qparams and len(node.inputs) == 1


def activation_inputs(node):
    """The inputs of a quantized node that are activations (not weights or biases)."""
    return node.inputs[:1] if is_weight_layer(node) else node.inputs


def shared_source(value):
    """Follow unary shared-qparams ops back to the value whose qparams ``value`` reuses."""
    while shares_input_qparams(value) or value.op == "observer":
        value = value.inputs[0]
    return value


def make_observer_for(cfg, name):
    """The statistics object a config asks for (``cfg.observer``), named after its node."""
    if cfg.observer in ("percentile", "entropy", "mse"):
        return make_observer(cfg.observer, percentile=cfg.percentile, dtype=cfg.activation_dtype,
                             symmetric=cfg.activation_symmetric, name=name)
    return make_observer(cfg.observer, name=name)


def needed_values(graph):
    """Value -> config of the first static node that needs it quantized (in graph order)."""
    needed = {}
    for node in graph.nodes:
        if mode_of(node) != "static":
            continue
        cfg = node_config(node)
        for value in activation_inputs(node):
            needed.setdefault(value, cfg)
        needed.setdefault(fused_output(node), cfg)
    return needed


def _already_observed(value):
    return value.op == "observer" or any(u.op == "observer" for u in value.users)


def _observe(graph, value, cfg):
    attrs = {"dtype": cfg.activation_dtype, "symmetric": cfg.activation_symmetric}
    if cfg.reduce_range:  # absent means the full range: observed graphs print as before
        attrs["reduce_range"] = True
    with graph.inserting_after(value):
        obs = graph.call("observer", [value], attrs, name=f"{value.name}_obs")
    if "module_path" in value.meta:
        obs.meta["module_path"] = value.meta["module_path"]
    value.replace_all_uses_with(obs, except_for=[obs])
    graph.observers[obs.name] = make_observer_for(cfg, obs.name)
    return obs


@register_pass("insert-observers")
def insert_observers(graph):
    """Insert the observers (in place); True if any was added."""
    needed = needed_values(graph)
    observed = set()
    changed = False
    for value in graph.nodes:
        if value not in needed:
            continue
        if _already_observed(value) or shared_source(value) in observed:
            observed.add(value)
            continue
        _observe(graph, value, needed[value])
        observed.add(value)
        changed = True
    return changed
