"""Quantization entry points: ``quantize_pass``, ``calibrate``, ``convert``, ``to_integer``.

Example
-------
>>> prepared = quantize_pass(graph, QConfig(weight="int8", activation="static"))
>>> report = calibrate(prepared, batches)          # runs the observed graph, tqdm bar
>>> qdq = convert(prepared)                         # float ops between quantize/dequantize
>>> int_graph = to_integer(qdq)                     # qlinear / qconv2d / requantize ...

Each function returns a new graph and leaves its argument alone, except ``calibrate``, which
fills the observers of ``prepared``.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from needle_qc import passes
from needle_qc.quantize.annotate import annotate_qconfig

QUANT_PASSES = ["quantize-lstm", "equalize", "insert-observers", "insert-smoothquant-stats",
                "insert-layer-stats", "weight-only", "dynamic"]
"""What ``quantize_pass`` runs after the float pipeline (``equalize``, the SmoothQuant and layer
statistics passes change nothing unless the config asks for them)."""


def quantize_pass(graph, cfg, *, float_pipeline=True):
    """The observed graph for ``cfg``: a copy of ``graph`` ready for :func:`calibrate`.

    Runs ``FLOAT_PIPELINE`` first (batch norm folded, relus fused) unless
    ``float_pipeline=False``, resolves each layer's config (overrides by module path/type),
    inserts observers for static layers and rewrites weight-only and dynamic layers at once
    (they need no data). Calling the result runs the float model and records statistics.
    """
    g = graph.copy()
    if float_pipeline:
        passes.run_passes(g, passes.FLOAT_PIPELINE)
    g.qconfig = cfg  # quantize-lstm resolves each cell's config from it
    annotate_qconfig(g, cfg)
    passes.run_passes(g, QUANT_PASSES)
    return g


@dataclass
class ObserverSummary:
    """What calibration saw at one observer."""

    range: tuple
    drift: float
    n_updates: int
    scale: float
    zero_point: int
    degenerate: bool


@dataclass
class CalibrationReport:
    """Per observer (by node name): its range, drift over the last 10% of batches, qparams."""

    batches: int
    observers: dict = field(default_factory=dict)

    def __str__(self):
        lines = [f"calibration: {self.batches} batches, {len(self.observers)} observers",
                 f"{'node':<28} {'min':>11} {'max':>11} {'drift':>8} {'scale':>11} {'zp':>4}"]
        for name, s in self.observers.items():
            drift = "n/a" if math.isnan(s.drift) else f"{s.drift:.4f}"
            flag = "  (degenerate: s=1, z=0)" if s.degenerate else ""
            lines.append(f"{name:<28} {s.range[0]:>11.4g} {s.range[1]:>11.4g} {drift:>8} "
                         f"{s.scale:>11.4g} {s.zero_point:>4}{flag}")
        return "\n".join(lines)


def _batch_inputs(batch, count):
    """The graph inputs in one batch: a single array/Tensor, or the first ``count`` of a tuple
    (``(x, y)`` from a data loader gives ``x``)."""
    if isinstance(batch, (tuple, list)):
        if len(batch) < count:
            raise ValueError(f"calibrate: a batch holds {len(batch)} items, the graph takes "
                             f"{count} inputs")
        return tuple(batch[:count])
    return (batch,)


def calibrate(prepared, batches, progress=True):
    """Run ``prepared`` on every batch so its observers record statistics.

    Parameters
    ----------
    prepared : Graph
        From :func:`quantize_pass`.
    batches : iterable
        Arrays/Tensors, or tuples whose first items are the graph inputs.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    CalibrationReport

    Raises
    ------
    ValueError
        A batch holds NaN/Inf or makes a layer produce them (the message names the batch,
        the input or layer, and the observer), or the graph has static observers but
        ``batches`` was empty. Transactional: on an error the observers are left as they were.

    Warns
    -----
    CalibrationWarning
        A constant range (all zero, say) or one set by a few outliers, naming the observer
        and the layer and what to do (:mod:`needle_qc.quantize.calibration_checks`).
    """
    from needle_qc.quantize import calibration_checks as checks
    from needle_qc.quantize.passes.smoothquant import calibrate_smoothquant, smoothing_pending

    if smoothing_pending(prepared):  # SmoothQuant: measure, smooth, then calibrate afresh
        count = len(prepared.placeholders)
        batches = calibrate_smoothquant(
            prepared, batches, lambda b: prepared(*_batch_inputs(b, count)), progress)
    from needle_qc.quantize.sequential import calibrate_sequential, sequential_pending

    sequential = sequential_pending(prepared)
    if sequential:  # sequential GPTQ passes over the batches again, layer by layer
        batches = list(batches)
    names = [n.name for n in prepared.find("observer")]
    count = 0
    if names:
        count = checks.run_batches(
            prepared, batches, lambda b: prepared(*_batch_inputs(b, len(prepared.placeholders))),
            progress)
        if count == 0:
            raise ValueError(f"calibrate: static quantization needs calibration data, but "
                             f"`batches` was empty ({len(names)} observers: "
                             f"{', '.join('%' + n for n in names[:5])}...)")
    if sequential and count:
        calibrate_sequential(prepared, batches,
                             lambda b: prepared(*_batch_inputs(b, len(prepared.placeholders))))
    report = CalibrationReport(count, {n: _summary(prepared, n) for n in names})
    checks.warn_bad_ranges(prepared, report)
    return report


def _summary(graph, name):
    node, stats = graph.node(name), graph.observers[name]
    lo, hi = stats.range()
    lo, hi = float(np.min(lo)), float(np.max(hi))
    scale, zp = stats.qparams(node.attrs["dtype"], node.attrs["symmetric"])
    return ObserverSummary((lo, hi), float(stats.range_drift(0.1)), stats.n_updates,
                           float(scale), int(zp), bool(min(lo, 0.0) == max(hi, 0.0)))


def convert(prepared):
    """The reference QDQ graph of a calibrated observed graph (a new graph)."""
    g = prepared.copy()
    passes.run_passes(g, ["convert"])
    return g


def to_integer(graph):
    """The integer graph (``fuse-qdq``) of a QDQ graph, or of a calibrated observed graph."""
    g = graph.copy()
    passes.run_passes(g, (["convert"] if g.find("observer") else []) + ["fuse-qdq"])
    return g


def prepare_stages(graph, cfg, batches=None, progress=False):
    """Every stage at once: ``{"float", "observed", "qdq", "int8"}`` (+ ``"report"``).

    ``batches`` is required when ``cfg`` quantizes any activation statically.
    """
    observed = quantize_pass(graph, cfg)
    report = calibrate(observed, batches if batches is not None else [], progress=progress)
    qdq = convert(observed)
    return {"float": graph.copy(), "observed": observed, "qdq": qdq,
            "int8": to_integer(qdq), "report": report}
