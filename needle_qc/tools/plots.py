"""PNG plots of a :class:`~needle_qc.tools.report.Report` (matplotlib, Agg backend, no display)."""
from __future__ import annotations

import math
import os

__all__ = ["plot_all", "pareto", "place_labels", "layer_sqnr", "layer_table", "latency",
           "plan_front", "SQNR_CAP_DB"]

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
    labels = [r.scheme + (" (exact)" if y >= SQNR_CAP_DB else "") for r, (_x, y) in
              zip(mine, points)]
    _log_kib_axis(ax)
    ax.set_xlabel("weight memory (KiB, log scale)")
    ax.set_ylabel("output SQNR vs float32 (dB, higher is better)")
    ax.set_title(f"{model}: memory vs deviation")
    ax.grid(True, which="both", alpha=0.3)
    legend = ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    place_labels(fig, ax, points, labels, avoid=[legend], markers=theory)
    return _save(fig, plt, path)


LABEL_OFFSETS_PT = ([(7, 0)] + [(26, sign * 11 * k) for k in range(1, 5) for sign in (-1, 1)]
                    + [(-7, 0)] + [(26, sign * 11 * k) for k in range(5, 9) for sign in (-1, 1)])
"""Where a point's label may go (points from the point to the middle of the label's near
edge, tried in order): right of it; further right and a line lower or higher at a time, joined
to its point by a line; left of it (the right edge of the plot); further away."""


