"""dynamic + reduce_range: activations quantized per call over [0, 127] (torch's x86 dynamic
linear), the IR attr only when set, the kernel's fast path proven and bit-identical to the
op-table evaluation, export refused by name."""

import numpy as np
import pytest

import needle_qc as qc
from needle_qc.lower.common import _kernels
from needle_qc.quantize import QConfig, dynamic_quantize_per_token, quantize_weight
from needle_qc.quantize.api import quantize_pass
from needle_qc.quantize.reference import dynamic_qparams, dynamic_quantize_linear, \
    dynamic_quantize_u8
from tests.needle_qc.quantize.qpass_models import batches, convnet, mlp, node_values

SEVEN = QConfig(weight="int8", activation="dynamic", reduce_range=True)
EIGHT = QConfig(weight="int8", activation="dynamic")


def _edge_inputs():
    rng = np.random.default_rng(5)
    yield rng.standard_normal((7, 33)).astype(np.float32)
    yield np.abs(rng.standard_normal((3, 5))).astype(np.float32)  # no negatives: zp 0
    yield -np.abs(rng.standard_normal((2, 9))).astype(np.float32)  # no positives: zp 127
    yield np.zeros((4, 4), np.float32)  # degenerate range: (1, 0)
    yield np.full((1, 3), 3e38, np.float32)
    yield np.array([[-0.0, 1e-45, -1e-45, 0.5]], np.float32)  # -0 and subnormals


@pytest.mark.parametrize("i", range(6))
def test_seven_bit_reference_formula(i):
    x = list(_edge_inputs())[i]
    q, s, z = dynamic_quantize_u8(x, 127)
    lo, hi = min(np.float32(0), x.min()), max(np.float32(0), x.max())
    want_s = np.float32(np.float32(hi - lo) / np.float32(127)) if hi > lo else np.float32(1)
    assert s == want_s and 0 <= int(z) <= 127 and q.max() <= 127
    assert (s, z) == dynamic_qparams(x.min(), x.max(), 127)
    np.testing.assert_array_equal(  # QuantizeLinear with the 7-bit clamp
        q, np.clip(np.rint(np.divide(x, s, dtype=np.float32)) + int(z), 0, 127).astype(np.uint8))
    q8, s8, z8 = dynamic_quantize_u8(x, 255)  # the default is ONNX's, unchanged
    r8, rs8, rz8 = dynamic_quantize_linear(x)
    np.testing.assert_array_equal(q8, r8)
    assert (s8, z8) == (rs8, rz8)
    with pytest.raises(ValueError, match="qmax=63"):
        dynamic_quantize_u8(x, 63)


def test_per_token_seven_bit_rows_are_the_per_tensor_formula():
    x = next(_edge_inputs())
    q, s, z = dynamic_quantize_per_token(x, 127)
    for row in range(x.shape[0]):
        qr, sr, zr = dynamic_quantize_u8(x[row], 127)
        np.testing.assert_array_equal(q[row], qr)
        assert (s[row], z[row]) == (sr, zr)


def test_attr_printed_only_when_set():
    assert 'granularity="per_tensor", reduce_range=True' in str(quantize_pass(mlp(), SEVEN))
    assert "reduce_range" not in str(quantize_pass(mlp(), EIGHT))  # unchanged text
    text = str(quantize_pass(convnet(), SEVEN))
    assert text.count("reduce_range=True") == 3  # two conv2d_dynamic and the linear


def test_seven_bit_numbers_are_the_documented_formula():
    g = mlp()
    q = quantize_pass(g, SEVEN)
    x = batches((6, 4), count=1)[0]
    qw = quantize_weight(g.tensors["fc1.weight"], "int8")
    xq, s, z = dynamic_quantize_u8(x, 127)
    acc = ((xq.astype(np.int64) - int(z)) @ qw.q.astype(np.int64)).astype(np.int32)
    want = acc.astype(np.float32) * np.multiply(s, qw.scale, dtype=np.float32)
    want = np.maximum(want + g.tensors["fc1.bias"], 0)
    np.testing.assert_array_equal(node_values(q, x)["fc1_relu"], want)


@pytest.mark.skipif(_kernels() is None, reason="native _quant_cpu module not built")
@pytest.mark.parametrize("model", [mlp, convnet])
def test_compiled_takes_the_fast_path_with_the_evaluation_bits(model):
    q = quantize_pass(model(), SEVEN)
    ref = qc.compile(q, target="reference", tune_kernels=False)
    cm = qc.compile(q, target="cpu", force_int8=True, tune_kernels=False)
    shape = (5, 4) if model is mlp else (3, 1, 6, 6)
    for x in batches(shape, count=3):
        np.testing.assert_array_equal(np.asarray(cm(x)), np.asarray(ref(x)))
    if model is mlp:
        assert cm.explain().row("fc1")["why"].startswith("fast path proven: activations in [0, 127]")


@pytest.mark.skipif(_kernels() is None, reason="native _quant_cpu module not built")
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (7, 33, 17), (13, 64, 48), (6, 5, 16)])
def test_bound_kernel_equals_the_formula_on_edges(per_row, m, k, n):
    kernels = _kernels()
    rng = np.random.default_rng(m * k * n)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    w[:, 0] = -127  # the largest pair sums the proof allows
    scale = rng.uniform(1e-3, 1e-2, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    bound = kernels.bind_linear_dynamic(kernels.pack_weight_s8(w), scale, bias, per_row,
                                        reduce_range=True)
    assert bound.fast_path
    for x in [rng.standard_normal((m, k)).astype(np.float32), np.zeros((m, k), np.float32),
              np.full((m, k), -2.5, np.float32), np.full((m, k), 3e38, np.float32)]:
        if per_row:
            xq, s, z = dynamic_quantize_per_token(x, 127)
            centred, s = xq.astype(np.int64) - z.astype(np.int64)[:, None], s[:, None]
        else:
            xq, s, z = dynamic_quantize_u8(x, 127)
            centred = xq.astype(np.int64) - int(z)
        acc = (centred @ w.astype(np.int64)).astype(np.int32).astype(np.float32)
        with np.errstate(over="ignore"):  # 3e38 inputs: products overflow to inf alike
            want = np.add(acc * np.multiply(s, scale, dtype=np.float32), bias, dtype=np.float32)
        np.testing.assert_array_equal(bound(x), want)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[-1, -1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        bound(x)


def test_export_refuses_seven_bit_dynamic_by_name():
    from needle_qc.tools.export_onnx import export_onnx

    with pytest.raises(ValueError, match=r"%fc1: 7-bit dynamic activations \(reduce_range\)"):
        export_onnx(quantize_pass(mlp(), SEVEN))
