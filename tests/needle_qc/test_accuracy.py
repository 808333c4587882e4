"""Accuracy and memory of every data type on the committed zoo checkpoints vs float32.

Bounds (the issue's): on the 2,000 held-out MNIST digits, MLP and SmallCNN lose at most 0.3
top-1 points with static int8 (per-channel weights; logits SQNR >= 25 dB), dynamic int8 and
uint8 weights (symmetric and affine), at most 1.5 points with int4 group-32 weights, and fp16
weights keep the logits at SQNR >= 60 dB (bf16, not in the issue: >= 45 dB). The PTB language
models keep their perplexity within 2 % under dynamic int8. Weight bytes are exactly 1/4
(8-bit), 1/8 (4-bit) and 1/2 (fp16) of fp32, with the qparams counted apart. Every measured
number is printed in a summary at the end of the module (on the terminal unless under xdist).
"""
import math

import numpy as np
import pytest

import needle as ndl
from needle import quantization
from needle_qc.tools import zoo
from needle_qc.tools.compare import deviation

RESULTS = []
CALIBRATION_BATCHES = 8  # x 64 training digits
LM_EVAL_BATCHES = 12  # x (20 tokens x 16 streams) of ptb.test


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    lines = ["", "accuracy vs float32 (committed checkpoints, held-out data; change = top-1 "
             "points, or perplexity %)",
             f"{'model':<16}{'config':<38}{'float':>10}{'quant':>10}{'change':>9}"
             f"{'SQNR dB':>9}{'top-1 agr':>10}"]
    for r in (r for r in RESULTS if "bytes" not in r):
        lines.append(f"{r['model']:<16}{r['config']:<38}{r['float']:>10.4g}{r['quant']:>10.4g}"
                     f"{r['change']:>+9.3f}{r['sqnr_db']:>9.1f}{_pct(r['top1']):>10}")
    lines += ["", "MLP layer weights as stored (qparams apart)",
              f"{'dtype':<10}{'fp32 B':>10}{'weight B':>10}{'ratio':>8}{'qparam B':>10}"
              f"{'bits/w':>8}"]
    for r in (r for r in RESULTS if "bytes" in r):
        lines.append(f"{r['dtype']:<10}{r['float32_bytes']:>10}{r['bytes']:>10}"
                     f"{r['bytes'] / r['float32_bytes']:>8.4f}{r['qparam_bytes']:>10}"
                     f"{r['bits_per_weight']:>8.3f}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():  # shown even without -s (not under xdist)
        print("\n".join(lines))


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}%"


class _Float:
    """A zoo model with its float32 held-out score and logits (computed once per module)."""

    cache = {}

    @classmethod
    def of(cls, name):
        if name not in cls.cache:
            cls.cache[name] = cls(name)
        return cls.cache[name]

    def __init__(self, name):
        self.name = name
        self.model = zoo.load_pretrained(name)
        device = self.model.parameters()[0].device
        self.limit = LM_EVAL_BATCHES if zoo.get(name).task == "language_model" else None
        self.score = zoo.evaluate(name, lambda x: self.model(ndl.Tensor(x, device=device)),
                                  batch_size=500, limit=self.limit)
        self.calibration = zoo.batches(name, "train", 64, limit=CALIBRATION_BATCHES)

    def quantized(self, config, **kwargs):
        if kwargs.get("activation") == "static":
            kwargs["calibration_data"] = self.calibration
        qm = quantization.quantize(self.model, force_int8=True,
                                   example_input=zoo.example_input(self.name, 8), **kwargs)
        score = zoo.evaluate(self.name, qm, batch_size=500, limit=self.limit)
        d = deviation(self.score["logits"], score["logits"])
        metric = "perplexity" if "perplexity" in score else "accuracy"
        row = {"model": self.name, "config": config, "float": self.score[metric],
               "quant": score[metric], "sqnr_db": d["sqnr_db"], "top1": d["top1_agreement"]}
        row["change"] = (100 * (row["quant"] - row["float"]) if metric == "accuracy"
                         else 100 * (row["quant"] / row["float"] - 1))
        RESULTS.append(row)
        return row, qm


