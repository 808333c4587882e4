"""The memory / deviation / accuracy / speed experiment behind ``needle-qc demo`` and ``report``.

Example
-------
>>> from needle_qc import report
>>> rep = report.run(models=["mlp"], schemes=["fp32", "int8-static"], quick=True)
>>> for row in rep:                       # one ReportRow per (model, scheme)
...     print(row.scheme, row.measured_bytes, row.sqnr_db, row.score)
>>> rep.write("out/report")               # REPORT.md + PNG plots

Every number comes from one run of the compiled model (``needle_qc.pipeline``): theoretical
weight bytes from the data types the quantizer chose, measured bytes from the buffers the
runtime allocated (``CompiledModel.memory_report()``), deviation of the logits from the float32
graph on held-out data, and latency as the best of a few timed calls on one batch.
See ``docs/report.md`` for what each column means.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from needle_qc import opset
from needle_qc.runtime.memory import _node_or_none, memory_of, packing_allowance

__all__ = ["Scheme", "SCHEMES", "ReportRow", "LayerRow", "Report", "run", "load_model",
           "packing_allowance", "MODELS"]

MODELS = ("mlp", "small_cnn", "resnet9", "lstm_lm", "transformer_lm")
"""The models ``needle-qc report`` measures by default."""


@dataclass(frozen=True)
class Scheme:
    """A named quantization recipe: what ``needle-qc`` calls ``int8-static`` and friends."""

    name: str
    data_type: str  # human-readable: weight dtype / activation dtype and mode
    qconfig_args: dict | None  # QConfig(**qconfig_args); None = the float32 baseline

    def qconfig(self):
        """The :class:`~needle_qc.quantize.QConfig` of this scheme (None for fp32)."""
        from needle_qc.quantize import QConfig

        return None if self.qconfig_args is None else QConfig(**self.qconfig_args)


_GPTQ = {"rounding": "gptq", "gptq_act_order": True}

SCHEMES = {s.name: s for s in (
    Scheme("fp32", "f32", None),
    Scheme("fp16", "w f16", {"weight": "fp16"}),
    Scheme("bf16", "w bf16", {"weight": "bf16"}),
    Scheme("int8-w", "w int8/ch", {"weight": "int8"}),
    Scheme("uint8-w", "w u8/ch affine", {"weight": "uint8", "weight_symmetric": False}),
    Scheme("int4-g32", "w int4/g32", {"weight": "int4", "group_size": 32}),
    Scheme("int8-dyn", "w int8/ch, a u8 dyn", {"weight": "int8", "activation": "dynamic"}),
    Scheme("int8-static", "w int8/ch, a u8", {"weight": "int8", "activation": "static",
                                                 "weight_granularity": "per_channel"}),
    Scheme("uint8-affine", "w u8/tensor, a u8", {
        "weight": "uint8", "activation": "static", "weight_symmetric": False,
        "weight_granularity": "per_tensor"}),
    # beyond round-to-nearest (issue 16): same kernels, weights rounded/corrected differently
    Scheme("int4-ch", "w int4/ch", {"weight": "int4", "weight_granularity": "per_channel"}),
    # GPTQ rows with act-order (group membership fixed before the reordering keeps the kernels'
    # layout) and the per-row clipping search (QConfig default): transformer_lm int4-ch / int3-g32
    # perplexity 343.2 / 404.2 (RTN) -> 335.7 / 347.4 in the session 4 report
    Scheme("int4-ch-gptq", "w int4/ch GPTQ", {"weight": "int4", "weight_granularity":
                                               "per_channel", **_GPTQ}),
    Scheme("int4-g32-gptq", "w int4/g32 GPTQ", {"weight": "int4", "group_size": 32, **_GPTQ}),
    Scheme("int3-g32", "w int3/g32 (int4 storage)", {"weight": "int4", "group_size": 32,
                                                        "weight_bits": 3}),
    Scheme("int3-g32-gptq", "w int3/g32 GPTQ (int4 storage)", {
        "weight": "int4", "group_size": 32, "weight_bits": 3, **_GPTQ}),
    Scheme("int4-ch-bc-cle", "w int4/ch, BC+CLE", {
        "weight": "int4", "weight_granularity": "per_channel", "bias_correction": True,
        "equalization": True}),
    Scheme("uint8-affine-bc-cle", "w u8/tensor, a u8, BC+CLE", {
        "weight": "uint8", "activation": "static", "weight_symmetric": False,
        "weight_granularity": "per_tensor", "bias_correction": True, "equalization": True}),
    Scheme("int8-static-sq", "w int8/ch, a u8, SmoothQuant", {
        "weight": "int8", "activation": "static", "weight_granularity": "per_channel",
        "smoothquant": "auto"}),
    # W4A8: int4 values on the int8 kernels (file: 2 per byte; resident: the int8 panel)
    Scheme("w4a8", "w int4/ch, a u8", {"weight": "int4", "activation": "static",
                                        "weight_granularity": "per_channel"}),
)}
"""Every scheme of the report, fp32 baseline first."""



@dataclass
class ReportRow:
    """One (model, scheme) measurement; bytes are bytes, latency in milliseconds.

    ``theoretical_bytes`` counts each recorded layer weight at its data type's bits;
    ``measured_bytes`` is the weight buffers the runtime holds (packed layout included);
    ``max_packed_bytes`` is theoretical plus :func:`packing_allowance` (the most the documented
    layouts add) where a kernel holds the weight in its own format. ``score`` is held-out
    accuracy (classifiers) or perplexity (language models, ``metric`` says which).
    """

    model: str
    scheme: str
    data_type: str
    weight_count: int = 0
    theoretical_bytes: float = 0.0
    measured_bytes: int = 0
    max_packed_bytes: float = 0.0
    qparam_bytes: int = 0
    bits_per_weight: float = math.nan
    peak_activation_bytes: int = 0
    max_abs: float = math.nan
    rel_l2: float = math.nan
    sqnr_db: float = math.nan
    cosine: float = math.nan
    top1_agreement: float | None = None
    metric: str = "accuracy"
    score: float | None = None
    latency_ms: float = math.nan
    speedup: float = math.nan
    batch: int = 0
    fallback_layers: list = field(default_factory=list)
    duplicate_layers: list = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self):
        return self.error is None


@dataclass
class LayerRow:
    """Per-layer error of one scheme: local (the layer alone) and propagated SQNR in dB."""

    model: str
    scheme: str
    layer: str
    op: str
    local_sqnr_db: float
    propagated_sqnr_db: float


@dataclass
class Report:
    """What :func:`run` returns: ``rows`` (iterate the report to get them) and ``layers``."""

    rows: list
    layers: list
    settings: dict
    plans: dict = field(default_factory=dict)  # model -> report_plan.plan_model's dict

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def row(self, model, scheme):
        """The row of ``(model, scheme)``; KeyError naming what exists."""
        for r in self.rows:
            if r.model == model and r.scheme == scheme:
                return r
        have = sorted({(r.model, r.scheme) for r in self.rows})
        raise KeyError(f"report: no row for ({model!r}, {scheme!r}); rows: {have}")

    def table(self, model=None):
        """The fixed-width table printed by the CLI (all models or one)."""
        return text_table([r for r in self.rows if model in (None, r.model)])

    def to_markdown(self, plots=None):
        return markdown(self, plots or {})

    def to_dict(self):
        """JSON-able form (inf/nan become strings)."""
        return {"settings": self.settings, "rows": [_jsonable(asdict(r)) for r in self.rows],
                "layers": [_jsonable(asdict(r)) for r in self.layers],
                "plans": _jsonable(self.plans)}

    def write(self, out_dir):
        """Write ``REPORT.md``, ``report.json`` and the PNG plots into ``out_dir``.

        Returns
        -------
        dict
            ``{"markdown": path, "json": path, "plots": {kind: [paths]}}``.
        """
        import json

        from needle_qc.tools import plots

        os.makedirs(out_dir, exist_ok=True)
        drawn = plots.plot_all(self, out_dir)
        md = os.path.join(out_dir, "REPORT.md")
        with open(md, "w") as f:
            f.write(self.to_markdown(drawn))
        js = os.path.join(out_dir, "report.json")
        with open(js, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
        return {"markdown": md, "json": js, "plots": drawn}


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Settings:
    """How much data each measurement uses (``quick`` shrinks everything)."""

    eval_batches: int | None  # held-out batches of 256 (LM: 16 sequences); None = all
    calibration_batches: int
    layer_batches: int  # batches for the per-layer SQNR comparison
    latency_reps: int
    latency_batch: int  # classifiers; language models use 16 sequences
    train_epochs: int  # only when a checkpoint must be trained here

    @classmethod
    def of(cls, quick):
        if quick:
            return cls(1, 2, 1, 3, 64, 1)
        return cls(None, 8, 2, 10, 64, 2)


def machine():
    """A one-line description of this machine (CPU model, cores, Python, numpy)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


