"""needle_qc.tools.report and plots: a tiny report run checked for consistency, plots."""
import math
import os

import numpy as np
import pytest

import needle as ndl
from needle_qc.tools import plots, report, zoo
from needle_qc.tools.report import LayerRow, Report, ReportRow

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

MODELS = ["mlp", "small_cnn"]
# Schemes whose layers all have a kernel for the weight's own format on these models.
PACKED = {("mlp", "fp16"), ("mlp", "bf16"), ("mlp", "int4-g32"), ("mlp", "int8-dyn"),
          ("mlp", "int8-static"), ("small_cnn", "int8-dyn"), ("small_cnn", "int8-static"),
          ("mlp", "uint8-affine"), ("small_cnn", "uint8-affine")}


@pytest.fixture(scope="module")
def rep():
    return report.run(models=MODELS, quick=True, progress=False, seed=0)


@pytest.fixture(scope="module")
def written(rep, tmp_path_factory):
    return rep.write(str(tmp_path_factory.mktemp("report")))


def test_one_row_per_model_and_scheme_and_all_succeed(rep):
    assert [(r.model, r.scheme) for r in rep] == [(m, s) for m in MODELS for s in report.SCHEMES]
    failed = [f"{r.model}/{r.scheme}: {r.error}" for r in rep if not r.ok]
    assert not failed, failed


def test_fp32_baseline_is_exact_and_unit_speed(rep):
    for model in MODELS:
        row = rep.row(model, "fp32")
        assert row.measured_bytes == row.theoretical_bytes == 4 * row.weight_count
        assert row.bits_per_weight == 32 and row.speedup == 1.0
        assert row.sqnr_db > 100 and row.top1_agreement == 1.0


@pytest.mark.parametrize("model,scheme", sorted(PACKED))
def test_these_schemes_have_kernels_for_every_layer(rep, model, scheme):
    assert not rep.row(model, scheme).fallback_layers


def test_measured_weight_bytes_match_theory_plus_documented_packing(rep):
    checked = [r for r in rep if not r.fallback_layers and not r.duplicate_layers]
    assert len(checked) >= len(PACKED) + len(MODELS)
    for row in checked:
        assert row.theoretical_bytes <= row.measured_bytes <= 1.01 * row.max_packed_bytes, \
            (row.model, row.scheme, row.theoretical_bytes, row.measured_bytes)


def test_theoretical_bytes_follow_the_data_type(rep):
    for model in MODELS:
        n = rep.row(model, "fp32").weight_count
        assert rep.row(model, "fp16").theoretical_bytes == 2 * n
        assert rep.row(model, "int8-static").theoretical_bytes == n
        assert rep.row(model, "int4-g32").theoretical_bytes == n / 2


def test_fallback_layers_are_reported_as_fp32_not_hidden(rep, monkeypatch):
    """A layer the compiler keeps in fp32 (here: int8 made to measure slower) counts at fp32
    bytes and is marked, never hidden behind its declared data type."""
    from needle_qc.lower import driver as lowering
    from needle_qc.pipeline import compile
    from needle_qc.quantize.api import calibrate, quantize_pass

    for r in rep:
        if r.fallback_layers:
            assert r.measured_bytes > r.theoretical_bytes
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 2.0 if kind == "int8" else 1.0)
    model, _ = report.load_model("mlp")
    prepared = quantize_pass(report.trace_model("mlp", model),
                             report.SCHEMES["uint8-affine"].qconfig())
    calibrate(prepared, [zoo.example_input("mlp", 8, seed) for seed in range(2)],
              progress=False)
    mem = report.memory_of(compile(prepared, autotune=True), 8)
    assert len(mem["fallback_layers"]) == 3
    assert mem["measured_bytes"] >= 4 * mem["theoretical_bytes"]
    table = report.text_table([ReportRow("mlp", "uint8-affine", "t", **mem)])
    line, = (x for x in table.splitlines() if x.startswith("uint8-affine"))
    assert "*" in line and "mlp uint8-affine: 3 layer(s) kept as fp32 by the compiler" in table


def test_int8_deviates_more_than_fp16(rep):
    for model in MODELS:
        fp16, int8 = rep.row(model, "fp16"), rep.row(model, "int8-static")
        assert int8.rel_l2 > fp16.rel_l2 and int8.sqnr_db < fp16.sqnr_db
        assert rep.row(model, "int4-g32").sqnr_db < rep.row(model, "int8-w").sqnr_db


def test_accuracy_within_bounds(rep):
    for model in MODELS:
        base = rep.row(model, "fp32").score
        assert 0.9 < base <= 1.0
        for r in rep:
            if r.model == model:
                assert r.metric == "accuracy" and abs(r.score - base) < 0.04, (r.scheme, r.score)
                assert r.top1_agreement > 0.95 and r.cosine > 0.99


def test_layer_rows_cover_the_quantized_layers(rep):
    static = [r for r in rep.layers if r.model == "small_cnn" and r.scheme == "int8-static"]
    assert [r.op for r in static] == ["qconv2d"] * 3 + ["qlinear"]
    assert all(15 < r.local_sqnr_db < 80 for r in static)
    assert not any(r.scheme == "fp32" for r in rep.layers)


def test_runtime_accounting_matches_the_allocator_for_fp32():
    model, _ = report.load_model("mlp")
    graph = report.trace_model("mlp", model)
    before = ndl.cpu().memory_stats()["current_bytes"]
    cm = report.compile_scheme(graph, report.SCHEMES["fp32"], [])
    grown = ndl.cpu().memory_stats()["current_bytes"] - before
    assert grown == report.memory_of(cm, 8)["measured_bytes"]


