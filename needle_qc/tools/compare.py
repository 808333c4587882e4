"""Per-node error attribution: how far each node of a quantized graph is from float32, and why.

Two numbers per node, both measured against the float graph's value at the same point:

* **local** error: the quantized node run *alone* on the float graph's inputs (quantized with
  the node's input qparams where it takes integers). It is the error this node adds by itself;
  a low local SQNR names a culprit.
* **propagated** error: the node's value when the whole quantized graph runs (dequantized where
  it is an integer), i.e. everything upstream included.

A node of the quantized graph is matched to the float graph by name after the float graph goes
through ``FLOAT_PIPELINE`` (the quantizer keeps layer names), with the fused-ReLU split of
weight-only/dynamic layers (``%fc1`` + ``%fc1_relu``) handled; quantize/dequantize/requantize
nodes stand for the float value they encode.

Example
-------
>>> report = compare(float_graph, int8_graph, batches)   # doctest: +SKIP
>>> print(report)               # aligned table in graph order; report.worst(3) = culprits
>>> qc.draw(int8_graph, "err.svg", node_colors=report.node_colors())
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from needle_qc.opset import traits

__all__ = ["compare", "deviation", "CompareReport", "CompareRow", "ErrorStats", "sqnr_color"]

_SKIP_ROWS = ("placeholder", "param", "constant", "output", "observer", "dequantize",
              "tuple_get_item")
_INT_DTYPES = {"uint8": np.uint8, "int8": np.int8}


# ----------------------------------------------------------------------------- metrics

class ErrorStats:
    """Streaming error statistics of ``out`` against a reference ``ref`` over many batches."""

    def __init__(self):
        self.count = 0
        self.ref2 = self.out2 = self.err2 = self.dot = 0.0
        self.max_abs = 0.0
        self.top1_hits = self.top1_rows = 0

    def update(self, ref, out):
        """Add one batch; ``ref`` and ``out`` are arrays of one shape."""
        ref = np.asarray(ref, np.float64)
        out = np.asarray(out, np.float64)
        if ref.shape != out.shape:
            raise ValueError(f"deviation: reference shape {ref.shape} != output shape {out.shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"deviation: output holds {int(np.sum(~np.isfinite(out)))} "
                             "NaN/Inf values")
        err = out - ref
        self.count += ref.size
        self.ref2 += float(np.sum(ref * ref))
        self.out2 += float(np.sum(out * out))
        self.err2 += float(np.sum(err * err))
        self.dot += float(np.sum(ref * out))
        if err.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(err))))
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            rows_ref = ref.reshape(-1, ref.shape[-1]).argmax(axis=1)
            rows_out = out.reshape(-1, out.shape[-1]).argmax(axis=1)
            self.top1_hits += int(np.sum(rows_ref == rows_out))
            self.top1_rows += len(rows_ref)

    def result(self):
        """``dict(max_abs, rel_l2, sqnr_db, cosine, top1_agreement)``.

        ``sqnr_db`` is ``10 log10(sum ref^2 / sum err^2)`` (inf when exact, -inf... never: a
        zero reference with a nonzero error gives -inf); ``cosine`` is 1.0 when both are zero;
        ``top1_agreement`` (argmax over the last axis) is None for 1-D values.
        """
        if self.err2 == 0.0:
            sqnr = math.inf
        elif self.ref2 == 0.0:
            sqnr = -math.inf
        else:
            sqnr = 10.0 * math.log10(self.ref2 / self.err2)
        norms = math.sqrt(self.ref2 * self.out2)
        cosine = self.dot / norms if norms > 0 else (1.0 if self.ref2 == self.out2 else 0.0)
        rel = math.sqrt(self.err2 / self.ref2) if self.ref2 > 0 else (
            0.0 if self.err2 == 0 else math.inf)
        top1 = self.top1_hits / self.top1_rows if self.top1_rows else None
        return {"max_abs": self.max_abs, "rel_l2": rel, "sqnr_db": sqnr, "cosine": cosine,
                "top1_agreement": top1}


def deviation(ref, out):
    """Output-level deviation of ``out`` from the float32 reference ``ref``.

    Parameters
    ----------
    ref, out : array-like or needle Tensor, or lists of them (batches, accumulated)

    Returns
    -------
    dict
        ``max_abs``, ``rel_l2`` (``||out - ref|| / ||ref||``), ``sqnr_db``, ``cosine`` and
        ``top1_agreement`` (fraction of rows whose argmax over the last axis agrees; None for
        1-D values).
    """
    refs, outs = (ref, out) if isinstance(ref, list) else ([ref], [out])
    if not isinstance(outs, list) or len(refs) != len(outs):
        raise ValueError("deviation: ref and out must both be arrays or lists of equal length")
    stats = ErrorStats()
    for r, o in zip(refs, outs):
        stats.update(_numpy(r), _numpy(o))
    return stats.result()


def _numpy(value):
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


# ----------------------------------------------------------------------------- report

def sqnr_color(sqnr_db):
    """Fill color for a node by SQNR: green >= 40 dB, yellow >= 30, orange >= 20, else red."""
    if sqnr_db is None or math.isnan(sqnr_db):
        return "lightgray"
    for bound, color in ((40.0, "palegreen"), (30.0, "khaki"), (20.0, "orange")):
        if sqnr_db >= bound:
            return color
    return "tomato"


@dataclass
class CompareRow:
    """One node of the quantized graph: its float counterpart and both errors."""

    name: str
    op: str
    shape: tuple
    reference: str
    local: dict | None
    propagated: dict

    @property
    def local_sqnr(self):
        return self.local["sqnr_db"] if self.local else math.nan


@dataclass
class CompareReport:
    """Per-node local and propagated error of a quantized graph (see the module docstring).

    Attributes
    ----------
    rows : list[CompareRow]
        In the quantized graph's order.
    output : dict
        :func:`deviation` of the quantized graph's output from the *original* float graph's.
    batches : int
    unmatched : list[str]
        Quantized-graph nodes that have no float counterpart (not in ``rows``).
    """

    rows: list
    output: dict
    batches: int
    unmatched: list = field(default_factory=list)

    def worst(self, k=5, by="local"):
        """The ``k`` rows with the lowest SQNR (``by="local"`` or ``"propagated"``)."""
        if by not in ("local", "propagated"):
            raise ValueError(f"worst: by must be 'local' or 'propagated', got {by!r}")

        def key(row):
            value = row.local_sqnr if by == "local" else row.propagated["sqnr_db"]
            return math.inf if math.isnan(value) else value
        return sorted(self.rows, key=key)[:k]

    def node_colors(self, by="local"):
        """``{node name: fill color}`` by SQNR for ``needle_qc.draw(graph, node_colors=...)``."""
        if by not in ("local", "propagated"):
            raise ValueError(f"node_colors: by must be 'local' or 'propagated', got {by!r}")
        return {r.name: sqnr_color(r.local_sqnr if by == "local" else r.propagated["sqnr_db"])
                for r in self.rows}

    def __str__(self):
        width = max([len(r.name) for r in self.rows] + [4]) + 1
        head = (f"{'node':<{width}}{'op':<20}{'local dB':>9}{'local cos':>10}"
                f"{'prop dB':>9}{'prop cos':>10}{'max abs':>11}{'rel L2':>10}")
        lines = [f"compare: {len(self.rows)} nodes over {self.batches} batches", head,
                 "-" * len(head)]
        for r in self.rows:
            loc = r.local or {}
            p = r.propagated
            lines.append(f"{r.name:<{width}}{r.op:<20}{_db(loc.get('sqnr_db')):>9}"
                         f"{_num(loc.get('cosine'), 6):>10}{_db(p['sqnr_db']):>9}"
                         f"{_num(p['cosine'], 6):>10}{_num(p['max_abs'], 4, 'g'):>11}"
                         f"{_num(p['rel_l2'], 4, 'g'):>10}")
        o = self.output
        top1 = "n/a" if o["top1_agreement"] is None else f"{100 * o['top1_agreement']:.2f}%"
        lines.append(f"output vs float32: SQNR {_db(o['sqnr_db'])} dB, cosine "
                     f"{o['cosine']:.6f}, max abs {o['max_abs']:.4g}, rel L2 {o['rel_l2']:.4g}, "
                     f"top-1 agreement {top1}")
        return "\n".join(lines)


def _db(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if value == math.inf else f"{value:.1f}"


def _num(value, digits, kind="f"):
    if value is None:
        return "-"
    return f"{value:.{digits}{kind}}"


# ----------------------------------------------------------------------------- running graphs

def _recording_interpreter(graph, device):
    from needle_qc.ir.interpreter import Interpreter

    class Recorder(Interpreter):
        """Keeps every node's value of the last run in ``values``."""

        def __init__(self, g, dev):
            super().__init__(g, dev)
            self.values = {}

        def placeholder(self, node, value):
            out = super().placeholder(node, value)
            self.values[node.name] = out
            return out

        def call_op(self, node, inputs):
            out = super().call_op(node, inputs)
            self.values[node.name] = out
            return out

    return Recorder(graph, device)


