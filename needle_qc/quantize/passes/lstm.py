"""``quantize-lstm``: each ``lstm_cell`` as its config asks, and the fuse-qdq rule of a static one.

A cell's config is ``graph.qconfig`` resolved for its module path and the module type ``LSTM``
(``exclude_paths`` or ``exclude_ops=("lstm_cell",)`` keep it float). Configs written before
the cell was fused still do what they did: the cell's two products were ``matmul`` nodes
configured as ``linear`` layers, so ``exclude_ops`` naming ``linear`` or ``matmul`` keeps it
float and, without an ``LSTM`` entry, ``module_types["Linear"]`` configures it
(:data:`~needle_qc.quantize.overrides.FUSED_NAMES`). With symmetric int8 weights (per channel
or per tensor):

* dynamic -> ``qlstm_cell`` at once (x and h quantized per call, ORT DynamicQuantizeLSTM);
* static -> the weights become ``dequantize`` of their int8 params, an observer goes on x and
  one on h, read by this cell only (the other users of h keep the float value); ``convert``
  makes the observers quantize/dequantize pairs, so the QDQ graph is float math between
  quantize/dequantize as for any layer, and the fuse-qdq rule :func:`fuse_static_cell` turns
  ``lstm_cell(dq(q(x)), dq(q(h)), c, dq(W_ih), dq(W_hh), ...)`` into a ``qlstm_cell`` of
  those int8 params with the two quantize nodes' qparams as attrs.

Any other scheme (weight-only formats, asymmetric or per-group weights) gets the cell
decomposed back into the traced primitives, which the other passes quantize as before (its
matmuls become linear layers). Cells sharing a weight share one int8 copy of it.
"""

import numpy as np

from needle_qc.passes import register_pass
from needle_qc.quantize.annotate import (
    annotate_qconfig,
    new_param,
    param_array,
    rename_node,
    shared_weight,
)
from needle_qc.quantize.lowbit import quantize_weight
from needle_qc.quantize.overrides import fused_config

CONFIG_KEY = "lstm_qconfig"
"""``meta`` key of a static cell's config (not ``qconfig``: the generic passes skip it)."""


def cell_config(graph, cell):
    """The QConfig of one ``lstm_cell`` under ``graph.qconfig``, or None (float)."""
    cfg = graph.qconfig
    local = None if cfg is None else fused_config(cfg, cell)
    return None if local is None or local.weight is None else local


def fused_mode(cfg):
    """"dynamic" / "static" when a ``qlstm_cell`` runs ``cfg``, else None (decompose)."""
    if cfg.weight != "int8" or not cfg.weight_symmetric or \
            cfg.resolved_weight_granularity == "per_group":
        return None
    return cfg.activation if cfg.activation in ("dynamic", "static") else None


def _int8_weight(graph, cell, w_node, cfg, cache):
    """``(w_q, scale)`` params of one weight, shared by every cell that reads it."""
    def make():
        qw = quantize_weight(param_array(w_node).astype(np.float32), "int8",
                             cfg.resolved_weight_granularity, symmetric=True)
        path = w_node.meta.get("module_path")
        return (new_param(graph, cell, f"{w_node.name}_q", qw.q, path),
                new_param(graph, cell, f"{w_node.name}_scale",
                          np.asarray(qw.scale, np.float32), path))

    return shared_weight(cache, w_node, cfg, make)


def _int8_weights(graph, cell, cfg, cache):
    """``[W_ih_q, s_ih, W_hh_q, s_hh]`` of a float cell (its inputs 3 and 4)."""
    return [*_int8_weight(graph, cell, cell.inputs[3], cfg, cache),
            *_int8_weight(graph, cell, cell.inputs[4], cfg, cache)]


def to_qlstm(graph, cell, x, h, weights, attrs=None):
    """Replace ``cell`` by ``qlstm_cell(x, h, c, *weights, biases...)`` (same name); returns
    it. ``weights`` is ``[W_ih_q, s_ih, W_hh_q, s_hh]``."""
    c, _, _, *biases = cell.inputs[2:]
    with graph.inserting_before(cell):
        new = graph.call("qlstm_cell", [x, h, c, *weights, *biases],
                         {"gate_order": cell.attrs["gate_order"], **(attrs or {})},
                         name=f"{cell.name}_q")
    if "module_path" in cell.meta:
        new.meta["module_path"] = cell.meta["module_path"]
    cell.replace_all_uses_with(new)
    name = cell.name
    graph.erase(cell)
    rename_node(graph, new, name)
    return new


def _dequantized_weights(graph, cell, weights, cache):
    """The cell reads ``dequantize(W_q, s)`` for W_ih and W_hh (one node per weight)."""
    made = []
    for k, (q, s) in enumerate((weights[:2], weights[2:])):
        key = ("dq", q.name)
        if key not in cache:
            with graph.inserting_before(cell):
                cache[key] = graph.call("dequantize", [q, s], {"axis": -1, "group_size": 0},
                                        name=f"{cell.inputs[3 + k].name}_dq")
        made.append(cache[key])
    ins = list(cell.inputs)
    ins[3:5] = made
    cell.inputs = tuple(ins)


