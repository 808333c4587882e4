"""Calibration observers: running ranges and histograms that turn activations into qparams."""
from __future__ import annotations

import math

import numpy as np

from needle_qc.quantize.qparams import choose_qparams, qrange

HISTOGRAM_METHODS = ("percentile", "entropy", "mse")
MAX_BINS = 1 << 16
"""Upper bound on ``HistogramObserver(bins=...)`` (a loaded file cannot ask for gigabytes)."""
_TINY = 1e-30
TAIL_PERCENTILE = 99.9
"""Per batch, the |x| percentile kept as the "typical size" an outlier is compared with."""


class NonFiniteBatchError(ValueError):
    """A calibration batch reached an observer with NaN/Inf values (``observer``: its name)."""

    def __init__(self, message, observer):
        super().__init__(message)
        self.observer = observer


class Observer:
    """Base observer: validates batches, keeps the range history, turns the range into qparams.

    Subclasses implement ``_observe(x)`` (x finite, non-empty float64), ``_merge(other)``,
    ``range()`` and ``_state()``/``_load(state)`` for serialization.
    """

    kind = "observer"

    def __init__(self, name: str = "<unnamed>"):
        self.name = name
        self.history: list = []
        self.n_updates = 0
        self.batch_tails: list = []  # per batch: TAIL_PERCENTILE of |x| (outlier warnings)

    # -- public API ---------------------------------------------------------------------------
    def update(self, x) -> None:
        """Observe one calibration batch. NaN/Inf raise ValueError; empty batches are ignored."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"observer for node {self.name!r}: batch dtype {arr.dtype} "
                             "is not numeric")
        arr = arr.astype(np.float64)
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise NonFiniteBatchError(f"observer for node {self.name!r}: {bad} NaN/Inf values "
                                      f"in a calibration batch of {arr.size}", self.name)
        if arr.size == 0:
            return
        self._observe(arr)
        self.n_updates += 1
        self.history.append(self._raw_range())
        self.batch_tails.append(float(np.percentile(np.abs(arr), TAIL_PERCENTILE)))

    def outlier_ratio(self) -> float:
        """``max|range| / median over batches of the batch's 99.9th percentile of |x|``: how far
        the calibrated range reaches beyond the typical values (NaN without evidence)."""
        if not self.n_updates or not self.batch_tails:
            return float("nan")
        lo, hi = self.range()  # what quantization will use (a percentile may clip outliers)
        reach = max(float(np.max(np.abs(lo))), float(np.max(np.abs(hi))))
        typical = float(np.median(self.batch_tails))
        return reach / typical if typical > 0 else float("nan")

    def merge(self, other: Observer) -> Observer:
        """Fold ``other`` (same kind and settings, e.g. another data shard) into ``self``."""
        if type(other) is not type(self) or other._config() != self._config():
            raise ValueError(f"observer for node {self.name!r}: cannot merge {other.kind} "
                             f"{other._config()} into {self.kind} {self._config()}")
        if other.n_updates == 0:
            return self
        if self.n_updates == 0:
            self._load(other._state())
        else:
            self._merge(other)
        self.n_updates += other.n_updates
        self.history.append(self._raw_range())
        self.batch_tails += other.batch_tails
        return self

    def range(self):
        """Calibrated real range ``(rmin, rmax)`` (floats, or arrays per channel)."""
        self._require_data()
        return self._raw_range()

    def qparams(self, dtype: str = "uint8", symmetric: bool = False, reduce_range: bool = False):
        """``(scale, zero_point)`` for :meth:`range` via :func:`choose_qparams` (over the 7-bit
        range with ``reduce_range``)."""
        rmin, rmax = self.range()
        return choose_qparams(rmin, rmax, dtype, symmetric, reduce_range=reduce_range)

    def range_drift(self, last_fraction: float = 0.1) -> float:
        """How far the range moved during the last ``last_fraction`` of updates, relative.

        ``max(|Δrmin|, |Δrmax|) / (rmax - rmin)`` between the range before the last
        ``ceil(n * last_fraction)`` updates and the final one (raw min/max for every observer).
        NaN when fewer than 2 updates (no evidence either way).
        """
        if not 0 < last_fraction <= 1:
            raise ValueError(f"range_drift: last_fraction={last_fraction!r} must be in (0, 1]")
        self._require_data()
        n = len(self.history)
        if n < 2:
            return float("nan")
        k = min(max(1, math.ceil(n * last_fraction)), n - 1)
        (lo0, hi0), (lo1, hi1) = self.history[n - 1 - k], self.history[-1]
        move = max(np.max(np.abs(np.subtract(lo1, lo0))), np.max(np.abs(np.subtract(hi1, hi0))))
        span = np.max(np.subtract(hi1, lo1))
        return float(move / max(span, _TINY))

    def to_dict(self) -> dict:
        """JSON-able dict (numpy arrays as lists); :func:`observer_from_dict` inverts it."""
        return {"kind": self.kind, "name": self.name, "config": self._config(),
                "n_updates": self.n_updates,
                "state": self._state() if self.n_updates else None,
                "history": [[_jsonable(lo), _jsonable(hi)] for lo, hi in self.history]}

    @classmethod
    def from_dict(cls, data: dict) -> Observer:
        return observer_from_dict(data)

    # -- helpers ------------------------------------------------------------------------------
    def _require_data(self) -> None:
        if self.n_updates == 0:
            raise RuntimeError(f"observer for node {self.name!r} saw no calibration data; "
                               "run calibration batches through the model before converting")

    def _config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        rng = self._raw_range() if self.n_updates else None
        return f"{type(self).__name__}(name={self.name!r}, n_updates={self.n_updates}, range={rng})"


def _jsonable(v):
    return np.asarray(v, dtype=np.float64).tolist()


# ---------------------------------------------------------------------------------------------


class MinMaxObserver(Observer):
    """Running min/max over all batches (exact; merge is exact)."""

    kind = "minmax"

    def __init__(self, name: str = "<unnamed>"):
        super().__init__(name)
        self.min = math.inf
        self.max = -math.inf

    def _observe(self, x):
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    def _merge(self, other):
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    def _raw_range(self):
        return self.min, self.max

    def _state(self):
        return {"min": self.min, "max": self.max}

    def _load(self, state):
        self.min, self.max = float(state["min"]), float(state["max"])


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of per-batch min/max: ``m += c * (batch_m - m)``.

    The first batch initialises the averages. Merging averages the two states weighted by their
    update counts (an approximation: a moving average has no exact merge).
    """

    kind = "moving_average"

    def __init__(self, averaging_constant: float = 0.01, name: str = "<unnamed>"):
        super().__init__(name)
        if not 0 < averaging_constant <= 1:
            raise ValueError(f"MovingAverageMinMaxObserver: averaging_constant="
                             f"{averaging_constant!r} must be in (0, 1]")
        self.averaging_constant = float(averaging_constant)

    def _observe(self, x):
        lo, hi = float(x.min()), float(x.max())
        if self.n_updates == 0:
            self.min, self.max = lo, hi
            return
        c = self.averaging_constant
        self.min += c * (lo - self.min)
        self.max += c * (hi - self.max)

    def _merge(self, other):
        a, b = self.n_updates, other.n_updates
        self.min = (a * self.min + b * other.min) / (a + b)
        self.max = (a * self.max + b * other.max) / (a + b)

    def _config(self):
        return {"averaging_constant": self.averaging_constant}


