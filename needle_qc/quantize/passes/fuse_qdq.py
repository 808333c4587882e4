"""``fuse-qdq``: QDQ graph -> integer graph.

Rules, applied until nothing changes (then dead code is removed):

* ``quantize(dequantize(q))`` -> ``q`` when the qparams and dtype agree, else ``requantize(q)``;
* a shared-qparams op (reshape, transpose, permute, max; maximum of two equal-qparams inputs) on
  ``dequantize(q)`` runs on the integers and keeps ``q``'s qparams;
* a static ``linear``/``conv2d`` reading ``dequantize`` of an activation, of an int8/uint8
  weight (per tensor or per output channel, with or without a zero point) and of an int32 bias
  -> ``qlinear``/``qconv2d`` (an int4 weight, W4A8, is stored packed two per byte with
  ``weight_dtype="int4"``); a relu (attr or sole relu user) becomes the output clamp; the
  output is the following ``quantize``'s type, or f32 when none follows;
* a static ``add``/``add_relu`` of two dequantized activations followed by ``quantize`` ->
  ``qadd``; a static ``matmul`` of two -> ``qmatmul``.

Ops without an integer version stay float between ``dequantize`` and ``quantize``. The fused
node takes the name of the float op it replaces. Mutates the graph in place.

A weight's zero point rides along unchanged: ``qlinear(x_q, w_q, w_scale, w_zp[, bias])`` reads
the very ``u8`` weight and zero point params the QDQ graph dequantized, so the integer IR states
``Σ (x - z_x)(w - z_w)`` with the values a reader can check against the QDQ graph, and no
second copy of the weight appears in ``graph.tensors``. The int8 kernels store weights as int8:
the lowering shifts a ``u8`` weight and its zero point by -128 when it packs them, once
(``(w - 128) - (z - 128) == w - z`` exactly), a storage detail like the panel layout.
"""

import numpy as np

from needle_qc.ir.pattern import Rule, rewrite
from needle_qc.opset import traits
from needle_qc.passes import register_pass
from needle_qc.quantize.annotate import (
    fused_activation,
    fused_output,
    mode_of,
    new_param,
    node_config,
    rename_node,
)
from needle_qc.quantize.lowbit import pack_int4
from needle_qc.quantize.passes.insert_observers import shares_input_qparams
from needle_qc.quantize.passes.lstm import fuse_static_cell

# ----------------------------------------------------------------------------- helpers

def _act_source(node):
    """``q`` when ``node`` is ``dequantize(q)`` of a quantized activation, else None."""
    if node.op == "dequantize" and len(node.inputs) == 1 and \
            node.inputs[0].meta.get("dtype") in ("uint8", "int8"):
        return node.inputs[0]
    return None


def _type_key(node):
    qp = node.meta.get("qparams") or {}
    return node.meta.get("dtype"), qp.get("s"), qp.get("z"), qp.get("qmin"), qp.get("qmax")


def _replace(graph, old_nodes, new, result_of, renamed=None):
    """Rewire users of ``result_of`` to ``new``, erase ``old_nodes`` (users first), then give
    ``renamed`` (default ``new``) the last old node's name when that name became free."""
    result_of.replace_all_uses_with(new)
    name = old_nodes[-1].name
    for node in old_nodes:
        if node.graph is not None and not node.users:
            graph.erase(node)
    if name not in graph._by_name:
        rename_node(graph, renamed or new, name)


def _with_activation(attrs, activation):
    # absent means none: unfused integer ops print without the attr
    return attrs if activation is None else {**attrs, "activation": activation}


def _call(graph, before, op, inputs, attrs, name, qparams_from=None):
    with graph.inserting_before(before):
        node = graph.call(op, inputs, attrs, name=name)
    if qparams_from is not None:
        node.meta["qparams"] = dict(qparams_from.meta["qparams"])
    return node


# ----------------------------------------------------------------------------- rules

def fold_quantize_dequantize(node):
    """quantize(dequantize(q)) -> q, or requantize(q) when the qparams differ."""
    graph = node.graph
    source = _act_source(node.inputs[0])
    if source is None:
        return False
    if _type_key(source) == _type_key(node):
        node.replace_all_uses_with(source)
        graph.erase(node)
        return True
    new = _call(graph, node, "requantize", [source], {"dtype": node.attrs["dtype"]},
                f"{node.name}_rq", node)
    _replace(graph, [node], new, node)
    return True


def shared_on_integers(node):
    """A shared-qparams op on dequantize(q) -> the op on q, then one dequantize."""
    graph = node.graph
    if shares_input_qparams(node):
        sources = [_act_source(node.inputs[0])]
    elif node.op == "maximum":
        sources = [_act_source(i) for i in node.inputs]
        if None not in sources and _type_key(sources[0]) != _type_key(sources[1]):
            return False
    else:
        return False
    if None in sources:
        return False
    new = _call(graph, node, node.op, sources, node.attrs, f"{node.name}_int", sources[0])
    with graph.inserting_before(node):
        dq = graph.call("dequantize", [new], name=f"{node.name}_dq")
    _replace(graph, [node], dq, node, renamed=new)
    return True