def place_labels(fig, ax, points, labels, avoid=(), markers=()):
    """Label each ``(x, y)`` point so that no label overlaps another, a point, a ``markers``
    point or an ``avoid`` artist (the legend); a label moved off its point gets a line to it.
    Two schemes of about the same size and error (int8-dyn, int8-static) would otherwise
    print on top of each other. Returns the annotations."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0
    taken = [a.get_window_extent(renderer) for a in avoid]
    for x, y in ax.transData.transform(list(points) + list(markers)):
        r = 4 * scale  # a label must not hide a point
        taken.append(Bbox.from_extents(x - r, y - r, x + r, y + r))
    frame = ax.get_window_extent(renderer)
    order = sorted(range(len(points)), key=lambda i: (-points[i][1], points[i][0]))
    notes = [None] * len(points)
    for i in order:
        anchor = ax.transData.transform(points[i])
        note = ax.annotate(labels[i], points[i], textcoords="offset points", xytext=(7, 0),
                           fontsize=8, va="center")
        width, height = (lambda b: (b.width, b.height))(note.get_window_extent(renderer))
        spot, box = _free_spot(anchor, width, height, taken, frame, scale)
        dx, dy = LABEL_OFFSETS_PT[spot]
        note.xyann = (dx, dy)
        note.set_horizontalalignment("right" if dx < 0 else "left")
        if LABEL_OFFSETS_PT[spot][1] != 0:
            ax.annotate("", points[i], xytext=(dx - 1, dy), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "color": "0.3", "lw": 0.7,
                                    "shrinkA": 0, "shrinkB": 3})
        taken.append(box)
        notes[i] = note
    return notes


def _free_spot(anchor, width, height, taken, frame, scale):
    """(index into LABEL_OFFSETS_PT, label box) of the first spot where a ``width`` x
    ``height`` label overlaps nothing taken and stays inside the axes; else the first spot."""
    from matplotlib.transforms import Bbox

    first = None
    for k, (dx, dy) in enumerate(LABEL_OFFSETS_PT):
        x0 = anchor[0] + dx * scale - (width if dx < 0 else 0)
        y0 = anchor[1] + dy * scale - height / 2
        box = Bbox.from_bounds(x0, y0, width, height)
        first = first or box
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 \
            and box.y1 <= frame.y1
        if inside and not any(box.overlaps(t) for t in taken):
            return k, box
    return 0, first


def _log_kib_axis(ax):
    """Log x axis with plain numbers at 1, 2, 5 x 10^k (not 2 x 10^2)."""
    from matplotlib import ticker

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def layer_table(layer_rows, model, schemes=LAYER_SCHEMES):
    """What :func:`layer_sqnr` draws: ``(layers, schemes present, {(layer, scheme): dB},
    number of layers before the MAX_LAYERS cut)``, or None when there is no bar to draw.
    Every quantized layer kind counts (static, dynamic, weight-only: ``conv2d_dynamic`` too)."""
    mine = [r for r in layer_rows if r.model == model and r.scheme in schemes]
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
    return layers, present, value, total


def layer_sqnr(layer_rows, model, path, schemes=LAYER_SCHEMES):
    """Grouped bars: local SQNR (dB) of every quantized layer of ``model``, one bar per scheme."""
    table = layer_table(layer_rows, model, schemes)
    if table is None:
        return None
    layers, present, value, total = table
    plt = _pyplot()
    width = 0.8 / len(present)
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.4, 0.2 * len(layers) * len(present) + 3)),
                                    4.6), dpi=110)
    for j, scheme in enumerate(present):
        xs = [i + (j - (len(present) - 1) / 2) * width for i in range(len(layers))]
        ys = [value.get((layer, scheme)) or 0.0 for layer in layers]
        bars = ax.bar(xs, ys, width=width, label=scheme, color=f"C{j}")
        _mark_capped(ax, bars, ys)
    ax.margins(y=0.08)  # room for the ">=120" of a capped bar
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


def _mark_capped(ax, bars, ys):
    """A bar cut at SQNR_CAP_DB (a layer that stayed about exact, e.g. int4 weights left in
    float when the group does not fit) gets a hatched overlay and a label, so it is not read
    as 120 dB (an overlay, not the bar's own hatch, keeps the legend's colour patch plain)."""
    for bar, y in zip(bars, ys):
        if y >= SQNR_CAP_DB:
            x = bar.get_x() + bar.get_width() / 2
            ax.bar([x], [y], width=bar.get_width(), fill=False, hatch="//", linewidth=0,
                   edgecolor="0.2")
            ax.annotate(f">={SQNR_CAP_DB:g}", (x, y), xytext=(0, 2), textcoords="offset points",
                        ha="center", fontsize=7)


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


def plan_front(table, title, path, score_label=None, sign=1.0):
    """The planner's table (``Plan.table``): weight KiB (x, log) vs each point's measured score
    (``sign * score``, e.g. -1 to show perplexity from minus perplexity) or, without scores,
    its output SQNR; the front joined by a line, the uniform schemes labelled, the chosen
    point starred. Returns ``path``, or None when no point was measured."""
    def y_of(row):
        if score_label is not None:
            return None if row["score"] is None else sign * row["score"]
        return _finite_sqnr(row["sqnr_db"])

    rows = [r for r in table if y_of(r) is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    mixed = [r for r in rows if r["kind"] != "uniform"]
    ax.plot([r["bytes"] / 1024 for r in mixed], [y_of(r) for r in mixed], "o--", ms=4,
            color="tab:blue", label="planner's mixes (front)")
    uniform = [r for r in rows if r["kind"] == "uniform"]
    ax.scatter([r["bytes"] / 1024 for r in uniform], [y_of(r) for r in uniform], marker="s",
               s=30, color="tab:gray", zorder=3, label="one scheme everywhere")
    chosen = [r for r in rows if r["chosen"]]
    ax.scatter([r["bytes"] / 1024 for r in chosen], [y_of(r) for r in chosen], marker="*",
               s=180, color="tab:red", zorder=4, label="chosen")
    _log_kib_axis(ax)
    ax.set_xlabel("weight memory (KiB, log scale)")
    ax.set_ylabel(score_label or "output SQNR vs float32 (dB, higher is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    legend = ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.tight_layout()
    points = [(r["bytes"] / 1024, y_of(r)) for r in uniform]
    place_labels(fig, ax, points, [r["mix"].replace("uniform ", "") for r in uniform],
                 avoid=[legend], markers=[(r["bytes"] / 1024, y_of(r)) for r in mixed])
    return _save(fig, plt, path)


def _save(fig, plt, path):
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_all(report, out_dir):
    """Every plot of ``report`` into ``out_dir``: ``{"pareto": [...], "layers": [...],
    "latency": [...], "plan": [...]}`` lists of the PNG paths written."""
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
    drawn["plan"] = [p for p in (_plan_plot(report, model, out_dir) for model in models) if p]
    return drawn


def _plan_plot(report, model, out_dir):
    """The planner's front of ``model`` when the report ran the planner on it."""
    found = getattr(report, "plans", {}).get(model)
    if not isinstance(found, dict):
        return None
    safe = model.replace(":", "_").replace("/", "_")
    return plan_front(found["table"], f"{model}: mixed precision ({found['caption']})",
                      os.path.join(out_dir, f"plan_{safe}.png"), found.get("score_label"),
                      found.get("sign", 1.0))
