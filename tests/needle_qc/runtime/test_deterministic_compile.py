"""Issue 14: compile is deterministic by default; autotune is explicit and announced."""

import threading
import warnings

import numpy as np
import pytest

from needle_qc.ir.graph import Graph
from needle_qc.lower import driver as lowering
from needle_qc.pipeline import KeptFloatWarning, compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from needle_qc.runtime.serialize import load, save
from tests.needle_qc.quantize.qpass_models import batches, convnet, mlp

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

STATIC = QConfig(weight="int8", activation="static")


class _BusyThread:
    """A thread spinning in Python while the compile runs (an artificially loaded machine)."""

    def __enter__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        return self

    def _spin(self):
        x = np.ones((64, 64), np.float32)
        while not self.stop.is_set():
            x = x @ x * np.float32(1e-3)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_same_model_twice_under_cpu_load_gives_identical_bytes(tmp_path):
    prepared = quantize_pass(convnet(), STATIC)
    paths = []
    for i in range(2):
        with _BusyThread():
            cm = compile(prepared, calibration=batches((5, 1, 6, 6)))
        paths.append(tmp_path / f"m{i}.nqc")
        save(cm, paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert cm.tuning is None and all(not s.times for s in cm.program.steps)
    assert set(cm.choices().values()) == {"primary"}


def test_default_compile_never_times(monkeypatch):
    def refuse(kind, fn):
        raise AssertionError("compile() timed a kernel without autotune=True")

    monkeypatch.setattr(lowering, "measure", refuse)
    cm = compile(quantize_pass(mlp(), STATIC), calibration=batches((5, 4)))
    assert cm.float_layers() == {}


def test_autotune_records_times_apart_and_choices_replay(monkeypatch, tmp_path):
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 2.0 if kind == "int8" else 1.0)
    prepared = quantize_pass(mlp(), STATIC)
    with pytest.warns(KeptFloatWarning, match=r"2 layer\(s\).*%fc1.*force_int8=True"):
        tuned = compile(prepared, calibration=batches((5, 4)), autotune=True)
    assert tuned.tuning.to_dict()["choices"] == {"fc1": "alternative", "fc2": "alternative"}
    report = str(tuned.memory_report())
    assert "kept float: %fc1" in report and "kept float: %fc2" in report
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 1.0 if kind == "int8" else 2.0)
    with pytest.warns(KeptFloatWarning):
        replay = compile(prepared, calibration=batches((5, 4)), choices=tuned.tuning.choices)
    assert replay.choices() == tuned.choices() and replay.tuning is None
    save(tuned, tmp_path / "a.nqc")
    save(replay, tmp_path / "b.nqc")
    assert (tmp_path / "a.nqc").read_bytes() == (tmp_path / "b.nqc").read_bytes()


def test_old_tune_kernels_name_still_means_autotune(monkeypatch):
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 1.0 if kind == "int8" else 2.0)
    cm = compile(quantize_pass(mlp(), STATIC), calibration=batches((5, 4)), tune_kernels=True)
    assert cm.tuning is not None and set(cm.tuning.times) == {"fc1", "fc2"}


def test_layer_that_cannot_be_quantized_is_announced():
    """A dynamic conv kept float (per-token granularity) warns and shows in memory_report."""
    cfg = QConfig(weight="int8", activation="dynamic", activation_granularity="per_token")
    with pytest.warns(KeptFloatWarning, match="conv1"):
        cm = compile(quantize_pass(convnet(), cfg))
    assert "conv1" in cm.float_layers()
    assert "kept float: %conv1" in str(cm.memory_report())


def test_no_warning_when_every_layer_is_quantized():
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeptFloatWarning)
        compile(quantize_pass(mlp(), STATIC), calibration=batches((5, 4)))


QMATMUL = """\
%a = placeholder() : f32[N,2,{k}]
%b = placeholder() : f32[N,{k},2]
%a_q = quantize(%a) {{dtype="uint8"}} : u8[N,2,{k}]{{s=0.1, z=0}}
%b_q = quantize(%b) {{dtype="uint8"}} : u8[N,{k},2]{{s=0.1, z=0}}
%mm = qmatmul(%a_q, %b_q) {{dtype="float32"}} : f32[N,2,2]
return %mm"""


def test_qmatmul_that_can_overflow_is_refused_at_compile():
    g = Graph.parse(QMATMUL.format(k=40000)).lint()
    with pytest.raises(ValueError, match=r"%mm \(qmatmul\): the int32 accumulator could "
                                         r"overflow.*keep this matmul float"):
        compile(g)


def test_qmatmul_within_the_bound_compiles_and_runs():
    g = Graph.parse(QMATMUL.format(k=64)).lint()
    cm = compile(g)
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 2, 64), np.float32), rng.random((3, 64, 2), np.float32)
    np.testing.assert_array_equal(cm(a, b), g(a, b).numpy())


def test_loaded_model_with_kept_float_layers_warns(monkeypatch, tmp_path):
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 2.0 if kind == "int8" else 1.0)
    with pytest.warns(KeptFloatWarning):
        cm = compile(quantize_pass(mlp(), STATIC), calibration=batches((5, 4)), autotune=True)
    save(cm, tmp_path / "m.nqc")
    with pytest.warns(KeptFloatWarning, match="fc1"):
        load(tmp_path / "m.nqc")


def test_replayed_choices_must_name_known_layers():
    prepared = quantize_pass(mlp(), STATIC)
    with pytest.raises(ValueError, match=r"choices\['fc9'\] = 'alternative'.*\['fc1', 'fc2'\]"):
        compile(prepared, calibration=batches((5, 4)), choices={"fc9": "alternative"})
    with pytest.raises(ValueError, match=r"choices\['fc1'\] = 'fast'"):
        compile(prepared, calibration=batches((5, 4)), choices={"fc1": "fast"})
