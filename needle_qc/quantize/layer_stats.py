"""Per-layer input moments gathered during calibration: GPTQ's Hessian and bias correction's mean.

A layer whose config asks for ``rounding="gptq"`` or ``bias_correction=True`` reads its input
through an ``observer`` node whose statistics object is a :class:`LayerInputStats` (pass
``insert-layer-stats``). Besides the min/max every observer keeps, it accumulates, per layer
geometry that reads it (``"linear"`` or a conv's kernel/stride/padding), the sum of the layer's
input rows and of their outer products, over the rows GPTQ and bias correction index: linear
rows of ``(..., K)``, conv inputs unfolded into ``(kh, kw, c)`` columns (``unfold_nchw``).
``convert`` takes the moments (:func:`take_input_moments`) and removes these nodes.
:class:`ChannelRangeStats` is SmoothQuant's (per-channel ``max |x|`` and a sample of rows).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from needle_qc.quantize.algorithms.gptq import unfold_nchw
from needle_qc.quantize.annotate import is_weight_layer
from needle_qc.quantize.observers import MinMaxObserver

KIND = "layer_input_stats"
MAX_ROWS = 16384
"""Rows unfolded at a time (bounds the float64 im2col buffer of a conv batch to ~K x 128 KiB)."""


def needs_input_stats(cfg) -> bool:
    """True when a layer's config rounds or corrects its weights from calibration inputs."""
    return cfg is not None and (cfg.rounding == "gptq" or cfg.bias_correction)


def needs_hessian(cfg) -> bool:
    return cfg is not None and cfg.rounding == "gptq"


def geometry_of(layer) -> str:
    """How a layer reads its input: ``"linear"`` or ``"conv:<k>:<stride>:<padding>"``."""
    if layer.op == "linear":
        return "linear"
    if layer.op == "conv2d":
        k = int(layer.inputs[1].meta["shape"][0])
        return f"conv:{k}:{int(layer.attrs['stride'])}:{int(layer.attrs['padding'])}"
    raise ValueError(f"layer stats: %{layer.name} is a {layer.op}, expected linear or conv2d")