# ----------------------------------------------------------------------------- models

def load_model(name, device=None, cache_dir=None, seed=0, epochs=1, progress=True):
    """Zoo model ``name`` with trained weights: the committed checkpoint, else one trained here
    (seeded, ``epochs`` epochs, tqdm bar) and cached as ``cache_dir/<name>.npz``.

    User models (``module:factory``) have no checkpoint and come back as built.
    Returns ``(model, how)`` where ``how`` says where the weights came from.
    """
    from needle_qc.tools import zoo

    entry = zoo.get(name)
    if entry.checkpoint is None or entry.dataset is None:
        return entry.build(device), "as built (no checkpoint)"
    try:
        return zoo.load_pretrained(name, device), f"checkpoint {entry.checkpoint}"
    except FileNotFoundError:
        pass
    cache_dir = cache_dir or os.path.join("out", "checkpoints")
    path = os.path.join(cache_dir, entry.checkpoint)
    if os.path.isfile(path):
        return zoo.load_pretrained(name, device, path), f"cached {path}"
    model = _train(entry, device, seed, epochs, progress)
    os.makedirs(cache_dir, exist_ok=True)
    zoo.save_checkpoint(model, name, path, seed=seed, epochs=epochs, trained_by="needle-qc")
    return model.eval(), f"trained here ({epochs} epoch(s)), cached {path}"