def _as_float(node, value):
    """The float32 numpy value a node's Tensor stands for (integers dequantized), or None."""
    from needle_qc.frontend import framework_of_value

    if framework_of_value(value) is None:
        return None  # a tuple value, not a Tensor of the interpreter's framework
    array = value.numpy()
    dtype = node.meta.get("dtype")
    if dtype in _INT_DTYPES:
        qp = node.meta.get("qparams")
        if not qp:
            return None
        return ((array.astype(np.int32) - int(qp["z"])).astype(np.float32)
                * np.float32(qp["s"]))
    if dtype not in ("float32", None) or array.dtype.kind != "f":
        return None
    return array.astype(np.float32)


def _is_layer(node):
    return traits(node.op).kind in ("layer", "qlayer")


def _has_relu(node):
    return node.attrs.get("activation") == "relu"


class _Matcher:
    """Maps quantized-graph nodes to the float value they should equal."""

    def __init__(self, ref_graph, q_graph):
        self.ref = {n.name: n for n in ref_graph.nodes}
        self.q_graph = q_graph
        self.memo = {}

    def counterpart(self, node):
        """Name of the float-graph node whose value ``node`` encodes, or None."""
        if node.name not in self.memo:
            self.memo[node.name] = self._find(node)
        return self.memo[node.name]

    def _find(self, node):
        if node.op in ("param", "constant", "output"):
            return None
        if traits(node.op).kind == "quant":
            return self.counterpart(node.inputs[0])
        ref = self.ref.get(node.name)
        if ref is not None and ref.op not in ("param", "constant"):
            if ref.meta.get("shape") != node.meta.get("shape"):
                return None
            if _is_layer(node) and _has_relu(ref) != _has_relu(node):
                return None  # a weight-only/dynamic layer whose relu became its own node
            return ref.name
        if node.op == "relu" and node.inputs and _is_layer(node.inputs[0]):
            layer = self.ref.get(node.inputs[0].name)
            if layer is not None and _has_relu(layer):
                return layer.name
        return None


