"""``compile(graph, target)``: any pipeline stage -> a CompiledModel (kernels per node).

Deterministic by default: the same graph gives the same kernels, outputs and ``save`` bytes
on every run and machine load. Timing-based choices (the never-slower rule) happen only with
``autotune=True``; the measured times are kept in ``cm.tuning`` (apart from the model: ``save``
stores the resulting choices, never the times), and ``choices=cm.tuning.choices`` replays them.

Example
-------
>>> prepared = qc.quantize_pass(g, qc.QConfig(weight="int8", activation="static"))
>>> cm = qc.compile(prepared, target="cpu", calibration=batches)   # every requested layer int8
>>> fast = qc.compile(prepared, calibration=batches, autotune=True)  # never slower (timed)
>>> qdq = qc.compile(prepared, stop_after="qdq")                   # the QDQ graph's runner
"""

import warnings

import numpy as np

from needle_qc import opset
from needle_qc.capture.tracer import trace
from needle_qc.lower.driver import lower, tune
from needle_qc.opset import traits
from needle_qc.quantize.api import calibrate, convert, quantize_pass, to_integer
from needle_qc.quantize.qconfig import QConfig
from needle_qc.runtime.compiled import CompiledModel, TuningRecord

STAGES = ("float", "observed", "qdq", "int8")
DEFAULT_EXAMPLE_BATCH = 32


def prepare(model, cfg, *example_inputs, batch_dims=0, framework=None):
    """One call from a model to its observed graph (torch.ao's ``prepare_fx`` habit):
    ``trace(model, *example_inputs)`` then ``quantize_pass(graph, cfg)``.

    ``cfg`` is a :class:`~needle_qc.quantize.QConfig` or a scheme name for
    ``QConfig.preset`` (``"int8-static"``, ``"int4-g32"``, ...). Calibrate the result with
    :func:`~needle_qc.quantize.api.calibrate` (or pass ``calibration=`` to :func:`compile`).

    >>> prepared = qc.prepare(model, "int8-static", x)       # doctest: +SKIP
    >>> cm = qc.compile(prepared, calibration=batches)      # doctest: +SKIP
    """
    if isinstance(cfg, str):
        cfg = QConfig.preset(cfg)
    if not isinstance(cfg, QConfig):
        raise TypeError(f"prepare: cfg must be a QConfig or a scheme name, got "
                        f"{type(cfg).__name__}")
    graph = trace(model, *example_inputs, batch_dims=batch_dims, framework=framework)
    return quantize_pass(graph, cfg)


def stage_of(graph):
    """The pipeline stage a graph is at: "float", "observed", "qdq" or "int8"."""
    ops = {n.op for n in graph.nodes}
    if "observer" in ops:
        return "observed"
    if any(traits(op).integer for op in ops):
        return "int8"
    if ops & {"quantize", "dequantize"}:
        return "qdq"
    return "float"


def compile(graph, target="cpu", stop_after=None, force_int8=False, calibration=None, *,
            example_batch=None, autotune=False, choices=None, tune_kernels=None):
    """Lower ``graph`` (any stage) for ``target``; returns a :class:`CompiledModel`.

    Parameters
    ----------
    graph : Graph
        A float graph (compiled as float), an observed graph from ``quantize_pass`` (calibrated,
        or calibrated here with ``calibration``), a QDQ graph or an integer graph.
    target : {"cpu", "cuda", "reference"}
        ``"reference"`` runs every node with the op table's evaluation (the numeric oracle).
    stop_after : {"float", "observed", "qdq", "int8"}, optional
        Stop at that stage and return its runner (lowered as-is, nothing swapped to float).
        The "observed" runner runs ``graph`` itself: calling it records statistics in
        ``graph.observers``, as calling the graph does.
    force_int8 : bool
        With ``autotune``: keep every quantized kernel even where its float version measured
        faster (the times are still recorded).
    calibration : iterable, optional
        Batches for an observed graph that has not been calibrated yet (ignored, and noted in
        ``config``, for a graph with no observers left, e.g. weight-only or dynamic).
    example_batch : int, optional
        Batch size to time kernels on (default: the first calibration batch's, else 32).
    autotune : bool
        Time quantized nodes against their float versions and keep the faster (the
        never-slower rule). Off by default: the result then depends on the machine's load.
        The times go to ``cm.tuning`` (a :class:`TuningRecord`), not into the saved file.
    choices : dict, optional
        ``{node: "primary" | "alternative"}`` (e.g. ``cm.tuning.choices``): replay an earlier
        autotune deterministically, without timing.
    tune_kernels : bool, optional
        The old name of ``autotune`` (kept for existing callers).

    A layer computed in float although the configuration asked to quantize it (kept by
    ``autotune`` or impossible to quantize) raises a :class:`KeptFloatWarning` and is listed
    by ``cm.float_layers()`` and ``cm.memory_report()``.

    Raises
    ------
    ValueError
        Unknown stage/target, a stage the graph cannot reach, an observed graph without
        statistics, or a layer whose int32 accumulator could overflow.
    """
    if stop_after is not None and stop_after not in STAGES:
        raise ValueError(f"compile: stop_after={stop_after!r}; valid: {list(STAGES)}")
    batches = list(calibration) if calibration is not None else None
    stage, staged = _advance(graph, stop_after, batches)
    if tune_kernels is not None:
        autotune = bool(tune_kernels)
    program = lower(staged, target, choices=choices)
    _check_choices(program, choices)
    batch = example_batch or _batch_of(batches) or DEFAULT_EXAMPLE_BATCH
    config = {"force_int8": bool(force_int8), "stop_after": stop_after}
    if batches is not None and stage_of(graph) not in ("observed", "float"):
        # weight-only / dynamic graphs (and converted ones) have nothing left to calibrate
        config["calibration"] = f"ignored: the graph was already at stage {stage_of(graph)!r}"
    qconfig = graph.qconfig
    if qconfig is not None and hasattr(qconfig, "to_dict"):
        config["qconfig"] = qconfig.to_dict()
    tuning = None
    if stop_after is None and autotune and target != "reference":
        tuning = _autotune(program, batch, force_int8, config)
    cm = CompiledModel(program, stage, batch, config, tuning=tuning)
    announce_float_layers(cm)
    return cm