def _train(entry, device, seed, epochs, progress):
    """Adam, seeded; tqdm bar over the batches of every epoch."""
    from tqdm import tqdm

    import needle as ndl
    from needle import nn, optim
    from needle_qc.tools import zoo

    np.random.seed(seed)  # needle.init draws from numpy's global RNG
    rng = np.random.default_rng(seed)
    model = entry.factory(device=device) if device is not None else entry.factory()
    device = model.parameters()[0].device  # the inputs must live where the weights do
    opt = optim.Adam(model.parameters(), lr=2e-3 if entry.task != "language_model" else 3e-3)
    loss_fn = nn.SoftmaxLoss()
    size = 16 if entry.task == "language_model" else 64
    data = zoo.batches(entry.name, "train", size)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(data))
        bar = tqdm(order, desc=f"train {entry.name} {epoch + 1}/{epochs}", unit="batch",
                   disable=not progress)
        for i in bar:
            x, y = data[i]
            opt.reset_grad()
            loss = loss_fn(model(ndl.Tensor(x, device=device)), ndl.Tensor(y, device=device))
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{float(loss.numpy()):.3f}", refresh=False)
    return model.eval()


def trace_model(name, model, batch=8):
    """The float graph of zoo/user model ``name`` traced at ``batch`` (symbolic batch dim)."""
    from needle_qc.capture.tracer import trace
    from needle_qc.tools import zoo

    entry = zoo.get(name)
    batch_dim = entry.input.batch_dim if entry.input is not None else 0
    return trace(model, zoo.example_input(name, batch), batch_dims=batch_dim)


# ----------------------------------------------------------------------------- running



def _check_names(models, schemes):
    from needle_qc.tools import zoo

    for name in models:
        zoo.get(name)  # KeyError/ValueError naming the valid models
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise KeyError(f"report: unknown scheme(s) {unknown}; valid: {', '.join(SCHEMES)}")