def _rows(x, geometry):
    """The layer's input rows of one batch, in chunks of at most ~MAX_ROWS rows."""
    if geometry == "linear":
        flat = x.reshape(-1, x.shape[-1])
        for i in range(0, len(flat), MAX_ROWS):
            yield flat[i:i + MAX_ROWS]
        return
    k, stride, pad = (int(v) for v in geometry.split(":")[1:])
    per_image = max(1, unfold_nchw(x[:1], k, stride, pad).shape[0])
    step = max(1, MAX_ROWS // per_image)
    for i in range(0, x.shape[0], step):
        yield unfold_nchw(x[i:i + step], k, stride, pad)


@dataclass
class InputMoments:
    """``count`` rows, their ``total`` (per feature) and ``xtx`` (None when not collected)."""

    count: int
    total: np.ndarray
    xtx: np.ndarray | None

    @property
    def mean(self) -> np.ndarray:
        """``E[x]`` per input feature (bias correction)."""
        return self.total / max(self.count, 1)

    @property
    def hessian(self) -> np.ndarray:
        """GPTQ's ``H = 2 X^T X / N`` (ValueError when only means were collected)."""
        if self.xtx is None:
            raise ValueError("layer stats: the Hessian was not collected for this layer")
        return 2.0 * self.xtx / max(self.count, 1)

    def merged(self, other: InputMoments) -> InputMoments:
        """Moments of both row sets (a weight used by several layers, e.g. an unrolled LSTM)."""
        xtx = None if self.xtx is None or other.xtx is None else self.xtx + other.xtx
        return InputMoments(self.count + other.count, self.total + other.total, xtx)


class LayerInputStats(MinMaxObserver):
    """Min/max of a layer input plus its :class:`InputMoments` per reading geometry."""

    kind = KIND

    def __init__(self, geometries=(), hessian=(), name: str = "<unnamed>"):
        super().__init__(name)
        self.geometries, self.hessian = list(geometries), [bool(h) for h in hessian]
        if len(self.geometries) != len(self.hessian):
            raise ValueError(f"layer stats %{name}: one hessian flag per geometry")
        self.moments = {}
        self.frozen = {}  # layer name -> moments measured for it by sequential GPTQ

    def add_geometry(self, geometry: str, hessian: bool) -> None:
        """Also collect for ``geometry`` (the Hessian too when any reader needs it)."""
        if geometry in self.geometries:
            i = self.geometries.index(geometry)
            self.hessian[i] = self.hessian[i] or bool(hessian)
        else:
            self.geometries.append(geometry)
            self.hessian.append(bool(hessian))

    def _observe(self, x):
        super()._observe(x)
        for geometry, hessian in zip(self.geometries, self.hessian):
            for rows in _rows(x, geometry):
                m = InputMoments(len(rows), rows.sum(axis=0), rows.T @ rows if hessian else None)
                old = self.moments.get(geometry)
                self.moments[geometry] = m if old is None else old.merged(m)

    def _merge(self, other):
        super()._merge(other)
        for geometry, m in other.moments.items():
            old = self.moments.get(geometry)
            self.moments[geometry] = m if old is None else old.merged(m)

    def _config(self):
        return {"geometries": list(self.geometries), "hessian": list(self.hessian)}

    def _state(self):
        moments = {g: {"count": m.count, "total": m.total.tolist(),
                       "xtx": None if m.xtx is None else m.xtx.tolist()}
                   for g, m in self.moments.items()}
        frozen = {name: _moments_state(m) for name, m in self.frozen.items()}
        return {**super()._state(), "moments": moments, "frozen": frozen}

    def _load(self, state):
        super()._load(state)
        self.moments = {g: InputMoments(int(m["count"]), np.asarray(m["total"], np.float64),
                                        None if m["xtx"] is None else
                                        np.asarray(m["xtx"], np.float64))
                        for g, m in state.get("moments", {}).items()}
        self.frozen = {name: _moments_of(m) for name, m in state.get("frozen", {}).items()}


def _moments_state(m):
    return {"count": m.count, "total": m.total.tolist(),
            "xtx": None if m.xtx is None else m.xtx.tolist()}


def _moments_of(state):
    return InputMoments(int(state["count"]), np.asarray(state["total"], np.float64),
                        None if state["xtx"] is None else np.asarray(state["xtx"], np.float64))


def is_stats_node(graph, node) -> bool:
    """True for an ``observer`` node whose statistics object is a :class:`LayerInputStats`."""
    stats = graph.observers.get(node.name)
    return node.op == "observer" and isinstance(stats, LayerInputStats)


def _weight_key(layer):
    w = layer.inputs[1]
    return w.attrs.get("tensor", w.name)


def take_input_moments(graph) -> dict:
    """Remove every stats node; returns layer name -> :class:`InputMoments` of its input.

    Layers sharing one weight param get the moments of all their inputs together (their weight
    is rounded once, for all of them). A stats node that saw no batch is an error naming it.
    """
    observers = graph.observers
    per_layer = {}
    for node in [n for n in graph.nodes if is_stats_node(graph, n)]:
        stats = observers[node.name]
        for layer in [u for u in node.users if is_weight_layer(u) and u.inputs[0] is node]:
            moments = stats.frozen.get(layer.name) or stats.moments.get(geometry_of(layer))
            if moments is None or stats.n_updates == 0:
                raise ValueError(f"convert: layer input statistics %{node.name} saw no "
                                 "calibration data; run calibrate(prepared, batches) first")
            per_layer[layer] = moments
        node.replace_all_uses_with(node.inputs[0])
        graph.erase(node)
        observers.pop(node.name, None)
    by_weight = {}
    for layer, moments in per_layer.items():
        key = _weight_key(layer)
        by_weight[key] = moments if key not in by_weight else by_weight[key].merged(moments)
    return {layer.name: by_weight[_weight_key(layer)] for layer in per_layer}


# ----------------------------------------------------------------------------- SmoothQuant

SMOOTH_KIND = "smoothquant_stats"
SAMPLE_ROWS = 4096
"""Calibration rows kept to score the alphas of ``smoothquant="auto"``."""


class ChannelRangeStats(MinMaxObserver):
    """Min/max plus ``max |x_j|`` per channel (last axis) and a sample of rows."""

    kind = SMOOTH_KIND

    def __init__(self, name: str = "<unnamed>"):
        super().__init__(name)
        self.absmax = None
        self.sample = None

    def _observe(self, x):
        super()._observe(x)
        rows = x.reshape(-1, x.shape[-1])
        m = np.abs(rows).max(axis=0)
        self.absmax = m if self.absmax is None else np.maximum(self.absmax, m)
        have = 0 if self.sample is None else len(self.sample)
        if have < SAMPLE_ROWS:
            take = rows[:SAMPLE_ROWS - have].astype(np.float32)
            self.sample = take if self.sample is None else np.concatenate([self.sample, take])

    def _merge(self, other):
        super()._merge(other)
        self.absmax = other.absmax if self.absmax is None else np.maximum(self.absmax,
                                                                          other.absmax)
        if other.sample is not None:
            both = other.sample if self.sample is None else np.concatenate([self.sample,
                                                                            other.sample])
            self.sample = both[:SAMPLE_ROWS]

    def _state(self):
        return {**super()._state(), "absmax": self.absmax.tolist(),
                "sample": self.sample.tolist()}

    def _load(self, state):
        super()._load(state)
        self.absmax = np.asarray(state["absmax"], np.float64)
        self.sample = np.asarray(state["sample"], np.float32)


def _register_kinds():
    # observer_from_dict (graph copies, saved files) rebuilds statistics objects by kind
    from needle_qc.quantize import observers

    observers._KINDS.setdefault(KIND, LayerInputStats)
    observers._KINDS.setdefault(SMOOTH_KIND, ChannelRangeStats)


_register_kinds()
