"""PNG plots of a :class:`~needle_qc.tools.report.Report` (matplotlib, Agg backend, no display)."""
from __future__ import annotations

import math
import os

__all__ = ["plot_all", "pareto", "layer_sqnr", "latency", "SQNR_CAP_DB"]

SQNR_CAP_DB = 120.0
"""Exact results (SQNR = inf) are drawn at this height and labeled "exact"."""
LAYER_SCHEMES = ("fp16", "int8-w", "int4-g32", "int8-dyn", "int8-static")
"""Schemes shown in the per-layer bars (fewer bars read better)."""
MAX_LAYERS = 16
"""At most this many layers per bar chart (the lowest SQNR ones, in graph order)."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _finite_sqnr(value):
    if value is None or math.isnan(value):
        return None
    return min(value, SQNR_CAP_DB)


def _pareto_front(points):
    """Indices of points no other point beats on both memory (lower) and SQNR (higher)."""
    front = []
    for i, (m, s) in enumerate(points):
        if not any((m2 <= m and s2 >= s) and (m2, s2) != (m, s) for m2, s2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto(rows, model, path):
    """Measured weight KiB (x, log) vs output SQNR in dB (y) for every scheme of ``model``;
    the Pareto front (smaller and more accurate than any other) is joined by a line."""
    plt = _pyplot()
    mine = [r for r in rows if r.model == model and r.ok and _finite_sqnr(r.sqnr_db) is not None]
    if not mine:
        return None
    points = [(r.measured_bytes / 1024, _finite_sqnr(r.sqnr_db)) for r in mine]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=36, color="tab:blue", zorder=3,
               label="scheme (measured weights)")
    theory = [(r.theoretical_bytes / 1024, p[1]) for r, p in zip(mine, points)]
    ax.scatter([t[0] for t in theory], [t[1] for t in theory], s=22, marker="x",
               color="tab:gray", zorder=2, label="same, theoretical bytes")
    front = _pareto_front(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--",
            color="tab:orange", zorder=1, label="Pareto front")
    placed = []
    for r, (x, y) in zip(mine, points):
        label = r.scheme + (" (exact)" if y >= SQNR_CAP_DB else "")
        # schemes of about the same size and error would print on top of each other: move
        # each label one line down per earlier label nearby
        near = sum(1 for px, py in placed if abs(math.log10(x / px)) < 0.12 and abs(y - py) < 6)
        placed.append((x, y))
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 3 - 10 * near),
                    fontsize=8)
    _log_kib_axis(ax)
    ax.set_xlabel("weight memory (KiB, log scale)")
    ax.set_ylabel("output SQNR vs float32 (dB, higher is better)")
    ax.set_title(f"{model}: memory vs deviation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    return _save(fig, plt, path)


def _log_kib_axis(ax):
    """Log x axis with plain numbers at 1, 2, 5 x 10^k (not 2 x 10^2)."""
    from matplotlib import ticker

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def layer_sqnr(layer_rows, model, path, schemes=LAYER_SCHEMES):
    """Grouped bars: local SQNR (dB) of every quantized layer of ``model``, one bar per scheme."""
    plt = _pyplot()
    mine = [r for r in layer_rows if r.model == model and r.scheme in schemes]
    if not mine:
        return None
    # a layer a scheme leaves float is exact (inf dB): no bar rather than a misleading tall one
    mine = [r for r in mine if not math.isinf(r.local_sqnr_db)]
    if not mine:
        return None
    present = [s for s in schemes if any(r.scheme == s for r in mine)]
    richest = max(present, key=lambda s: sum(r.scheme == s for r in mine))
    layers = list(dict.fromkeys([r.layer for r in mine if r.scheme == richest]
                                + [r.layer for r in mine]))
    value = {(r.layer, r.scheme): _finite_sqnr(r.local_sqnr_db) for r in mine}
    total = len(layers)
    if total > MAX_LAYERS:  # an unrolled LSTM has a layer per time step: show the worst ones
        worst = sorted(layers, key=lambda name: min(v for (n, _s), v in value.items()
                                                    if n == name and v is not None))
        keep = set(worst[:MAX_LAYERS])
        layers = [name for name in layers if name in keep]
    width = 0.8 / len(present)
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.4, 0.2 * len(layers) * len(present) + 3)),
                                    4.6), dpi=110)
    for j, scheme in enumerate(present):
        xs = [i + (j - (len(present) - 1) / 2) * width for i in range(len(layers))]
        ys = [value.get((layer, scheme)) or 0.0 for layer in layers]
        ax.bar(xs, ys, width=width, label=scheme)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([_short(layer) for layer in layers], rotation=40, ha="right", fontsize=8)
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("local SQNR (dB, higher is better)")
    shown = f"; the {len(layers)} worst of {total} layers" if total > len(layers) else ""
    ax.set_title(f"{model}: per-layer error (each layer alone on float inputs; "
                 f"no bar = layer left float{shown})", fontsize=10)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, title="scheme", title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    return _save(fig, plt, path)


def _short(name, keep=22):
    """Layer names can be long module paths; keep their tail, which tells layers apart."""
    name = name.replace("layers.modules.", "L")
    return name if len(name) <= keep else "..." + name[-keep + 3:]


def latency(rows, path):
    """Horizontal bars per model: latency of each scheme in ms, speed-up vs fp32 written."""
    plt = _pyplot()
    ok = [r for r in rows if r.ok and not math.isnan(r.latency_ms)]
    models = list(dict.fromkeys(r.model for r in ok))
    if not models:
        return None
    fig, axes = plt.subplots(len(models), 1, figsize=(6.8, 1.0 + 2.4 * len(models)), dpi=110,
                             squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        mine = [r for r in ok if r.model == model]
        ys = range(len(mine))
        colors = ["tab:gray" if r.scheme == "fp32" else "tab:green" for r in mine]
        ax.barh(list(ys), [r.latency_ms for r in mine], color=colors)
        ax.set_yticks(list(ys))
        ax.set_yticklabels([r.scheme for r in mine], fontsize=8)
        ax.invert_yaxis()
        for y, r in zip(ys, mine):
            if not math.isnan(r.speedup):
                ax.annotate(f"{r.speedup:.2f}x", (r.latency_ms, y), xytext=(3, 0),
                            textcoords="offset points", va="center", fontsize=7)
        ax.set_title(f"{model} (one call on a batch of {mine[0].batch})", fontsize=9)
        ax.set_xlabel("latency (ms, lower is better; label = speed-up vs fp32)", fontsize=8)
        ax.margins(x=0.15)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("Latency per scheme (best of repeated calls)")
    return _save(fig, plt, path)


def _save(fig, plt, path):
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_all(report, out_dir):
    """Every plot of ``report`` into ``out_dir``: ``{"pareto": [...], "layers": [...],
    "latency": [...]}`` lists of the PNG paths written."""
    os.makedirs(out_dir, exist_ok=True)
    models = list(dict.fromkeys(r.model for r in report.rows))
    drawn = {"pareto": [], "layers": [], "latency": []}
    for model in models:
        safe = model.replace(":", "_").replace("/", "_")
        p = pareto(report.rows, model, os.path.join(out_dir, f"pareto_{safe}.png"))
        q = layer_sqnr(report.layers, model, os.path.join(out_dir, f"layers_{safe}.png"))
        drawn["pareto"] += [p] if p else []
        drawn["layers"] += [q] if q else []
    lat = latency(report.rows, os.path.join(out_dir, "latency.png"))
    drawn["latency"] += [lat] if lat else []
    return drawn