def _devices(device):
    """(needle device, compile target) for ``"cpu"`` or ``"cuda"``; ValueError if unavailable."""
    import needle as ndl

    if device not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not valid; valid: cpu, cuda")
    dev = getattr(ndl, device)()
    if not dev.enabled():
        raise ValueError(f"device {device!r} is not available on this machine "
                         "(cuda needs a GPU and the CUDA build)")
    return dev, device


def run(models=None, schemes=None, quick=False, *, seed=0, device="cpu", progress=True,
        cache_dir=None, layers=True, planner=None):
    """Measure every scheme on every model.

    Parameters
    ----------
    models : list of str, optional
        Zoo names or ``module:factory`` (default :data:`MODELS`).
    schemes : list of str, optional
        Keys of :data:`SCHEMES` (default all; ``fp32`` is the speed-up baseline).
    quick : bool
        Tiny configuration: one held-out batch, 2 calibration batches, 3 timing reps.
    seed : int
        Seeds numpy (training fallback, random inputs of user models).
    device : {"cpu", "cuda"}
    progress : bool
        tqdm bars for training and calibration.
    cache_dir : str, optional
        Where checkpoints trained here are cached (default ``out/checkpoints``).
    layers : bool
        Also compute per-layer SQNR (``Report.layers``).
    planner : bool, optional
        Also run the mixed-precision planner on each model (``Report.plans``, a section and a
        plot per model; :mod:`needle_qc.tools.report_plan`). Default: on unless ``quick``.

    Returns
    -------
    Report
        Iterable of :class:`ReportRow`; ``.layers`` holds :class:`LayerRow`. A scheme that fails
        on a model gives a row with ``error`` set instead of stopping the run.

    Raises
    ------
    KeyError
        Unknown model or scheme (the message lists the valid ones).
    ValueError
        Unavailable device.
    """
    settings = Settings.of(quick)
    models = list(MODELS if models is None else models)
    schemes = list(SCHEMES if schemes is None else schemes)
    _check_names(models, schemes)
    ndev, target = _devices(device)
    np.random.seed(seed)
    rows, layer_rows, sources, plans = [], [], {}, {}
    for name in models:
        try:
            model, sources[name] = load_model(name, ndev, cache_dir, seed,
                                              settings.train_epochs, progress)
            ctx = _ModelContext(name, model, settings, seed)
        except Exception as err:  # noqa: BLE001 -- a model that cannot load fails its rows only
            sources[name] = "not loaded"
            rows += [ReportRow(name, s, SCHEMES[s].data_type, error=_one_line(err))
                     for s in schemes]
            continue
        timed = []
        for scheme in schemes:
            row, lrows, cm = _measure(ctx, SCHEMES[scheme], target, progress, layers)
            rows.append(row)
            layer_rows.extend(lrows)
            if cm is not None:
                timed.append((row, cm))
        _time_interleaved(timed, ctx.latency_input, settings.latency_reps)
        _fill_speedups([r for r in rows if r.model == name])
        if (not quick) if planner is None else planner:
            plans[name] = _plan_section(ctx)
    info = dict(asdict(settings), quick=bool(quick), seed=seed, device=device, models=models,
                schemes=schemes, sources=sources, machine=machine(),
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return Report(rows, layer_rows, info, plans)


def _plan_section(ctx):
    from needle_qc.tools.report_plan import plan_model

    try:
        return plan_model(ctx)
    except Exception as err:  # noqa: BLE001 -- a planner failure fails its section only
        return {"error": _one_line(err)}


class _ModelContext:
    """A model's graph, data and float32 reference logits, shared by all its schemes."""

    def __init__(self, name, model, settings, seed):
        from needle_qc.tools import zoo

        self.name, self.settings = name, settings
        self.entry = zoo.get(name)
        self.graph = trace_model(name, model)
        lm = self.entry.task == "language_model"
        size = 16 if lm else 64
        if self.entry.dataset is not None:
            train = zoo.batches(name, "train", size, limit=settings.calibration_batches)
            self.calibration = [x for x, _ in train]
        else:
            self.calibration = [zoo.example_input(name, size, seed + i)
                                for i in range(settings.calibration_batches)]
        self.latency_input = self.calibration[0] if lm else \
            _resize(self.calibration, settings.latency_batch)
        self.metric = "perplexity" if lm else "accuracy"
        self.reference = self.evaluate(self.graph)

    def evaluate(self, fn):
        """``{"logits", and "accuracy" or "perplexity"}`` of ``fn`` on the held-out data."""
        from needle_qc.tools import zoo

        if self.entry.dataset is not None:
            return zoo.evaluate(self.name, fn, limit=self.settings.eval_batches)
        logits = [np.asarray(_numpy(fn(x)), np.float64) for x in self.calibration]
        return {"logits": np.concatenate(logits)}


def _numpy(value):
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value.numpy() if hasattr(value, "numpy") else value


def _resize(batches, size):
    """One input batch of exactly ``size`` rows (repeating rows when the data is smaller)."""
    x = np.concatenate(batches)
    reps = -(-size // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:size])


def compile_scheme(graph, scheme, calibration, target="cpu", progress=False):
    """The CompiledModel of ``graph`` under ``scheme`` (quantized kernels kept everywhere)."""
    from needle_qc.pipeline import compile
    from needle_qc.quantize.api import calibrate, quantize_pass

    cfg = scheme.qconfig()
    if cfg is None:
        # The baseline gets the same float rewrites the quantizer applies first (batch norm
        # folded, relus fused): every speed-up is then against the best float32 compile.
        from needle_qc.passes import FLOAT_PIPELINE, run_passes

        baseline = graph.copy()
        run_passes(baseline, FLOAT_PIPELINE)
        return compile(baseline, target=target, tune_kernels=False)
    prepared = quantize_pass(graph, cfg)
    calibrate(prepared, calibration, progress=progress)
    # tune_kernels=False keeps every quantized kernel (no "never slower" swap back to float),
    # so the row measures the scheme itself.
    return compile(prepared, target=target, tune_kernels=False)


def _measure(ctx, scheme, target, progress, layers):
    row = ReportRow(ctx.name, scheme.name, scheme.data_type, metric=ctx.metric)
    try:
        cm = compile_scheme(ctx.graph, scheme, ctx.calibration, target, progress)
        batch = int(np.shape(ctx.latency_input)[ctx.entry.input.batch_dim
                                               if ctx.entry.input else 0])
        for key, value in memory_of(cm, batch, _group_size(scheme)).items():
            setattr(row, key, value)
        out = ctx.evaluate(cm)
        _fill_deviation(row, ctx.reference["logits"], out["logits"])
        row.score = out.get(ctx.metric)
        row.batch = batch
        cm.run_arrays(ctx.latency_input)  # fails here, not in the timing loop
        lrows = _layer_rows(ctx, scheme, cm) if layers and scheme.qconfig_args else []
    except Exception as err:  # noqa: BLE001 -- one failing scheme must not stop the report
        row.error = _one_line(err)
        return row, [], None
    return row, lrows, cm


def _one_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _group_size(scheme):
    return (scheme.qconfig_args or {}).get("group_size", 32)


def _fill_deviation(row, ref, out):
    from needle_qc.tools.compare import deviation

    d = deviation(ref, np.asarray(out, np.float64))
    row.max_abs, row.rel_l2, row.sqnr_db = d["max_abs"], d["rel_l2"], d["sqnr_db"]
    row.cosine, row.top1_agreement = d["cosine"], d["top1_agreement"]


def _time_interleaved(timed, x, reps):
    """Set ``latency_ms`` of each row: the best of ``reps`` rounds, each round timing every
    model once in turn, so a burst of load on a shared machine hits all schemes alike."""
    best = [math.inf] * len(timed)
    for _ in range(max(reps, 1)):
        for i, (_row, cm) in enumerate(timed):
            start = time.perf_counter()
            cm.run_arrays(x)
            best[i] = min(best[i], time.perf_counter() - start)
    for (row, _cm), seconds in zip(timed, best):
        row.latency_ms = 1e3 * seconds


def _fill_speedups(rows):
    base = next((r for r in rows if r.scheme == "fp32" and r.ok), None)
    for r in rows:
        if base is not None and r.ok and r.latency_ms > 0:
            r.speedup = base.latency_ms / r.latency_ms


def _layer_rows(ctx, scheme, cm):
    from needle_qc.tools.compare import compare

    batches = ctx.calibration[:ctx.settings.layer_batches]
    rep = compare(ctx.graph, cm, batches)
    out = []
    for r in rep.rows:
        name, op = r.name, r.op
        if op == "relu" and name.endswith("_relu"):
            # weight-only/dynamic layers split off their relu; the float graph has the fused
            # layer, so the relu node is where the layer's error is measured
            name = name[: -len("_relu")]
            op = ctx_op(cm.graph, name) or op
        if opset.traits(op).kind in ("layer", "qlayer") and not any(o.layer == name for o in out):
            out.append(LayerRow(ctx.name, scheme.name, name, op, float(r.local_sqnr),
                                float(r.propagated["sqnr_db"])))
    return out


def ctx_op(graph, name):
    """The op of node ``name`` in ``graph``, or None."""
    node = _node_or_none(graph, name)
    return None if node is None else node.op


# ----------------------------------------------------------------------------- formatting

COLUMNS = ("scheme", "data type", "weights KiB theory/meas", "bits/w", "peak act KiB",
           "max abs", "rel L2", "SQNR dB", "cosine", "top-1 agr %", "score", "ms", "speed-up")


def _kib(nbytes):
    return f"{nbytes / 1024:.1f}"


def _num(value, fmt):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, fmt)


def _score(row):
    if row.score is None:
        return "-"
    return f"{100 * row.score:.2f}%" if row.metric == "accuracy" else f"ppl {row.score:.1f}"


def _cells(row):
    """The table cells of one row (an error row says why in the data type column's place)."""
    if not row.ok:
        return [row.scheme, row.data_type, f"FAILED: {row.error}"[:60]] + [""] * 10
    mem = f"{_kib(row.theoretical_bytes)} / {_kib(row.measured_bytes)}"
    if row.fallback_layers or row.duplicate_layers:
        mem += "*"
    top1 = None if row.top1_agreement is None else 100 * row.top1_agreement
    return [row.scheme, row.data_type, mem, _num(row.bits_per_weight, ".2f"),
            _kib(row.peak_activation_bytes), _num(row.max_abs, ".3g"), _num(row.rel_l2, ".2e"),
            _num(row.sqnr_db, ".1f"), _num(row.cosine, ".6f"), _num(top1, ".2f"), _score(row),
            _num(row.latency_ms, ".3f"), _num(row.speedup, ".2f")]


def text_table(rows):
    """Fixed-width table of ``rows``, one line per row, models separated by a title line."""
    lines, model = [], None
    cells = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells if c[i] or i < 2) for i in range(len(COLUMNS))]
    head = "  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in
                     enumerate(zip(COLUMNS, widths)))
    for r, c in zip(rows, cells[1:]):
        if r.model != model:
            model = r.model
            lines += ["", f"== {model}", head, "-" * len(head)]
        lines.append("  ".join(v.rjust(w) if i > 1 else v.ljust(w)
                               for i, (v, w) in enumerate(zip(c, widths))).rstrip())
    notes = _footnotes(rows)
    return "\n".join(lines[1:] + ([""] + notes if notes else []))