def test_write_makes_markdown_json_and_nonblank_pngs(written):
    import matplotlib.image as mpimg

    text = open(written["markdown"]).read()
    assert "| int8-static |" in text and "pareto_mlp.png" in text and "latency.png" in text
    pngs = [p for paths in written["plots"].values() for p in paths]
    assert len(pngs) == 2 * len(MODELS) + 1
    for path in pngs:
        assert os.path.getsize(path) > 5000
        image = mpimg.imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 500 and float(np.std(image)) > 0.05


def test_text_table_lists_every_scheme_and_marks_fallbacks(rep):
    table = rep.table("mlp")
    for scheme in report.SCHEMES:
        assert f"\n{scheme} " in table
    fallbacks = [r for r in rep if r.model == "mlp" and r.fallback_layers]
    assert ("kept as fp32 by the compiler" in table) == bool(fallbacks)
    for r in fallbacks:
        assert f"\n{r.scheme} " in table and f"mlp {r.scheme}: {len(r.fallback_layers)}" in table


def test_run_rejects_unknown_names():
    with pytest.raises(KeyError, match="unknown model 'vgg'.*mlp, small_cnn"):
        report.run(models=["vgg"], quick=True, progress=False)
    with pytest.raises(KeyError, match="unknown scheme.*int3.*valid: fp32, fp16"):
        report.run(models=["mlp"], schemes=["int3"], quick=True, progress=False)


def test_run_rejects_missing_cuda():
    if ndl.cuda().enabled():
        pytest.skip("a GPU is present: cuda is a valid device here")
    with pytest.raises(ValueError, match="'cuda' is not available"):
        report.run(models=["mlp"], schemes=["fp32"], device="cuda", progress=False)


def test_a_failing_scheme_becomes_an_error_row(monkeypatch):
    real = report.compile_scheme

    def broken(graph, scheme, *args, **kwargs):
        if scheme.name == "int8-dyn":
            raise ValueError("no kernel today\nsecond line")
        return real(graph, scheme, *args, **kwargs)

    monkeypatch.setattr(report, "compile_scheme", broken)
    rep = report.run(models=["mlp"], schemes=["fp32", "int8-dyn"], quick=True, progress=False,
                     layers=False)
    assert rep.row("mlp", "fp32").ok
    assert rep.row("mlp", "int8-dyn").error == "ValueError: no kernel today"
    assert "FAILED: ValueError: no kernel today" in rep.table()


def test_packing_allowance_documents_panel_padding():
    assert report.packing_allowance("int8", 784, 256) == 16 * 256
    assert report.packing_allowance("int8", 256, 10) == 256 * 16 - 2560 + 160
    assert report.packing_allowance("float16", 256, 16) == 0
    assert report.packing_allowance("int4", 64, 16, 32) == 0
    assert report.packing_allowance("int4", 64, 10, 32) == 6 * 64 / 2
    assert report.packing_allowance("float32", 7, 3) == 0


# ----------------------------------------------------------------------------- plots

def _synthetic():
    rows, layers = [], []
    for i, (scheme, kib, sqnr) in enumerate([("fp32", 100, math.inf), ("fp16", 50, 70.0),
                                             ("int8-static", 25, 40.0), ("int4-g32", 14, 25.0),
                                             ("bf16", 52, 60.0)]):
        rows.append(ReportRow("toy", scheme, "t", measured_bytes=kib * 1024,
                              theoretical_bytes=kib * 1000, sqnr_db=sqnr, latency_ms=1.0 + i,
                              speedup=1 / (1.0 + i), batch=64))
        layers += [LayerRow("toy", scheme, f"fc{j}", "qlinear", sqnr - j, sqnr - 2 * j)
                   for j in range(3)]
    return Report(rows, layers, {})


def test_pareto_front_keeps_only_undominated_points():
    points = [(100, 120), (50, 70), (25, 40), (14, 25), (52, 60)]
    assert plots._pareto_front(points) == [3, 2, 1, 0]


def test_plots_of_synthetic_rows(tmp_path):
    drawn = plots.plot_all(_synthetic(), str(tmp_path))
    assert [os.path.basename(p) for p in drawn["pareto"] + drawn["layers"] + drawn["latency"]] \
        == ["pareto_toy.png", "layers_toy.png", "latency.png"]
    for paths in drawn.values():
        assert all(os.path.getsize(p) > 5000 for p in paths)


def test_plots_skip_a_model_without_usable_rows(tmp_path):
    rep = Report([ReportRow("toy", "int8-w", "t", error="ValueError: x")], [], {})
    assert plots.plot_all(rep, str(tmp_path)) == {"pareto": [], "layers": [], "latency": [],
                                                  "plan": []}


@pytest.mark.slow
def test_missing_checkpoint_is_trained_once_and_cached(tmp_path, monkeypatch):
    from needle_qc.tools import zoo

    monkeypatch.setattr(zoo, "CHECKPOINT_DIR", str(tmp_path / "none"))
    cache = tmp_path / "cache"
    model, how = report.load_model("mlp", cache_dir=str(cache), epochs=1, progress=False)
    assert how.startswith("trained here") and (cache / "mlp.npz").exists()
    again, how = report.load_model("mlp", cache_dir=str(cache), progress=False)
    assert how.startswith("cached")
    x = zoo.batches("mlp", "heldout", 500, limit=1)[0]
    logits = again(ndl.Tensor(x[0], device=again.parameters()[0].device)).numpy()
    assert np.mean(logits.argmax(axis=1) == x[1]) > 0.85