def _quantized_like(node, ref_value):
    """``ref_value`` as ``node``'s input representation: quantized with its qparams if int."""
    from needle_qc.ops import quantize_linear

    dtype = node.meta.get("dtype")
    if dtype in _INT_DTYPES:
        qp = node.meta.get("qparams")
        if not qp:
            return None
        zp = np.asarray(qp["z"], _INT_DTYPES[dtype])
        return quantize_linear(ref_value, np.float32(qp["s"]), zp), dtype
    return ref_value.astype(np.float32), "float32"


def _is_constant(node, memo):
    """True when ``node`` depends on params/constants only (a dequantized weight, say)."""
    if node.name not in memo:
        if node.op == "placeholder":
            memo[node.name] = False
        else:
            memo[node.name] = all(_is_constant(i, memo) for i in node.inputs)
    return memo[node.name]


_LOCAL_DEPTH = 3  # unmatched nodes evaluated on the way (a layer before its split-off relu)


def _local_output(interp, node, matcher, ref_values, memo, depth=0):
    """Run ``node`` alone on the float values of its inputs; None if some input has none.

    An input with no float counterpart is taken from the quantized run when it is constant
    (dequantized weights), or computed the same way from *its* inputs (up to a few levels:
    a weight-only layer before its own ``relu``).
    """
    inputs = []
    for inp in node.inputs:
        src = matcher.counterpart(inp)
        if src is not None and src in ref_values:
            converted = _quantized_like(inp, ref_values[src])
            if converted is None:
                return None
            array, dtype = converted
            inputs.append(interp.framework.tensor(array, interp.device, dtype))
        elif _is_constant(inp, memo) and inp.name in interp.values:
            inputs.append(interp.values[inp.name])
        elif depth < _LOCAL_DEPTH and inp.op not in ("placeholder", "param", "constant"):
            value = _local_output(interp, inp, matcher, ref_values, memo, depth + 1)
            if value is None:
                return None
            inputs.append(value)
        else:
            return None
    interp.node = node
    try:
        return interp.call_op(node, inputs)
    finally:
        interp.node = None