def _footnotes(rows):
    notes = []
    for r in rows:
        if r.ok and r.fallback_layers:
            notes.append(f"* {r.model} {r.scheme}: {len(r.fallback_layers)} layer(s) kept as "
                         f"fp32 by the compiler (no kernel): {_names(r.fallback_layers)}")
        if r.ok and r.duplicate_layers:
            notes.append(f"* {r.model} {r.scheme}: {len(r.duplicate_layers)} layer(s) hold their "
                         f"own copy of a shared weight (counted once in theory, every copy "
                         f"measured): {_names(r.duplicate_layers)}")
    return notes


def _names(names, k=3):
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _count_note(rows):
    """A line when rows of one model count different weights (what the runtime records)."""
    counts = {r.scheme: r.weight_count for r in rows if r.ok}
    if len(set(counts.values())) <= 1:
        return []
    text = ", ".join(f"{s} {n:,}" for s, n in counts.items())
    return ["Weights counted differ between schemes (" + text + "): the runtime records the "
            "weights of the layers it lowers to a weight kernel, and in fp32 a plain float "
            "`matmul` (an LSTM cell) has none.", ""]


def _md_table(rows):
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |" for r in rows]
    return out


def markdown(report, plots):
    """REPORT.md text: settings, one table per model, worst layers, the plots."""
    from needle_qc.tools import report_plan

    s = report.settings
    size = "quick (tiny)" if s["quick"] else "full"
    lines = ["# needle_qc report", "",
             f"Generated {s['date']} by `needle-qc report` ({size} configuration, seed "
             f"{s['seed']}, device {s['device']}) on {s['machine']}.", "",
             "How to read it: [docs/report.md](../report.md). Weights in KiB (theoretical from "
             "the data types / measured from the runtime's buffers); deviation of the logits "
             "from float32 on held-out data; score = held-out accuracy or perplexity; latency "
             f"= best of {s['latency_reps']} interleaved rounds of one call on one batch; "
             "speed-up vs fp32 (timed on a shared machine: rough).", ""]
    by_model = {}
    for r in report.rows:
        by_model.setdefault(r.model, []).append(r)
    lines += ["## Summary", ""] + summary_tables(report.rows)
    for model, rows in by_model.items():
        lines += [f"## {model}", "", f"Weights: {s['sources'].get(model, '?')}.", ""]
        lines += _md_table(rows) + [""]
        lines += [n[2:] if n.startswith("* ") else n for n in _footnotes(rows)]
        lines += _count_note(rows)
        lines += _worst_layers(report.layers, model)
        for kind in ("pareto", "layers"):
            for path in plots.get(kind, []):
                if os.path.basename(path).endswith(f"_{model}.png"):
                    lines += [f"![{kind} {model}]({os.path.basename(path)})", ""]
        lines += report_plan.markdown_lines(report.plans, model, plots)
    for path in plots.get("latency", []):
        lines += ["## Latency", "", f"![latency]({os.path.basename(path)})", ""]
    return "\n".join(lines).rstrip() + "\n"


