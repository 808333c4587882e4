"""Memory accounting, one place for every view of it: the graph's stored weights
(:class:`WeightMemory`), what the compiled kernels allocate (:class:`MemoryReport`) and the
report's theoretical vs measured bytes (:func:`memory_of`)."""

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from needle_qc.errors import IRError
from needle_qc.opset import traits
from needle_qc.opset.quant_eval import layer_optional_inputs

_BITS = {"int4": 4, "uint4": 4, "int8": 8, "uint8": 8, "float16": 16, "bfloat16": 16,
         "float32": 32}
_DTYPE_NAMES = {"fp16": "float16", "bf16": "bfloat16", "f16": "float16", "bf16_bits": "bfloat16",
                "i8": "int8", "u8": "uint8", "f32": "float32"}
PANEL = 16
"""Column panel width of every packed CPU weight layout (``csrc/quant``)."""


# ----------------------------------------------------------------------------- the graph's weights

def _is_weight_layer(node):
    """A float or quantized layer whose second input is its weight (linear/conv families)."""
    t = traits(node.op)
    return t.kind in ("layer", "qlayer") and t.weight_input == 1


def _layer_weight_count(node):
    """Logical weight elements of a layer (4-bit weights are stored two per byte)."""
    w = node.inputs[1].meta["shape"]
    if traits(node.op).reduction_axis == 0:  # the linear family: (K, N) weights
        return int(node.inputs[0].meta["shape"][-1]) * int(w[-1])
    return int(w[0]) * int(w[1]) * int(node.inputs[0].meta["shape"][1]) * int(w[3])


def _has_bias(node):
    if "has_bias" in node.attrs:
        return bool(node.attrs["has_bias"])
    if node.op in ("qlinear", "qconv2d"):  # a 4th input may be the weight zero point
        return layer_optional_inputs([i.meta.get("dtype") for i in node.inputs])[1] is not None
    return len(node.inputs) == {"linear": 3, "conv2d": 3}.get(node.op, 4)


def _layer_dtype(node, weight):
    if "weight_dtype" in node.attrs:
        return node.attrs["weight_dtype"]
    return str(weight.dtype)


class WeightMemory:
    """Layer weights of a graph by data type, as stored in the graph (the artifact).

    ``rows[dtype]`` holds ``weights`` (elements), ``bytes`` (the weight tensors as stored;
    4-bit packed two per byte), ``qparam_bytes`` (scales and zero points), ``bias_bytes``,
    ``float32_bytes`` (the same weights in fp32) and ``bits_per_weight`` (weight + qparam bits
    per element). ``other_bytes`` counts params outside linear/conv layers (embeddings,
    norms, recurrent matrices), which stay float. ``runtime`` is the compiled model's own
    report (what its kernels allocate; a layer without a quantized kernel keeps fp32 there).
    """

    def __init__(self, graph, runtime=None):
        self.rows = {}
        self.other_bytes = 0
        self.runtime = runtime
        used = set()
        for node in graph.nodes:
            if _is_weight_layer(node) and node.inputs[1].op == "param":
                used |= self._add_layer(graph, node)
        for node in graph.find("param"):
            if node.name not in used:
                self.other_bytes += int(graph.tensors[node.attrs["tensor"]].nbytes)

    def _add_layer(self, graph, node):
        params = [i for i in node.inputs[1:] if i.op == "param"]
        arrays = [graph.tensors[p.attrs["tensor"]] for p in params]
        bias = arrays.pop() if _has_bias(node) else None
        dtype = _layer_dtype(node, arrays[0])
        row = self.rows.setdefault(dtype, dict(weights=0, bytes=0, qparam_bytes=0,
                                               bias_bytes=0, float32_bytes=0))
        count = _layer_weight_count(node)
        row["weights"] += count
        row["bytes"] += int(arrays[0].nbytes)
        row["qparam_bytes"] += sum(int(a.nbytes) for a in arrays[1:])
        row["bias_bytes"] += 0 if bias is None else int(bias.nbytes)
        row["float32_bytes"] += 4 * count
        row["bits_per_weight"] = 8 * (row["bytes"] + row["qparam_bytes"]) / row["weights"]
        return {p.name for p in params}

    @property
    def total_bytes(self):
        """Every param byte: layer weights, qparams, biases and other params."""
        return self.other_bytes + sum(r["bytes"] + r["qparam_bytes"] + r["bias_bytes"]
                                      for r in self.rows.values())

    def __str__(self):
        lines = [f"{'dtype':<10}{'weights':>10}{'bytes':>11}{'fp32 bytes':>12}{'ratio':>7}"
                 f"{'qparams B':>11}{'bias B':>9}{'bits/w':>8}"]
        for dtype, r in sorted(self.rows.items()):
            lines.append(f"{dtype:<10}{r['weights']:>10}{r['bytes']:>11}{r['float32_bytes']:>12}"
                         f"{r['bytes'] / r['float32_bytes']:>7.3f}{r['qparam_bytes']:>11}"
                         f"{r['bias_bytes']:>9}{r['bits_per_weight']:>8.2f}")
        lines.append(f"other params (float) {self.other_bytes} B; total {self.total_bytes} B")
        if self.runtime is not None:
            lines += ["as allocated by the compiled kernels:", str(self.runtime)]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- allocated by kernels