# ----------------------------------------------------------------------------- entry point

def _graph_of(quantized):
    from needle_qc.ir.graph import Graph

    if isinstance(quantized, Graph):
        return quantized
    graph = getattr(quantized, "graph", None)
    if isinstance(graph, Graph):
        return graph
    raise TypeError("compare: `quantized` must be a Graph or have a `.graph` Graph (a compiled "
                    f"or seed-API model), got {type(quantized).__name__}")


def _runner(quantized):
    """The callable whose output is the quantized model's answer (compiled code if given)."""
    from needle_qc.ir.graph import Graph

    return None if isinstance(quantized, Graph) else quantized


def _inputs_of(batch, count):
    if isinstance(batch, (tuple, list)):
        if len(batch) < count:
            raise ValueError(f"compare: a batch holds {len(batch)} items, the graph takes {count}")
        return tuple(batch[:count])
    return (batch,)


def _first_output(value):
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value


def compare(float_graph, quantized, batches, device=None):
    """Per-node local and propagated error of ``quantized`` against ``float_graph``.

    Parameters
    ----------
    float_graph : Graph
        The traced float32 graph (before or after the float passes).
    quantized : Graph, CompiledModel or seed-API model
        Any quantized stage (observed, QDQ, integer, weight-only, dynamic); objects with a
        ``.graph`` are analysed on that graph, and their own output is what ``output`` measures.
    batches : iterable
        Arrays/Tensors, or tuples whose first items are the graph inputs.
    device : needle device, optional
        Where both graphs run (default: the interpreter's default).

    Returns
    -------
    CompareReport
    """
    from needle_qc.ir.graph import Graph
    from needle_qc.passes import FLOAT_PIPELINE, run_passes
    if not isinstance(float_graph, Graph):
        raise TypeError(f"compare: float_graph must be a Graph, got {type(float_graph).__name__}")
    q_graph = _graph_of(quantized).copy()  # a copy: observers must not record these runs
    ref_graph = float_graph.copy()
    run_passes(ref_graph, FLOAT_PIPELINE)
    runner = _runner(quantized)
    matcher = _Matcher(ref_graph, q_graph)
    rows = [n for n in q_graph.nodes if n.op not in _SKIP_ROWS and matcher.counterpart(n)]
    local = {n.name: ErrorStats() for n in rows}
    prop = {n.name: ErrorStats() for n in rows}
    output = ErrorStats()
    count = 0
    for batch in batches:
        inputs = _inputs_of(batch, len(float_graph.placeholders))
        _run_batch(inputs, float_graph, ref_graph, q_graph, runner, rows, matcher, device,
                   (local, prop, output))
        count += 1
    if count == 0:
        raise ValueError("compare: `batches` was empty")
    table = [CompareRow(n.name, n.op, n.meta.get("shape"), matcher.counterpart(n),
                        local[n.name].result() if local[n.name].count else None,
                        prop[n.name].result()) for n in rows]
    unmatched = [n.name for n in q_graph.nodes
                 if n.op not in _SKIP_ROWS and n.name not in local]
    return CompareReport(table, output.result(), count, unmatched)


def _run_batch(inputs, float_graph, ref_graph, q_graph, runner, rows, matcher, device, stats):
    local, prop, output = stats
    ref_run = _recording_interpreter(ref_graph, device)
    ref_run.run(*inputs)
    ref_values = {name: v for name, v in
                  ((n.name, _as_float(n, ref_run.values.get(n.name))) for n in ref_graph.nodes)
                  if v is not None}
    q_run = _recording_interpreter(q_graph, device)
    q_out = q_run.run(*inputs)
    if runner is not None:
        q_out = runner(*inputs)
    original = float_graph(*inputs, device=device) if device else float_graph(*inputs)
    output.update(_numpy(_first_output(original)), _numpy(_first_output(q_out)))
    constant_memo = {}
    for node in rows:
        ref = ref_values.get(matcher.counterpart(node))
        mine = _as_float(node, q_run.values.get(node.name))
        if ref is None or mine is None:
            continue
        prop[node.name].update(ref, mine)
        alone = _local_output(q_run, node, matcher, ref_values, constant_memo)
        alone = _as_float(node, alone) if alone is not None else None
        if alone is not None:
            local[node.name].update(ref, alone)
