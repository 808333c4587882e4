"""Weight-only lowering: every weight dtype runs a packed kernel (no fp32 copy), = interpreter."""

import numpy as np
import pytest

from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from tests.needle_qc.quantize.qpass_models import batches, build

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

# C_in = 3 (< every group size), 12 (padded to whole groups of 8, whole groups of 4), K = 320.
NET = """\
%x = placeholder() : f32[N,3,8,8]
%conv1.weight = param() {tensor="conv1.weight"} : f32[3,3,3,12]
%conv1.bias = param() {tensor="conv1.bias"} : f32[12]
%conv1 = conv2d(%x, %conv1.weight, %conv1.bias) {stride=1, padding=1} : f32[N,12,8,8]
%relu = relu(%conv1) : f32[N,12,8,8]
%conv2.weight = param() {tensor="conv2.weight"} : f32[3,3,12,20]
%conv2 = conv2d(%relu, %conv2.weight) {stride=2, padding=1} : f32[N,20,4,4]
%relu_1 = relu(%conv2) : f32[N,20,4,4]
%flatten = reshape(%relu_1) {shape=(N, 320)} : f32[N,320]
%fc.weight = param() {tensor="fc.weight"} : f32[320,18]
%fc.bias = param() {tensor="fc.bias"} : f32[18]
%fc = linear(%flatten, %fc.weight, %fc.bias) : f32[N,18]
return %fc"""

# (weight name, rows of the flattened [K, N] weight, N, C_in or None for the linear)
LAYERS = [("conv1", 27, 12, 3), ("conv2", 108, 20, 12), ("fc", 320, 18, None)]
CONFIGS = {
    "int8": dict(weight="int8"),
    "int8-tensor": dict(weight="int8", weight_granularity="per_tensor"),
    "int8-group8": dict(weight="int8", weight_granularity="per_group", group_size=8),
    "uint8": dict(weight="uint8"),
    "uint8-affine": dict(weight="uint8", weight_symmetric=False),
    "int4-g8": dict(weight="int4", group_size=8),
    "int4-g4": dict(weight="int4", group_size=4),
    "int4-affine": dict(weight="int4", group_size=8, weight_symmetric=False),
    "uint4-g8": dict(weight="uint4", group_size=8),
    "uint4-affine": dict(weight="uint4", group_size=4, weight_symmetric=False),
    "fp16": dict(weight="fp16"),
    "bf16": dict(weight="bf16"),
}
PAYLOAD_BITS = {"int8": 8, "uint8": 8, "int4": 4, "uint4": 4, "fp16": 16, "bf16": 16}


def compiled(cfg):
    return compile(quantize_pass(build(NET, seed=3), QConfig(**cfg)), force_int8=True)


def x_of(batch, seed=5):
    return batches((batch, 3, 8, 8), 1, seed=seed)[0]


@pytest.fixture(scope="module", params=list(CONFIGS))
def case(request):
    return request.param, compiled(CONFIGS[request.param])


@pytest.mark.parametrize("batch", [1, 7])
def test_compiled_matches_interpreter_within_fp32_rounding(case, batch):
    _, cm = case
    x = x_of(batch)
    want = cm.graph(x).numpy()
    got = cm(x)
    assert got.shape == want.shape == (batch, 18) and got.dtype == np.float32
    # Different fp32 summation orders (kernel FMA in k order vs BLAS): a few ulps of the
    # magnitudes summed; 2e-5 relative to the output scale bounds K <= 320 terms comfortably.
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_every_weight_only_layer_runs_a_packed_kernel(case):
    name, cm = case
    steps = {s.node: s for s in cm.program.steps}
    for layer, *_ in LAYERS:
        impl = steps[layer].active
        assert impl.kind == "int8", (name, layer, impl.kernel, impl.why)
        assert "gemm_f32_w" in impl.kernel and "gemm_f32_w" in cm.explain().row(layer)["kernel"]
        assert all(rec.dtype != "float32" for rec in impl.weights)
    assert "float32" not in cm.memory_report().weights


def expected_bytes(name):
    """(weights, theoretical, measured payload) summed over the layers, panels padded to 16."""
    cfg = CONFIGS[name]
    bits, g = PAYLOAD_BITS[cfg["weight"]], cfg.get("group_size", 32)
    one_byte = name.endswith("4-affine")  # q - z reaches past [-8, 7]: one per byte (int8 kernel)
    count = theory = measured = 0
    for _, rows, n, cin in LAYERS:
        count += rows * n
        theory += rows * n * bits // 8
        grouped = bits == 4 or cfg.get("weight_granularity") == "per_group"
        if grouped and cin is not None and cin > g and cin % g:
            rows = rows // cin * (cin + (-cin) % g)  # C_in padded to whole groups
        measured += rows * -(-n // 16) * 16 * (8 if one_byte else bits) // 8
    return count, theory, measured


def test_memory_report_counts_packed_bytes_exactly(case):
    name, cm = case
    dtype = {"fp16": "float16", "bf16": "bfloat16"}.get(CONFIGS[name]["weight"],
                                                       CONFIGS[name]["weight"])
    (got_dtype, row), = cm.memory_report().weights.items()
    count, theory, measured = expected_bytes(name)
    assert got_dtype == dtype
    assert row["weights"] == count and row["theoretical_bytes"] == theory
    assert row["measured_bytes"] == measured
    biases = 4 * (12 + 18)
    if dtype in ("float16", "bfloat16"):
        assert row["qparam_bytes"] == biases
    else:
        assert row["qparam_bytes"] > biases


WIDE = """\
%x = placeholder() : f32[N,64]
%fc.weight = param() {tensor="fc.weight"} : f32[64,32]
%fc = linear(%x, %fc.weight) : f32[N,32]
return %fc"""


@pytest.mark.parametrize("weight,ratio,scale_bytes", [
    ("int8", 4, 4 * 32), ("uint8", 4, 4 * 32), ("int4", 8, 4 * 2 * 32), ("fp16", 2, 0),
    ("bf16", 2, 0)])
def test_packed_bytes_are_the_theoretical_fraction_of_fp32(weight, ratio, scale_bytes):
    """With N a multiple of the 16-column panel: int8 = 1/4, int4 = 1/8, fp16 = 1/2 + scales."""
    cm = compile(quantize_pass(build(WIDE), QConfig(weight=weight)), force_int8=True)
    (row,) = cm.memory_report().weights.values()
    assert row["measured_bytes"] * ratio == 4 * 64 * 32 == row["theoretical_bytes"] * ratio
    assert row["qparam_bytes"] == scale_bytes  # symmetric: scales only (uint8: z = 128 folded)
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(cm(x), cm.graph(x).numpy(), rtol=2e-5, atol=1e-5)


def test_float_version_is_lazy_and_released_when_the_kernel_is_kept(monkeypatch):
    from needle_qc.lower import driver as lowering

    def measure(kind, fn):
        fn()
        return {"int8": 1.0, "float": 2.0}[kind]

    monkeypatch.setattr(lowering, "measure", measure)
    g = quantize_pass(build(NET, seed=3), QConfig(weight="int8"))
    cm = compile(g, calibration=None, autotune=True)
    step = next(s for s in cm.program.steps if s.node == "fc")
    assert step.choice == "primary" and step.alternative is not None
    assert step.alternative.fn.release.__self__.mm is None  # no fp32 weight kept after tuning