class PerChannelMinMaxObserver(Observer):
    """Min/max per channel along ``axis`` (exact; merge is exact). Ranges are float64 arrays."""

    kind = "per_channel_minmax"

    def __init__(self, axis: int = 0, name: str = "<unnamed>"):
        super().__init__(name)
        if not isinstance(axis, int):
            raise ValueError(f"PerChannelMinMaxObserver: axis={axis!r} must be an int")
        self.axis = axis
        self.min = None
        self.max = None

    def _observe(self, x):
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"observer for node {self.name!r}: axis={self.axis} out of range "
                             f"for batch shape {x.shape}")
        moved = np.moveaxis(x, self.axis, 0).reshape(x.shape[self.axis], -1)
        lo, hi = moved.min(axis=1), moved.max(axis=1)
        if self.min is not None and self.min.shape != lo.shape:
            raise ValueError(f"observer for node {self.name!r}: batch has {lo.size} channels "
                             f"on axis {self.axis}, earlier batches had {self.min.size}")
        self.min = lo if self.min is None else np.minimum(self.min, lo)
        self.max = hi if self.max is None else np.maximum(self.max, hi)

    def _merge(self, other):
        if other.min.shape != self.min.shape:
            raise ValueError(f"observer for node {self.name!r}: cannot merge {other.min.size} "
                             f"channels into {self.min.size}")
        self.min, self.max = np.minimum(self.min, other.min), np.maximum(self.max, other.max)

    def _raw_range(self):
        return self.min.copy(), self.max.copy()

    def _config(self):
        return {"axis": self.axis}

    def _state(self):
        return {"min": _jsonable(self.min), "max": _jsonable(self.max)}

    def _load(self, state):
        self.min = np.asarray(state["min"], np.float64)
        self.max = np.asarray(state["max"], np.float64)


