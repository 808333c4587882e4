"""SmoothQuant as a calibration step (Xiao et al., arXiv 2211.10438, eq. 4).

``insert-smoothquant-stats`` (a pass, after ``insert-observers``) puts a statistics observer
after every ``layer_norm`` whose output feeds only static linear layers configured with
``smoothquant`` (alpha or ``"auto"``). :func:`calibrate_smoothquant` (run by ``calibrate`` when
such observers exist) passes the batches once to measure ``max |X_j|`` per channel, then per
LayerNorm: ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` over all its consumers, gamma and beta
divided by s, each consumer's weight rows multiplied by s (the float output is unchanged), the
statistics observer removed and every other observer reset, so the real calibration then sees
the smoothed activations. ``"auto"`` picks alpha on a sample of the calibration rows by the
quantized layer's output error (:class:`~needle_qc.quantize.algorithms.QuantSim` built from
the layer's config). What was chosen, with the per-channel range statistics (outlier check),
is kept in the LayerNorm node's ``meta["smoothquant"]``.
"""
from __future__ import annotations

import numpy as np

from needle_qc.passes import register_pass
from needle_qc.quantize.algorithms.smoothquant import (
    ALPHA_GRID,
    QuantSim,
    activation_channel_stats,
    smooth_weight,
    smoothquant_scales,
)
from needle_qc.quantize.annotate import new_param, node_config, param_array
from needle_qc.quantize.layer_stats import ChannelRangeStats

# ----------------------------------------------------------------------------- the pass

def consumers(value):
    """The linear layers reading ``value`` (through observer nodes), or None if anything else
    reads it."""
    found = []
    for user in value.users:
        if user.op == "observer":
            more = consumers(user)
            if more is None:
                return None
            found += more
        elif user.op == "linear" and user.inputs[0] is value and user.inputs[1].op == "param" \
                and len(user.inputs[1].users) == 1:
            found.append(user)
        else:
            return None
    return found


def _alpha_of(norm):
    """The common ``smoothquant`` setting of a LayerNorm's consumers, or None."""
    if norm.op != "layer_norm" or any(p.op != "param" or len(p.users) != 1
                                      for p in norm.inputs[1:]):
        return None
    layers = consumers(norm)
    if not layers:
        return None
    cfgs = [node_config(layer) for layer in layers]
    alphas = {None if c is None or c.activation != "static" else c.smoothquant for c in cfgs}
    return alphas.pop() if len(alphas) == 1 else None


def is_smoothquant_node(graph, node):
    stats = graph.observers.get(node.name)
    return node.op == "observer" and isinstance(stats, ChannelRangeStats)


@register_pass("insert-smoothquant-stats")
def insert_smoothquant_stats(graph):
    """Insert the per-channel statistics observers (in place); True if any."""
    changed = False
    for norm in list(graph.nodes):
        if _alpha_of(norm) is None or any(is_smoothquant_node(graph, u) for u in norm.users):
            continue
        with graph.inserting_after(norm):
            node = graph.call("observer", [norm], name=f"{norm.name}_smooth_stats")
        norm.replace_all_uses_with(node, except_for=[node])
        graph.observers[node.name] = ChannelRangeStats(name=node.name)
        changed = True
    return changed


# ----------------------------------------------------------------------------- the step

def _sim(cfg):
    gran = cfg.resolved_weight_granularity
    return QuantSim(cfg.activation_dtype, cfg.activation_symmetric, cfg.weight, gran,
                    cfg.weight_symmetric, cfg.group_size)


def choose_scales(stats, weights, alpha, cfg):
    """``(alpha, s, errors)``; ``alpha="auto"`` scores :data:`ALPHA_GRID` on the sample."""
    if alpha != "auto":
        return float(alpha), smoothquant_scales(stats.absmax, weights, alpha), {}
    sim = _sim(cfg)
    errors = {"none": sim.output_mse(stats.sample, np.ones(len(stats.absmax)), weights)}
    for a in ALPHA_GRID:
        errors[a] = sim.output_mse(stats.sample, smoothquant_scales(stats.absmax, weights, a),
                                   weights)
    best = min(ALPHA_GRID, key=lambda a: errors[a])  # the first of equal errors
    return best, smoothquant_scales(stats.absmax, weights, best), errors


def _replace_param(graph, user, old, array):
    new = new_param(graph, user, f"{old.name}_smooth", array.astype(np.float32),
                    old.meta.get("module_path"))
    user.replace_input(old, new)


def smooth_one(graph, node):
    """Apply SmoothQuant at one statistics node (removed); the LayerNorm's meta records it."""
    stats = graph.observers.pop(node.name)
    norm = node.inputs[0]
    layers = consumers(node)
    if stats.n_updates == 0 or not layers:
        raise ValueError(f"smoothquant: %{node.name} saw no calibration data")
    cfg = node_config(layers[0])
    weights = [param_array(layer.inputs[1]).astype(np.float32) for layer in layers]
    alpha, s, errors = choose_scales(stats, weights, cfg.smoothquant, cfg)
    for p in norm.inputs[1:]:
        arr = param_array(p)
        _replace_param(graph, norm, p, (arr.astype(np.float64) / s.reshape(arr.shape)))
    for layer, w in zip(layers, weights):
        _replace_param(graph, layer, layer.inputs[1], smooth_weight(w, s))
    info = activation_channel_stats(stats.absmax)
    norm.meta["smoothquant"] = {
        "alpha": alpha, "max_median_ratio": info["max_median_ratio"],
        "outliers": len(info["outliers"]), "channels": info["channels"],
        "errors": {str(k): float(v) for k, v in errors.items()}}
    node.replace_all_uses_with(norm)
    graph.erase(node)


def smoothing_pending(graph) -> bool:
    return any(is_smoothquant_node(graph, n) for n in graph.find("observer"))


def apply_smoothquant(graph):
    """Smooth at every calibrated statistics node, then reset every other observer."""
    for node in [n for n in graph.find("observer") if is_smoothquant_node(graph, n)]:
        smooth_one(graph, node)
    graph.eliminate_dead_code()
    observers = graph.observers
    for name, obs in list(observers.items()):
        observers[name] = type(obs)(name=obs.name, **obs._config())


def calibrate_smoothquant(prepared, batches, run_batch, progress=False):
    """Run ``batches`` once (``run_batch(batch)``) to measure, then smooth. Returns the batches
    as a list (the real calibration runs them again)."""
    from tqdm import tqdm

    batches = list(batches)
    for batch in tqdm(batches, desc="smoothquant", unit="batch", disable=not progress):
        run_batch(batch)
    apply_smoothquant(prepared)
    return batches