@dataclass
class MemoryReport:
    """Weights by dtype (theoretical vs as allocated, qparams apart) and peak activations."""

    weights: dict
    peak_activation_bytes: int
    batch_size: int
    float_layers: dict = field(default_factory=dict)  # asked to be quantized, run in float

    @property
    def total_measured_bytes(self):
        return sum(r["measured_bytes"] + r["qparam_bytes"] for r in self.weights.values())

    def __str__(self):
        lines = [f"{'dtype':<10} {'weights':>10} {'theory B':>12} {'packed B':>12} "
                 f"{'qparams B':>10} {'bits/w':>7}"]
        for dtype, r in sorted(self.weights.items()):
            lines.append(f"{dtype:<10} {r['weights']:>10} {r['theoretical_bytes']:>12.0f} "
                         f"{r['measured_bytes']:>12} {r['qparam_bytes']:>10} "
                         f"{r['bits_per_weight']:>7.2f}")
        lines.append(f"weights total {self.total_measured_bytes} B; peak activations "
                     f"{self.peak_activation_bytes} B at batch {self.batch_size}")
        for node, why in self.float_layers.items():
            lines.append(f"kept float: %{node} ({why})")
        return "\n".join(lines)


def runtime_report(program, batch, float_layers):
    """The :class:`MemoryReport` of a lowered Program at ``batch`` (weights by dtype, as the
    kernels allocated them, and the peak activation bytes of the buffer plan)."""
    by_dtype = {}
    for step in program.steps:
        for rec in step.active.weights:
            key = f"{rec.dtype} in {rec.resident}" if rec.resident else rec.dtype
            row = by_dtype.setdefault(key, {"weights": 0, "theoretical_bytes": 0.0,
                                                  "measured_bytes": 0, "qparam_bytes": 0})
            row["weights"] += rec.count
            row["theoretical_bytes"] += rec.theoretical_bytes
            row["measured_bytes"] += rec.measured_bytes
            row["qparam_bytes"] += rec.qparam_bytes
    for row in by_dtype.values():
        total_bits = 8 * (row["measured_bytes"] + row["qparam_bytes"])
        row["bits_per_weight"] = total_bits / row["weights"] if row["weights"] else 0.0
    return MemoryReport(by_dtype, program.peak_activation_bytes(batch), batch, float_layers)


# ----------------------------------------------------------------------------- the report's view


def _declared_dtype(graph, node_name):
    """The data type the quantizer gave a layer's weight (what theory counts), from the IR."""
    node = _node_or_none(graph, node_name)
    if node is None:
        return "float32"
    declared = node.attrs.get("weight_dtype")
    if declared:
        return _DTYPE_NAMES.get(declared, declared)
    for inp in _weight_input(node)[:1]:
        while inp.op == "dequantize":
            inp = inp.inputs[0]
        dtype = str(inp.meta.get("dtype") or "float32")
        return _DTYPE_NAMES.get(dtype, dtype)
    return "float32"


def _node_or_none(graph, name):
    try:
        return graph.node(name)
    except IRError:
        return None


def _weight_input(node):
    """``[the weight input]`` of a layer: its row's ``weight_input`` (an ``lstm_cell``'s is
    W_ih), else its second input; ``[]`` when it has none."""
    index = traits(node.op).weight_input
    return list(node.inputs[1 if index is None else index:][:1])