# ---------------------------------------------------------------------------------------------


class HistogramObserver(Observer):
    """Histogram of all values with a percentile, entropy (KL) or MSE range choice.

    Bins have width ``2**e`` and sit on a grid anchored at 0 (bin ``k`` is
    ``[k * 2**e, (k + 1) * 2**e)``). ``e`` is the smallest exponent for which the observed
    ``[min, max]`` fits in ``bins`` bins, so it is a function of the overall range alone: growing
    the range coarsens the grid by whole powers of two and old bins merge exactly. Hence the
    histogram is independent of batch order and ``merge`` equals a single pass, bit for bit. The
    price is resolution: the range spans between about ``bins / 2`` and ``bins`` bins.

    Parameters
    ----------
    method : {"percentile", "entropy", "mse"}
        percentile: clip at the ``(100 - p)`` and ``p`` percentiles (linear within a bin).
        entropy: TensorRT-style KL search over thresholds on the |x| histogram (128 target
        levels for two-sided data, 256 for one-sided), at most ~512 candidates.
        mse: scale the range by ``alpha`` in (0, 1] (100 steps) and keep the range whose
        quantize-dequantize MSE on the bin centres is smallest, for ``dtype``/``symmetric``.
    """

    kind = "histogram"

    def __init__(self, method: str = "percentile", bins: int = 2048, percentile: float = 99.99,
                 dtype: str = "uint8", symmetric: bool = False, name: str = "<unnamed>"):
        super().__init__(name)
        if method not in HISTOGRAM_METHODS:
            raise ValueError(f"HistogramObserver: method={method!r}; valid: "
                             f"{list(HISTOGRAM_METHODS)}")
        if not isinstance(bins, int) or isinstance(bins, bool) or not 256 <= bins <= MAX_BINS:
            raise ValueError(f"HistogramObserver: bins={bins!r} must be an int in "
                             f"[256, {MAX_BINS}]")
        if not 0 < percentile <= 100:
            raise ValueError(f"HistogramObserver: percentile={percentile!r} must be in (0, 100]")
        choose_qparams(0.0, 1.0, dtype, symmetric)  # validates dtype early
        self.method, self.bins, self.percentile = method, bins, float(percentile)
        self.dtype, self.symmetric = dtype, bool(symmetric)
        self.min, self.max = math.inf, -math.inf
        self.exp = -1100  # bin width 2**exp; anything works while the histogram is empty
        self.lo_index = 0
        self.counts = np.zeros(bins, dtype=np.int64)

    # -- grid ---------------------------------------------------------------------------------
    def _fits(self, e: int, lo: float, hi: float) -> bool:
        return math.floor(math.ldexp(hi, -e)) - math.floor(math.ldexp(lo, -e)) <= self.bins - 1

    def _exponent_for(self, lo: float, hi: float) -> int:
        """Smallest exponent whose grid holds [lo, hi], floored relative to max |value|."""
        amax = max(abs(lo), abs(hi))
        # the floor keeps bin indices below 2**62 and defines e for zero-width ranges
        floor_e = math.frexp(amax)[1] - 60 if amax > 0 else -1100
        span = hi - lo
        e = max(floor_e, math.frexp(span / (self.bins - 1))[1] - 1 if span > 0 else floor_e)
        while not self._fits(e, lo, hi):
            e += 1
        while e - 1 >= floor_e and self._fits(e - 1, lo, hi):
            e -= 1
        return e

    def _regrid(self, lo: float, hi: float) -> None:
        """Move the counts onto the grid of range [lo, hi] (same or coarser: exact)."""
        e = self._exponent_for(lo, hi)
        new_lo = math.floor(math.ldexp(lo, -e))
        if self.n_updates == 0:
            self.counts[:] = 0
        elif e != self.exp or new_lo != self.lo_index:
            old = np.arange(self.bins, dtype=np.int64) + self.lo_index
            # indices stay below 2**62, so shifting by 63 already gives floor(k / 2**d)
            pos = (old >> min(e - self.exp, 63)) - new_lo
            nz = self.counts != 0
            fresh = np.zeros(self.bins, dtype=np.int64)
            np.add.at(fresh, pos[nz], self.counts[nz])
            self.counts = fresh
        self.exp, self.lo_index, self.min, self.max = e, new_lo, lo, hi

    def _observe(self, x):
        self._regrid(min(self.min, float(x.min())), max(self.max, float(x.max())))
        idx = np.floor(np.ldexp(x.ravel(), -self.exp)).astype(np.int64) - self.lo_index
        self.counts += np.bincount(idx, minlength=self.bins)

    def _merge(self, other):
        theirs = other._copy()
        lo, hi = min(self.min, other.min), max(self.max, other.max)
        self._regrid(lo, hi)
        theirs._regrid(lo, hi)
        self.counts = self.counts + theirs.counts

    def _copy(self) -> HistogramObserver:
        twin = HistogramObserver(self.method, self.bins, self.percentile, self.dtype,
                                 self.symmetric, self.name)
        twin._load(self._state())
        twin.n_updates = self.n_updates
        return twin

    # -- range choice -------------------------------------------------------------------------
    def _raw_range(self):
        return self.min, self.max

    def range(self):
        self._require_data()
        if self.min == self.max:
            return self.min, self.max
        lo, hi = getattr(self, f"_range_{self.method}")()
        return max(self.min, float(lo)), min(self.max, float(hi))

    def _edges(self) -> np.ndarray:
        k = np.arange(self.bins + 1, dtype=np.float64) + self.lo_index
        return np.ldexp(k, self.exp)

    def _range_percentile(self):
        cdf = np.cumsum(self.counts)
        total = cdf[-1]
        return (self._quantile(cdf, total * (1 - self.percentile / 100)),
                self._quantile(cdf, total * self.percentile / 100))

    def _quantile(self, cdf: np.ndarray, target: float) -> float:
        i = int(np.searchsorted(cdf, target, side="left"))
        i = min(i, self.bins - 1)
        prev = cdf[i - 1] if i else 0
        frac = (target - prev) / self.counts[i] if self.counts[i] else 0.0
        edges = self._edges()
        return float(edges[i] + frac * (edges[i + 1] - edges[i]))

    def _abs_histogram(self):
        """Counts of |x| on the zero-anchored grid (coarsened until <= 2 * bins bins)."""
        k = np.arange(self.bins, dtype=np.int64) + self.lo_index
        a = np.where(k >= 0, k, -k - 1)
        shift = 0
        while (int(a.max()) >> shift) >= 2 * self.bins:
            shift += 1
        a >>= shift
        hist = np.zeros(int(a.max()) + 1, dtype=np.int64)
        np.add.at(hist, a, self.counts)
        return hist, self.exp + shift

    def _range_entropy(self):
        hist, e = self._abs_histogram()
        levels = 256 if self.min >= 0 or self.max <= 0 else 128
        n = hist.size
        if n <= levels:
            return self.min, self.max
        step = max(1, (n - levels) // 512)
        cands = list(range(levels, n + 1, step))
        if cands[-1] != n:
            cands.append(n)
        kls = [_kl_for_threshold(hist, i, levels) for i in cands]
        t = math.ldexp(cands[int(np.argmin(kls))], e)
        return -t, t

    def _range_mse(self):
        alphas = np.linspace(0.01, 1.0, 100)
        los, his = alphas * min(self.min, 0.0), alphas * max(self.max, 0.0)
        scale, zp = choose_qparams(los, his, self.dtype, self.symmetric)
        qmin, qmax = qrange(self.dtype, self.symmetric)
        nz = self.counts > 0
        edges = self._edges()
        centres = ((edges[:-1] + edges[1:]) / 2)[nz]
        counts = self.counts[nz].astype(np.float64)
        s = scale.astype(np.float64)[:, None]
        z = zp.astype(np.float64)[:, None]
        dq = (np.clip(np.rint(centres / s) + z, qmin, qmax) - z) * s
        err = ((dq - centres) ** 2 * counts).sum(axis=1)
        best = len(alphas) - 1 - int(np.argmin(err[::-1]))  # prefer the widest of equal ranges
        return los[best], his[best]

    # -- serialization ------------------------------------------------------------------------
    def _config(self):
        return {"method": self.method, "bins": self.bins, "percentile": self.percentile,
                "dtype": self.dtype, "symmetric": self.symmetric}

    def _state(self):
        return {"min": self.min, "max": self.max, "exp": self.exp, "lo_index": self.lo_index,
                "counts": self.counts.tolist()}

    def _load(self, state):
        self.min, self.max = float(state["min"]), float(state["max"])
        self.exp, self.lo_index = int(state["exp"]), int(state["lo_index"])
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.shape != (self.bins,):
            raise ValueError(f"observer for node {self.name!r}: counts length {counts.size} "
                             f"!= bins {self.bins}")
        self.counts = counts


def _kl_for_threshold(hist: np.ndarray, i: int, levels: int) -> float:
    """KL(P || Q): P = first ``i`` bins with the tail folded into bin i-1, Q = P re-expanded
    from ``levels`` quantization bins (each level's mass spread evenly over its nonzero bins)."""
    orig = hist[:i].astype(np.float64)
    p = orig.copy()
    p[-1] += hist[i:].sum()
    cid = (np.arange(i) * levels) // i
    sums = np.bincount(cid, weights=orig, minlength=levels)
    nonzero = np.bincount(cid, weights=(orig > 0).astype(np.float64), minlength=levels)
    q = np.where(orig > 0, sums[cid] / np.maximum(nonzero[cid], 1), 0.0)
    p_sum, q_sum = p.sum(), q.sum()
    if p_sum == 0 or q_sum == 0:
        return math.inf
    p, q = p / p_sum, q / q_sum
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


# ---------------------------------------------------------------------------------------------

_KINDS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "per_channel_minmax": PerChannelMinMaxObserver,
    "histogram": HistogramObserver,
}
OBSERVER_KINDS = tuple(_KINDS) + HISTOGRAM_METHODS


def make_observer(kind: str, **kw) -> Observer:
    """Build an observer by kind: one of ``OBSERVER_KINDS``; "percentile", "entropy" and "mse"
    are shorthands for ``HistogramObserver(method=kind)``."""
    if kind in HISTOGRAM_METHODS:
        return HistogramObserver(method=kind, **kw)
    if kind not in _KINDS:
        raise ValueError(f"make_observer: kind={kind!r}; valid: {list(OBSERVER_KINDS)}")
    return _KINDS[kind](**kw)


def observer_from_dict(data: dict) -> Observer:
    """Rebuild an observer from :meth:`Observer.to_dict` output."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _KINDS:
        raise ValueError(f"observer_from_dict: kind={kind!r}; valid: {list(_KINDS)}")
    obs = _KINDS[kind](name=data.get("name", "<unnamed>"), **data.get("config", {}))
    obs.n_updates = int(data.get("n_updates", 0))
    if obs.n_updates:
        obs._load(data["state"])
    obs.history = [_history_entry(lo, hi) for lo, hi in data.get("history", [])]
    return obs


def _history_entry(lo, hi):
    if isinstance(lo, list):
        return np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    return float(lo), float(hi)