PIVOTS = (("Measured weight memory (KiB)", lambda r: _kib(r.measured_bytes)),
          ("Output SQNR vs float32 (dB)", lambda r: _num(r.sqnr_db, ".1f")),
          ("Held-out score (accuracy, or perplexity for the LMs)", _score),
          ("Speed-up vs fp32 (one batch)", lambda r: _num(r.speedup, ".2f")))


def summary_tables(rows):
    """Markdown pivot tables (model x scheme) of memory, SQNR, score and speed-up."""
    models = list(dict.fromkeys(r.model for r in rows))
    schemes = list(dict.fromkeys(r.scheme for r in rows))
    cell = {(r.model, r.scheme): r for r in rows}
    lines = []
    for title, fmt in PIVOTS:
        lines += [f"**{title}**", "", "| model | " + " | ".join(schemes) + " |",
                  "|---|" + "---:|" * len(schemes)]
        for m in models:
            vals = [cell.get((m, s)) for s in schemes]
            lines.append(f"| {m} | " + " | ".join(
                "-" if v is None else (fmt(v) if v.ok else "failed") for v in vals) + " |")
        lines.append("")
    return lines


def _worst_layers(layer_rows, model, scheme="int8-static", k=3):
    mine = [r for r in layer_rows if r.model == model and r.scheme == scheme]
    if not mine:
        return []
    worst = sorted(mine, key=lambda r: r.local_sqnr_db if not math.isnan(r.local_sqnr_db)
                   else math.inf)[:k]
    text = ", ".join(f"`{r.layer}` {_num(r.local_sqnr_db, '.1f')} dB local / "
                     f"{_num(r.propagated_sqnr_db, '.1f')} dB propagated" for r in worst)
    return [f"Lowest per-layer SQNR under {scheme}: {text}.", ""]