def _observe_input(graph, cell, index, cfg, role):
    from needle_qc.quantize.passes.insert_observers import make_observer_for  # imports fuse-qdq

    value = cell.inputs[index]
    with graph.inserting_before(cell):
        obs = graph.call("observer", [value], {"dtype": cfg.activation_dtype,
                                               "symmetric": cfg.activation_symmetric},
                         name=f"{cell.name}_{role}_obs")
    if "module_path" in cell.meta:
        obs.meta["module_path"] = cell.meta["module_path"]
    graph.observers[obs.name] = make_observer_for(cfg, obs.name)
    cell.inputs = tuple(obs if i == index else v for i, v in enumerate(cell.inputs))


def decompose_cell(graph, cell):
    """The traced primitives of ``cell`` in its place (the op table's evaluation, as ops)."""
    x, h, c, w_ih, w_hh, *biases = cell.inputs
    n, hidden = h.meta["shape"]

    def op(name, inputs, step, **attrs):
        new = graph.call(name, inputs, attrs, name=f"{cell.name}.{step}")
        if "module_path" in cell.meta:
            new.meta["module_path"] = cell.meta["module_path"]
        return new

    with graph.inserting_before(cell):
        z = op("add", [op("matmul", [x, w_ih], "x_mm"), op("matmul", [h, w_hh], "h_mm")], "sum")
        for k, b in enumerate(biases):
            b = op("reshape", [b], f"b{k}_reshape", shape=(1, 4 * hidden))
            z = op("add", [z, op("broadcast_to", [b], f"b{k}_bc", shape=(n, 4 * hidden))],
                   f"b{k}_add")
        parts = op("split", [op("reshape", [z], "gates", shape=(n, 4, hidden))], "split", axis=1)
        gate = {role: op("tuple_get_item", [parts], role, index=k)
                for k, role in enumerate(cell.attrs["gate_order"])}
        act = {r: op("sigmoid" if r != "g" else "tanh", [gate[r]], f"{r}_act") for r in "ifgo"}
        c_new = op("add", [op("mul", [act["f"], c], "fc"), op("mul", [act["i"], act["g"]], "ig")],
                   "c")
        h_new = op("mul", [act["o"], op("tanh", [c_new], "tanh_c")], "h")
    for user in cell.users:  # tuple_get_item(cell, 0 | 1)
        user.replace_all_uses_with(h_new if user.attrs["index"] == 0 else c_new)
    for user in cell.users:
        graph.erase(user)
    graph.erase(cell)


def _fake_quantized(node):
    """``(v, quantize node)`` when ``node`` is ``dequantize(quantize(v))``, else None."""
    if node.op != "dequantize" or len(node.inputs) != 1 or node.inputs[0].op != "quantize":
        return None
    return node.inputs[0].inputs[0], node.inputs[0]


def _int8_params(node):
    """``[W_q, s]`` when ``node`` is ``dequantize(int8 param, scale param)``, else None."""
    if node.op != "dequantize" or len(node.inputs) != 2 or node.attrs.get("group_size") or \
            node.inputs[0].meta.get("dtype") != "int8" or \
            any(i.op not in ("param", "constant") for i in node.inputs):
        return None
    return list(node.inputs)


def _static_attrs(qx, qh):
    sx, sh = qx.meta["qparams"], qh.meta["qparams"]
    return {"x_scale": float(sx["s"]), "x_zero_point": int(sx["z"]), "h_scale": float(sh["s"]),
            "h_zero_point": int(sh["z"]), "dtype": qx.meta["dtype"]}


def fuse_static_cell(cell):
    """fuse-qdq rule: ``lstm_cell(dq(q(x)), dq(q(h)), c, dq(W_ih_q), dq(W_hh_q), ...)`` of a
    static cell -> ``qlstm_cell(x, h, c, W_ih_q, s_ih, W_hh_q, s_hh, ...)`` with the two
    quantize nodes' qparams."""
    fx, fh = _fake_quantized(cell.inputs[0]), _fake_quantized(cell.inputs[1])
    w_ih, w_hh = _int8_params(cell.inputs[3]), _int8_params(cell.inputs[4])
    if cell.meta.get(CONFIG_KEY) is None or None in (fx, fh, w_ih, w_hh) or \
            fx[1].meta["dtype"] != fh[1].meta["dtype"]:
        return False
    to_qlstm(cell.graph, cell, fx[0], fh[0], w_ih + w_hh, _static_attrs(fx[1], fh[1]))
    return True


@register_pass("quantize-lstm")
def quantize_lstm(graph):
    """Quantize, observe or decompose every ``lstm_cell`` (in place); True if any."""
    changed = decomposed = False
    cache = {}
    for cell in graph.find("lstm_cell"):
        cfg = cell_config(graph, cell)
        if cfg is None or cell.meta.get(CONFIG_KEY) is not None:
            continue
        mode = fused_mode(cfg)
        if mode is None:
            decompose_cell(graph, cell)
            decomposed = True
        elif mode == "dynamic":
            to_qlstm(graph, cell, cell.inputs[0], cell.inputs[1],
                     _int8_weights(graph, cell, cfg, cache))
        else:
            _dequantized_weights(graph, cell, _int8_weights(graph, cell, cfg, cache), cache)
            _observe_input(graph, cell, 0, cfg, "x")
            _observe_input(graph, cell, 1, cfg, "h")
            cell.meta[CONFIG_KEY] = cfg.to_dict()
        changed = True
    if decomposed:  # the new matmuls are layers of the config now
        annotate_qconfig(graph, graph.qconfig)
    return changed


__all__ = ["cell_config", "decompose_cell", "fuse_static_cell", "fused_mode", "quantize_lstm"]
