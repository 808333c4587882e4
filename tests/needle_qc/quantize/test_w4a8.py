"""W4A8: int4 weights (symmetric, per output channel) with static int8 activations.

The integer graph stores the int4 values two per byte (``weight_dtype="int4"``); the int8
kernels run them from the unpacked int8 panel. Compiled = the op table's reference evaluation
bit for bit, the file holds the 4-bit payload, and the memory report tells both sizes.
"""

import numpy as np
import pytest

from needle_qc.ir.graph import Graph
from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import calibrate, convert, quantize_pass, to_integer
from needle_qc.quantize.lowbit import unpack_int4
from needle_qc.runtime import serialize
from needle_qc.runtime.memory import WeightMemory
from tests.needle_qc.quantize.qpass_models import batches, build, node_values

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

W4A8 = QConfig(weight="int4", activation="static")

# odd reduction lengths (K = 37, C_in = 5) so the last byte holds one value and a pad nibble
LINEAR = """\
%x = placeholder() : f32[N,37]
%fc1.weight = param() {tensor="fc1.weight"} : f32[37,19]
%fc1.bias = param() {tensor="fc1.bias"} : f32[19]
%fc1 = linear(%x, %fc1.weight, %fc1.bias) : f32[N,19]
%relu = relu(%fc1) : f32[N,19]
%fc2.weight = param() {tensor="fc2.weight"} : f32[19,6]
%fc2 = linear(%relu, %fc2.weight) : f32[N,6]
return %fc2"""

CONV = """\
%x = placeholder() : f32[N,5,7,7]
%conv1.weight = param() {tensor="conv1.weight"} : f32[3,3,5,6]
%conv1.bias = param() {tensor="conv1.bias"} : f32[6]
%conv1 = conv2d(%x, %conv1.weight, %conv1.bias) {stride=1, padding=1} : f32[N,6,7,7]
%relu = relu(%conv1) : f32[N,6,7,7]
%conv2.weight = param() {tensor="conv2.weight"} : f32[3,3,6,4]
%conv2.bias = param() {tensor="conv2.bias"} : f32[4]
%conv2 = conv2d(%relu, %conv2.weight, %conv2.bias) {stride=2, padding=1} : f32[N,4,4,4]
return %conv2"""

MODELS = {"linear": (LINEAR, (37,)), "conv": (CONV, (5, 7, 7))}


def _prepared(kind, act_dtype="uint8"):
    text, tail = MODELS[kind]
    prepared = quantize_pass(build(text, seed=4), W4A8.replace(activation_dtype=act_dtype))
    calibrate(prepared, batches((6,) + tail), progress=False)
    return prepared, batches((5,) + tail, 1, seed=9)[0]


def test_w4a8_config_is_per_channel_and_group_wise_is_refused_naming_the_alternative():
    assert W4A8.resolved_weight_granularity == "per_channel"
    with pytest.raises(ValueError, match="W4A8.*per_channel.*weight_granularity='per_channel'"):
        QConfig(weight="int4", activation="static", weight_granularity="per_group")
    with pytest.raises(ValueError, match="W4A8 .*symmetric int4"):
        QConfig(weight="int4", activation="static", weight_symmetric=False)
    with pytest.raises(ValueError, match="static activations need int8/uint8"):
        QConfig(weight="uint4", activation="static")


@pytest.mark.parametrize("act_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_w4a8_compiles_to_int8_kernels_bit_exact_with_the_reference(kind, act_dtype):
    prepared, x = _prepared(kind, act_dtype)
    cm = compile(prepared, force_int8=True)
    layers = [n for n in cm.graph.nodes if n.op in ("qlinear", "qconv2d")]
    assert len(layers) == 2 and all(n.attrs["weight_dtype"] == "int4" for n in layers)
    for node in layers:
        w, k = node.inputs[1], node.inputs[0].meta["shape"][-1 if node.op == "qlinear" else 1]
        red = 0 if node.op == "qlinear" else 2
        assert w.meta["dtype"] == "uint8" and w.meta["shape"][red] == (k + 1) // 2
        values = unpack_int4(cm.graph.tensors[w.attrs["tensor"]], k, axis=red)
        assert values.min() >= -7 and values.max() <= 7
        row = cm.explain().row(node.name)
        assert row["status"].startswith("int8") and "int4 weights" in row["why"], row
    want, got = node_values(cm.graph, x), cm.node_values(x)
    for node in layers:
        np.testing.assert_array_equal(got[node.name], want[node.name], err_msg=node.name)
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_packed_node_evaluates_as_the_same_layer_with_int8_weights(kind):
    """The op table: ``weight_dtype="int4"`` on packed bytes = the plain i8 layer on the
    unpacked values (the integers the QDQ graph dequantizes)."""
    prepared, x = _prepared(kind)
    packed = to_integer(prepared)
    text, tensors = str(packed), dict(packed.tensors)
    for node in [n for n in packed.nodes if n.op in ("qlinear", "qconv2d")]:
        w = node.inputs[1]
        k = node.inputs[0].meta["shape"][-1 if node.op == "qlinear" else 1]
        red = 0 if node.op == "qlinear" else 2
        values = unpack_int4(tensors[w.attrs["tensor"]], k, axis=red)
        tensors[w.attrs["tensor"]] = values
        old = "u8[" + ",".join(map(str, w.meta["shape"])) + "]"
        new = "i8[" + ",".join(map(str, values.shape)) + "]"
        text = text.replace(f"{w.attrs['tensor']}\"}} : {old}", f"{w.attrs['tensor']}\"}} : {new}")
    plain = Graph.parse(text.replace(', weight_dtype="int4"', ""), tensors)
    assert "weight_dtype" not in str(plain)
    assert sum(p.meta["dtype"] == "int8" for p in plain.find("param")) == 2
    np.testing.assert_array_equal(packed(x).numpy(), plain(x).numpy())


@pytest.mark.parametrize("kind", list(MODELS))
def test_w4a8_is_close_to_its_qdq_oracle(kind):
    prepared, x = _prepared(kind)
    want = convert(prepared)(x).numpy()
    np.testing.assert_allclose(compile(prepared)(x), want, atol=0.02 * np.abs(want).max())


def test_w4a8_file_round_trip_is_identical_and_holds_the_int4_payload(tmp_path):
    prepared, x = _prepared("linear")
    cm = compile(prepared)
    path = tmp_path / "w4a8.nqc"
    cm.save(path)
    back = serialize.load(path)
    np.testing.assert_array_equal(back(x), cm(x))
    _, tensors = serialize._read(str(path))
    fc1 = [n for n in back.graph.nodes if n.op == "qlinear"][0]
    stored = tensors[fc1.inputs[1].attrs["tensor"]]
    assert stored.dtype == np.uint8 and stored.shape == (19, 19)  # ceil(37 / 2) rows of bytes
    assert not any(t.dtype == np.int8 for t in tensors.values())  # no unpacked copy in the file
    assert sum(t.nbytes for t in tensors.values() if t.dtype == np.uint8) == 19 * 19 + 10 * 6


def test_memory_report_shows_int4_theory_and_the_resident_int8_panel():
    prepared, _ = _prepared("linear")
    cm = compile(prepared)
    row = cm.memory_report().weights["int4 in int8"]
    count = 37 * 19 + 19 * 6
    assert row["weights"] == count and row["theoretical_bytes"] == count / 2
    assert row["measured_bytes"] >= count  # the int8 panel the kernels keep
    stored = WeightMemory(cm.graph).rows["int4"]
    assert stored["bytes"] == 19 * 19 + 10 * 6  # packed along K: ceil(37/2) x 19, ceil(19/2) x 6