def _weight_dims(graph, node_name, count):
    """(K, N, runs) of a layer's weight as a GEMM: N = output features (last dim), K = count /
    N, runs = kernel rows KH of a [KH, KW, Cin, Cout] conv weight (1 otherwise)."""
    node = _node_or_none(graph, node_name)
    weight = _weight_input(node) if node is not None else []
    shape = weight[0].meta.get("shape") if weight else None
    n = int(shape[-1]) if shape else 1
    runs = int(shape[0]) if shape and len(shape) == 4 else 1
    return max(count // max(n, 1), 1), n, runs


def packing_allowance(dtype, k, n, group_size=32, runs=1):
    """The most bytes a packed CPU weight may take beyond ``k*n*bits/8`` (documented overhead).

    * every format: ``n`` padded to whole 16-column panels;
    * int8: also the depth padded to k-quads, per run: ``k`` is ``runs`` runs of ``k / runs``
      (a conv's kernel rows: the direct int8 conv reads each row's KW*Cin bytes as one run
      padded to 4; the im2col conv pads the whole depth once, never more), and up to 16 bytes
      per column of bookkeeping (int32 column sum and zero point, int64 sum of ``|w|`` for the
      overflow proof) kept in the packed buffer of the static/dynamic GEMM;
    * int4: two weights per byte, padding only (group scales are counted as qparams);
    * float16 / bfloat16: padding only. float32 weights are kept unpadded.

    ``group_size`` is accepted for symmetry with the QConfig; the scales do not count here.
    """
    panels = -(-n // PANEL)
    padded_n = panels * PANEL
    if dtype in ("int8", "uint8"):  # uint8 weights are stored as int8 (q - z) when that fits
        runs = runs if runs >= 1 and k % runs == 0 else 1
        return padded_n * runs * (-(-(k // runs) // 4) * 4) - k * n + 16 * n
    if dtype in ("float16", "bfloat16"):
        return 2 * k * (padded_n - n)
    if dtype in ("int4", "uint4"):
        return (padded_n - n) * k / 2
    return 0


def _weight_key(graph, node_name):
    """Identity of a layer's stored weight by content, so one weight used by many nodes (an
    LSTM cell unrolled over time) counts once in theory; None when it cannot be found."""
    node = _node_or_none(graph, node_name)
    if node is None or not _weight_input(node):
        return None
    inp = _weight_input(node)[0]
    while inp.op == "dequantize":
        inp = inp.inputs[0]
    array = graph.tensors.get(inp.attrs.get("tensor")) if inp.op in ("param", "constant") \
        else None
    if array is None:
        return None
    array = np.ascontiguousarray(array)
    return (str(array.dtype), array.shape, hashlib.sha1(array.tobytes()).hexdigest())


def memory_of(cm, batch, group_size=32):
    """Weight bytes of a CompiledModel: a dict of the ReportRow memory fields.

    ``weight_count`` and ``theoretical_bytes`` count each distinct weight once;
    ``measured_bytes`` is every buffer the runtime holds, copies included (``duplicate_layers``
    names the layers holding a copy of a weight already counted).
    """
    graph, report = cm.graph, cm.memory_report(batch)
    out = {"weight_count": 0, "theoretical_bytes": 0.0, "measured_bytes": 0,
           "max_packed_bytes": 0.0, "qparam_bytes": 0, "fallback_layers": [],
           "duplicate_layers": []}
    seen = set()
    for step in cm.program.steps:
        for rec in step.active.weights:
            declared = _declared_dtype(graph, rec.node)
            theory = rec.count * _BITS.get(declared, 32) / 8
            key = _weight_key(graph, rec.node)
            out["measured_bytes"] += rec.measured_bytes
            out["qparam_bytes"] += rec.qparam_bytes
            if rec.dtype == "float32" and declared != "float32":
                out["fallback_layers"].append(rec.node)
                expected = rec.count * 4
            else:
                k, n, runs = _weight_dims(graph, rec.node, rec.count)
                held = rec.resident or rec.dtype  # W4A8: int4 weights held as the int8 panel
                expected = rec.count * _BITS.get(held, 32) / 8 if rec.resident else theory
                expected += packing_allowance(held, k, n, group_size, runs)
            out["max_packed_bytes"] += expected
            if key is not None and key in seen:
                out["duplicate_layers"].append(rec.node)
                continue
            seen.add(key)
            out["weight_count"] += rec.count
            out["theoretical_bytes"] += theory
    count = out["weight_count"]
    out["bits_per_weight"] = 8 * out["measured_bytes"] / count if count else math.nan
    out["peak_activation_bytes"] = int(report.peak_activation_bytes)
    return out