def _weight_parts(w_dq):
    """``[w_q, scale]`` or ``[w_q, scale, zero_point]`` of ``dequantize`` of a u8/i8 weight
    param per tensor or per output channel, else None."""
    if w_dq.op != "dequantize" or len(w_dq.inputs) not in (2, 3) or w_dq.attrs["group_size"]:
        return None
    w_q, scale, *zp = w_dq.inputs
    dtype = w_q.meta.get("dtype")
    if w_q.op != "param" or dtype not in ("int8", "uint8"):
        return None
    if zp and (zp[0].op != "param" or zp[0].meta.get("dtype") != dtype):
        return None
    per_tensor = tuple(scale.meta.get("shape") or ()) in ((), (1,))
    last = len(w_q.meta["shape"]) - 1
    if not per_tensor and w_dq.attrs["axis"] not in (-1, last):
        return None  # the integer ops scale per output channel, the weight's last axis
    return [w_q, scale, *zp]


def _int4_weight(node, parts):
    """W4A8: ``parts`` with the int4 values (int8 param) replaced by a uint8 param holding them
    two per byte along the reduction axis (one per weight, shared by its layers), and the
    ``weight_dtype`` attr; unchanged for 8-bit weights."""
    cfg = node_config(node)
    if cfg is None or cfg.weight != "int4":
        return parts, {}
    graph, w_q = node.graph, parts[0]
    name = f"{w_q.name}_int4"
    if name not in graph._by_name:
        red = traits(node.op).reduction_axis
        packed = pack_int4(graph.tensors[w_q.attrs["tensor"]], axis=red)
        new_param(graph, w_q, name, packed, w_q.meta.get("module_path"))
    return [graph.node(name), *parts[1:]], {"weight_dtype": "int4"}


def _bias_parts(node, x_q, scale):
    """``[b_q]`` for ``dequantize(b_q int32, s_x * s_w)``, ``[]`` without bias, None if unfit."""
    if len(node.inputs) < 3:
        return []
    b_dq = node.inputs[2]
    if b_dq.op != "dequantize" or len(b_dq.inputs) != 2 or \
            b_dq.inputs[0].meta.get("dtype") != "int32":
        return None
    graph = node.graph
    want = np.multiply(np.float32(x_q.meta["qparams"]["s"]),
                       graph.tensors[scale.attrs["tensor"]], dtype=np.float32)
    got = graph.tensors[b_dq.inputs[1].attrs["tensor"]]
    if not np.array_equal(np.broadcast_to(want, got.shape), got):
        return None
    return [b_dq.inputs[0]]


def _output_of(node):
    """``(value, quantize or None)``: the layer's fused output and the quantize reading it."""
    value = fused_output(node)
    users = value.users
    if len(users) == 1 and users[0].op == "quantize":
        return value, users[0]
    return value, None


def fuse_layer(node):
    """Static linear/conv2d in QDQ form -> qlinear/qconv2d."""
    graph = node.graph
    if mode_of(node) != "static":
        return False
    x_q = _act_source(node.inputs[0])
    parts = _weight_parts(node.inputs[1]) if x_q is not None else None
    bias = _bias_parts(node, x_q, parts[1]) if parts is not None else None
    if bias is None:
        return False
    value, quant = _output_of(node)
    parts, w_attrs = _int4_weight(node, parts)
    attrs = _with_activation({"dtype": quant.attrs["dtype"] if quant else "float32",
                              **w_attrs}, fused_activation(node))
    if node.op == "conv2d":
        attrs.update(stride=node.attrs["stride"], padding=node.attrs["padding"])
    op = "qlinear" if node.op == "linear" else "qconv2d"
    anchor = quant or value
    new = _call(graph, anchor, op, [x_q, *parts, *bias], attrs, f"{node.name}_int", quant)
    _replace(graph, [n for n in (quant, value, node) if n is not None], new, anchor)
    return True


def fuse_activation_op(node):
    """Static add/add_relu -> qadd, matmul -> qmatmul, on two dequantized activations."""
    graph = node.graph
    if mode_of(node) != "static":
        return False
    sources = [_act_source(i) for i in node.inputs]
    if None in sources:
        return False
    users = node.users
    quant = users[0] if len(users) == 1 and users[0].op == "quantize" else None
    if node.op == "matmul":
        attrs = {"dtype": quant.attrs["dtype"] if quant else "float32"}
        op = "qmatmul"
    elif quant is None:
        return False
    else:
        attrs, op = _with_activation({"dtype": quant.attrs["dtype"]}, fused_activation(node)), \
            "qadd"
    anchor = quant or node
    new = _call(graph, anchor, op, sources, attrs, f"{node.name}_int", quant)
    _replace(graph, [n for n in (quant, node) if n is not None], new, anchor)
    return True


RULES = (
    # quantize(dequantize(q)) -> q | requantize(q)
    Rule("quantize", fold_quantize_dequantize, in_place=True),
    # op(dequantize(q)) -> dequantize(op(q)) for ops that keep their input's qparams
    Rule(None, shared_on_integers, in_place=True),
    # quantize(layer(dequantize(x_q), dequantize(w_q), dequantize(b_i32))) -> qlayer(x_q, w_q..)
    Rule(("linear", "conv2d"), fuse_layer, in_place=True),
    # quantize(add[_relu](dequantize(a), dequantize(b))) -> qadd(a, b); matmul -> qmatmul
    Rule(("add", "add_relu", "matmul"), fuse_activation_op, in_place=True),
    # lstm_cell(dequantize(quantize(x)), dequantize(quantize(h)), ..) -> qlstm_cell(x, h, ..)
    Rule("lstm_cell", fuse_static_cell, in_place=True),
)


@register_pass("fuse-qdq")
def fuse_qdq(graph):
    """QDQ graph -> integer graph (in place); True if anything changed."""
    return rewrite(graph, RULES, max_iterations=10_000,
                   after_sweep=lambda g: g.eliminate_dead_code()) > 0