def _check_choices(program, choices):
    """Replayed choices must name layers that have a float version, with a known value."""
    known = {s.node for s in program.steps if s.alternative is not None}
    for node, choice in (choices or {}).items():
        if node not in known or choice not in ("primary", "alternative"):
            raise ValueError(f"compile: choices[{node!r}] = {choice!r}: expected 'primary' or "
                             f"'alternative' for one of the layers {sorted(known)}")


class KeptFloatWarning(UserWarning):
    """A layer the configuration asked to quantize is computed in float."""


def _autotune(program, batch, force_int8, config):
    """Time and choose (the never-slower rule); the TuningRecord, or None if it failed."""
    try:
        tune(program, _example_inputs(program, batch), force_int8)
    except (ValueError, IndexError, OverflowError) as e:  # e.g. ids out of a vocabulary
        config["tuning"] = f"skipped: the random example batch failed ({e})"
        for step in program.steps:
            step.times, step.choice, step.note = {}, "primary", ""
        return None
    return TuningRecord.of(program, batch)


def announce_float_layers(cm, stacklevel=3):
    """A :class:`KeptFloatWarning` listing the layers asked to be quantized that run in float
    (``stacklevel`` 3 points at the caller of the function that calls this one)."""
    kept = cm.float_layers()
    if kept:
        listed = "; ".join(f"%{n}: {why}" for n, why in list(kept.items())[:6])
        more = f" (+{len(kept) - 6} more)" if len(kept) > 6 else ""
        warnings.warn(f"compile: {len(kept)} layer(s) the configuration asked to quantize run "
                      f"in float: {listed}{more}. Pass force_int8=True or autotune=False to "
                      "keep the quantized kernels, or change the QConfig.",
                      KeptFloatWarning, stacklevel=stacklevel)


def _advance(graph, stop_after, batches):
    """(stage name, graph at the requested stage): the column float | observed -> calibrated ->
    qdq -> int8, each step run only while the graph is above the stage asked for."""
    have = stage_of(graph)
    want = stop_after or ("float" if have == "float" else "int8")
    _check_reachable(have, want, batches)
    if have == "observed" and want == "float":
        return "float", _strip_observers(graph)
    if want == have:
        return want, graph
    if have == "observed":
        graph = convert(_calibrated(graph.copy(), batches))  # observed -> calibrated -> qdq
        if want == "qdq":
            return want, graph
    return want, to_integer(graph)  # qdq -> int8


def _check_reachable(have, want, batches):
    if STAGES.index(want) < STAGES.index(have) and not (want == "float" and have == "observed"):
        raise ValueError(f"compile: the graph is already at stage {have!r}; it cannot be "
                         f"taken back to {want!r}")
    if have == "float" and want != "float":
        raise ValueError(f"compile: a float graph cannot reach stage {want!r}; run "
                         "quantize_pass(graph, cfg) first")
    if batches is not None and have == "float":
        raise ValueError("compile: calibration= only applies to an observed graph; this graph "
                         "is float (run quantize_pass(graph, cfg) first)")


def _calibrated(graph, batches):
    if batches is not None:
        calibrate(graph, batches, progress=False)
    empty = [n for n, obs in graph.observers.items() if obs.n_updates == 0]
    if empty:
        raise ValueError(f"compile: the observed graph has no calibration statistics "
                         f"(observer %{empty[0]} saw 0 batches); pass calibration=batches or "
                         "run calibrate() first")
    return graph


def _strip_observers(graph):
    g = graph.copy()
    for node in g.find("observer"):
        node.replace_all_uses_with(node.inputs[0])
        g.erase(node)
    g.observers = {}
    return g


def _batch_of(batches):
    if not batches:
        return None
    first = batches[0][0] if isinstance(batches[0], (tuple, list)) else batches[0]
    return int(first.shape[0]) if getattr(first, "shape", None) else None


def _example_inputs(program, batch):
    """Seeded random inputs of the placeholders' shapes at ``batch`` (for timing only)."""
    rng = np.random.default_rng(0)
    out = []
    for name, dtype, shape in program.inputs:
        dims = tuple(opset.resolve_dim(d, batch) for d in shape)
        vocab = _vocabulary(program.graph.node(name))
        if vocab:  # token ids (Needle keeps them in float tensors): valid rows of the table
            out.append(rng.integers(0, vocab, dims).astype(dtype))
        elif dtype.startswith("float"):
            out.append(rng.standard_normal(dims).astype(dtype))
        else:
            info = np.iinfo(dtype)
            out.append(rng.integers(max(info.min, 0), min(info.max, 100) + 1, dims).astype(dtype))
    return out


def _vocabulary(placeholder):
    """Rows of the embedding table a placeholder indexes directly, else None."""
    for user in placeholder.users:
        if user.op == "embedding" and user.inputs[0] is placeholder:
            return int(user.inputs[1].meta["shape"][0])
    return None
