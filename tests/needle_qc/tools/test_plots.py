"""Report plots: Pareto labels never overlap, per-layer bars include dynamic convs, capped
bars are marked."""
import itertools

import pytest

from needle_qc.tools import plots
from needle_qc.tools.report import LayerRow, ReportRow


def _pareto_rows():
    """The small_cnn cluster of the committed report: int8-dyn/int8-static/uint8-affine share
    39.6 KiB and lie 2-4 dB apart; int8-w/uint8-w share 38.1 KiB (their labels overlapped)."""
    points = [("fp32", 115.8, 136.8), ("fp16", 76.3, 73.9), ("bf16", 76.3, 59.8),
              ("int8-w", 38.1, 48.7), ("uint8-w", 38.1, 47.8), ("int4-g32", 19.1, 25.2),
              ("int8-dyn", 39.6, 45.6), ("int8-static", 39.6, 41.4),
              ("uint8-affine", 39.6, 39.0)]
    return [ReportRow("toy", s, "t", measured_bytes=int(kib * 1024),
                      theoretical_bytes=kib * 760, sqnr_db=db) for s, kib, db in points]


def test_pareto_labels_do_not_overlap(tmp_path, monkeypatch):
    placed = {}
    real = plots.place_labels

    def spy(fig, ax, points, labels, **kw):
        notes = real(fig, ax, points, labels, **kw)
        renderer = fig.canvas.get_renderer()
        placed["boxes"] = [n.get_window_extent(renderer) for n in notes]
        placed["texts"] = [n.get_text() for n in notes]
        return notes

    monkeypatch.setattr(plots, "place_labels", spy)
    assert plots.pareto(_pareto_rows(), "toy", str(tmp_path / "p.png"))
    assert len(placed["boxes"]) == 9 and "fp32 (exact)" in placed["texts"]
    for (i, a), (j, b) in itertools.combinations(enumerate(placed["boxes"]), 2):
        assert not a.overlaps(b), (placed["texts"][i], placed["texts"][j])


def test_layer_bars_include_dynamic_convs_and_mark_capped_bars(tmp_path):
    rows = [LayerRow("toy", "int8-dyn", "conv", "conv2d_dynamic", 46.2, 46.2),
            LayerRow("toy", "int8-dyn", "fc", "linear_dynamic", 51.3, 46.8),
            LayerRow("toy", "int4-g32", "conv", "conv2d_weight_only", 148.2, 148.2),
            LayerRow("toy", "int4-g32", "fc", "linear_weight_only", 31.5, 25.3)]
    layers, present, value, total = plots.layer_table(rows, "toy")
    assert layers == ["conv", "fc"] and present == ["int4-g32", "int8-dyn"] and total == 2
    assert value[("conv", "int8-dyn")] == pytest.approx(46.2)
    assert value[("conv", "int4-g32")] == plots.SQNR_CAP_DB
    assert plots.layer_sqnr(rows, "toy", str(tmp_path / "l.png"))

    plt = plots._pyplot()
    fig, ax = plt.subplots()
    bars = ax.bar([0, 1], [plots.SQNR_CAP_DB, 40.0])
    plots._mark_capped(ax, bars, [plots.SQNR_CAP_DB, 40.0])
    hatched = [p for p in ax.patches if p.get_hatch() == "//"]
    assert len(hatched) == 1 and hatched[0].get_x() == pytest.approx(bars[0].get_x())
    assert [t.get_text() for t in ax.texts] == [">=120"]
    plt.close(fig)


def test_a_real_report_measures_dynamic_convs():
    """small_cnn int8-dyn: every conv of the float graph has a per-layer row (they were
    missing from the plots: the relu split off a dynamic conv hid the layer)."""
    from needle_qc.tools import report

    rep = report.run(["small_cnn"], ["fp32", "int8-dyn"], quick=True, progress=False)
    ops = {r.layer: r.op for r in rep.layers if r.scheme == "int8-dyn"}
    convs = [name for name, op in ops.items() if op == "conv2d_dynamic"]
    assert len(convs) == 3 and ops["layers.modules.4"] == "linear_dynamic"
    layers, _present, value, _total = plots.layer_table(rep.layers, "small_cnn")
    assert all((name, "int8-dyn") in value for name in convs)