MNIST_MODELS = ["mlp", pytest.param("small_cnn", marks=pytest.mark.slow)]
CASES = {
    "int8 static per-channel": (dict(data_type="int8", activation="static"), 0.3, 25.0),
    "int8 dynamic": (dict(data_type="int8", activation="dynamic"), 0.3, None),
    "fp16 weight-only": (dict(data_type="float16"), 0.3, 60.0),
    "bf16 weight-only": (dict(data_type="bfloat16"), 0.3, 45.0),
    "int4 group-32 weight-only": (dict(data_type="int4", group_size=32), 1.5, None),
    "uint8 symmetric weight-only": (dict(data_type="uint8"), 0.3, None),
    "uint8 affine weight-only": (dict(data_type="uint8", weight_symmetric=False), 0.3, None),
    "int8 static, int8 sym. activations": (
        dict(data_type="int8", activation="static", activation_dtype="int8",
             activation_symmetric=True), 0.3, 25.0),
    "uint8 affine w, static uint8 act.": (
        dict(data_type="uint8", activation="static", weight_symmetric=False), 0.3, 25.0),
}


@pytest.mark.parametrize("config", list(CASES))
@pytest.mark.parametrize("name", MNIST_MODELS)
def test_mnist_accuracy_drop_is_bounded(name, config):
    kwargs, max_drop, min_sqnr = CASES[config]
    row, _ = _Float.of(name).quantized(config, **kwargs)
    assert row["float"] > 0.95, "the committed checkpoint should be trained"
    assert row["change"] >= -max_drop, row
    if min_sqnr is not None:
        assert row["sqnr_db"] >= min_sqnr, row


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm_lm", "transformer_lm"])
def test_language_model_dynamic_int8_perplexity_within_two_percent(name):
    row, qm = _Float.of(name).quantized("int8 dynamic", data_type="int8", activation="dynamic")
    assert "linear_dynamic" in {n.op for n in qm.graph.nodes}
    vocab = qm.graph.output_node.inputs[0].meta["shape"][-1]
    assert math.isfinite(row["quant"]) and row["float"] < vocab / 5  # far better than uniform
    assert abs(row["change"]) <= 2.0, row


# ----------------------------------------------------------------------------- memory

MLP_WEIGHTS = 784 * 256 + 256 * 256 + 256 * 10
MLP_CHANNELS = 256 + 256 + 10


@pytest.mark.parametrize("data_type, kwargs, ratio, qparam_bytes", [
    ("int8", {}, 4, 4 * MLP_CHANNELS),                       # one fp32 scale per channel
    ("uint8", {"weight_symmetric": False}, 4, 5 * MLP_CHANNELS),  # + a uint8 zero point
    ("int4", {"group_size": 32}, 8, 4 * (25 * 256 + 8 * 256 + 8 * 10)),  # ceil(K/32) x N
    ("float16", {}, 2, 0),
])
def test_weight_bytes_are_exactly_as_predicted(data_type, kwargs, ratio, qparam_bytes):
    model = _Float.of("mlp").model
    qm = quantization.quantize(model, data_type, example_input=zoo.example_input("mlp", 4),
                               **kwargs)
    report = qm.memory_report()
    (dtype, row), = report.rows.items()
    assert dtype == {"float16": "float16"}.get(data_type, data_type)
    assert row["weights"] == MLP_WEIGHTS
    assert row["float32_bytes"] == 4 * MLP_WEIGHTS
    assert row["bytes"] * ratio == row["float32_bytes"]
    assert row["qparam_bytes"] == qparam_bytes
    assert row["bits_per_weight"] == pytest.approx(8 * (row["bytes"] + qparam_bytes)
                                                   / MLP_WEIGHTS)
    RESULTS.append(dict(row, dtype=dtype))


def test_static_int8_keeps_per_channel_scales():
    model = _Float.of("mlp")
    qm = quantization.quantize(model.model, "int8", "static", calibration_data=model.calibration)
    scales = [qm.graph.tensors[n.inputs[2].attrs["tensor"]] for n in qm.graph.find("qlinear")]
    assert [s.shape for s in scales] == [(256,), (256,), (10,)]
    assert all(np.unique(s).size > 1 for s in scales)
