"""docs/adding-an-op.md, proven from outside the package: a quantized op with a CPU kernel
(``qsigmoid``: a 256-entry table) and a fused activation (``relu6``) go through trace ->
quantize -> calibrate -> compile, bit-exact against the reference evaluation at every stage.

Each ``register_*`` call below stands for the one place the doc names for it."""
import numpy as np
import pytest

import needle as ndl
import needle_qc as qc
from needle import nn, ops
from needle_qc import opset
from needle_qc.ir.pattern import Rule
from needle_qc.lower.common import _qp
from needle_qc.lower.program import Impl
from needle_qc.lower.registry import register_builder, unregister_builder
from needle_qc.opset.activations import Activation, register_activation, unregister_activation
from needle_qc.opset.quant_eval import _tensor, node_qparams
from needle_qc.quantize.passes import fuse_qdq
from needle_qc.quantize.qparams import CONTAINER, qrange
from needle_qc.quantize.reference import dequantize_linear, quantize_linear, round_half_even

# ----------------------------------------------------------------------------- qsigmoid


def qsigmoid_reference(q, s_in, z_in, s_y, z_y, dtype):
    """quantize(sigmoid(dequantize(q))) in float32, ONNX quantize semantics."""
    x = dequantize_linear(q, np.float32(s_in), np.asarray(z_in, q.dtype))
    y = (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
    return quantize_linear(y, np.float32(s_y), np.asarray(z_y, CONTAINER[dtype]))


def qsigmoid_rule(metas, attrs):  # 1. the op row: shape rule, evaluation, traits
    return metas[0]["shape"], attrs["dtype"]


def eval_qsigmoid(inputs, attrs, ctx):
    (s_in, z_in), (s_y, z_y) = node_qparams(ctx.node.inputs[0]), node_qparams(ctx.node)
    return _tensor(qsigmoid_reference(inputs[0].numpy(), s_in, z_in, s_y, z_y, attrs["dtype"]),
                   ctx)


QSIGMOID = opset.OpDef("qsigmoid", 1, {"dtype": "str"}, qsigmoid_rule,
                       "quantize(sigmoid(dequantize(q))) with per-tensor qparams.",
                       eval_qsigmoid, {"dtype": "uint8"},
                       opset.Traits(integer=True, layout_free=True))


def fuse_qsigmoid(quant):  # 2. the fuse-qdq rule
    """quantize(sigmoid(dequantize(q))) -> qsigmoid(q)."""
    sig = quant.inputs[0]
    if sig.op != "sigmoid" or len(sig.users) != 1 or sig.inputs[0].op != "dequantize":
        return False
    dq = sig.inputs[0]
    if len(dq.inputs) != 1 or dq.inputs[0].meta.get("dtype") not in ("uint8", "int8"):
        return False
    graph = quant.graph
    with graph.inserting_before(quant):
        new = graph.call("qsigmoid", [dq.inputs[0]], {"dtype": quant.attrs["dtype"]},
                         name=f"{sig.name}_int")
    new.meta["qparams"] = dict(quant.meta["qparams"])
    quant.replace_all_uses_with(new)
    graph.erase(quant)
    graph.erase(sig)
    return True


def build_qsigmoid(ctx, node):  # 3. the lowering builder (the CPU kernel: a table lookup)
    x_node = node.inputs[0]
    (s_in, z_in), (s_y, z_y) = _qp(x_node), _qp(node)
    lo, hi = qrange(x_node.meta["dtype"])
    domain = np.arange(lo, hi + 1).astype(CONTAINER[x_node.meta["dtype"]])
    table = qsigmoid_reference(domain, s_in, z_in, s_y, z_y, node.attrs["dtype"])

    def fn(x):
        return table[x.astype(np.int16) - lo]
    layout = ctx.layout.get(x_node.name, "logical")
    return Impl("qsigmoid (256-entry table)", "exact: the table is the reference on every input",
                fn, [ctx.value(x_node, layout)], layout, kind="int8")


# ----------------------------------------------------------------------------- relu6

RELU6 = Activation(  # 4. a fused activation: one table entry, no branch per layer
    "relu6",
    on_tensor=lambda ops_, t: ops_.relu(t) - ops_.relu(t + (-6.0)),
    on_array=lambda y: np.minimum(np.maximum(y, np.float32(0)), np.float32(6)),
    clamp=lambda s_y, z_y, qmin, qmax: (
        z_y, min(qmax, z_y + int(round_half_even(np.float32(6) / np.float32(s_y))))),
)


@pytest.fixture
def extended(monkeypatch):
    opset.register_op(QSIGMOID)
    register_builder("qsigmoid", build_qsigmoid)
    register_activation(RELU6)
    monkeypatch.setattr(fuse_qdq, "RULES", fuse_qdq.RULES + (
        Rule("quantize", fuse_qsigmoid, in_place=True),))
    yield
    opset.unregister_op("qsigmoid")
    unregister_builder("qsigmoid")
    unregister_activation("relu6")


class SigmoidMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 16), nn.Linear(16, 5)

    def forward(self, x):
        return self.fc2(ops.sigmoid(self.fc1(x)))


def _batches(count, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((8, 12)).astype(np.float32) for _ in range(count)]


def test_quantized_sigmoid_end_to_end(extended):
    np.random.seed(0)
    graph = qc.trace(SigmoidMLP(), ndl.Tensor(_batches(1, 0)[0], device=ndl.cpu()))
    prepared = qc.quantize_pass(graph, qc.QConfig(weight="int8", activation="static"))
    qc.calibrate(prepared, _batches(4, 1), progress=False)
    integer = qc.to_integer(prepared)
    assert [n.op for n in integer.find("qsigmoid")] == ["qsigmoid"]
    assert not integer.find("sigmoid")
    text = str(integer)
    assert str(qc.Graph.parse(text)) == text and "qsigmoid(%fc1" in text
    x = _batches(1, 9)[0]
    reference = qc.compile(prepared, target="reference")(x)
    compiled = qc.compile(prepared)
    kernels = {row["node"]: row["kernel"] for row in compiled.explain().rows}
    assert "table" in " ".join(kernels.values())
    np.testing.assert_array_equal(np.asarray(compiled(x)), np.asarray(reference))
    qdq = qc.compile(prepared, stop_after="qdq")(x)  # the op is as close as the QDQ oracle
    assert np.abs(np.asarray(compiled(x)) - np.asarray(qdq)).max() < 0.1


RELU6_GRAPH = """\
%x = placeholder() : f32[N,12]
%w1 = param() {tensor="w1"} : f32[12,16]
%b1 = param() {tensor="b1"} : f32[16]
%fc1 = linear(%x, %w1, %b1) {activation="relu6"} : f32[N,16]
%w2 = param() {tensor="w2"} : f32[16,5]
%fc2 = linear(%fc1, %w2) : f32[N,5]
return %fc2"""


def _relu6_graph():
    g = qc.Graph.parse(RELU6_GRAPH)
    rng = np.random.default_rng(3)
    g.tensors.update(w1=rng.standard_normal((12, 16)).astype(np.float32) * 2,
                     b1=rng.standard_normal(16).astype(np.float32),
                     w2=rng.standard_normal((16, 5)).astype(np.float32))
    return g.lint()


@pytest.mark.parametrize("scheme", [
    {"weight": "int8", "activation": "static"},
    {"weight": "int8", "activation": "dynamic"},
    {"weight": "int4", "group_size": 4},
])
def test_fused_relu6_end_to_end(extended, scheme):
    g = _relu6_graph()
    x = _batches(1, 5)[0]
    h = x @ g.tensors["w1"] + g.tensors["b1"]
    assert h.max() > 6 and h.min() < 0  # both clamps are exercised
    float_out = qc.compile(g)(x)
    expected = np.minimum(np.maximum(h, 0), 6) @ g.tensors["w2"]
    np.testing.assert_allclose(np.asarray(float_out), expected, rtol=1e-5, atol=1e-5)
    prepared = qc.quantize_pass(g, qc.QConfig(**scheme))
    qc.calibrate(prepared, _batches(4, 6), progress=False)
    compiled, reference = qc.compile(prepared), qc.compile(prepared, target="reference")
    np.testing.assert_array_equal(np.asarray(compiled(x)), np.asarray(reference(x)))
    assert np.abs(np.asarray(compiled(x)) - expected).max() < 0.1 * np.abs(expected).max()
    fc1 = qc.to_integer(prepared).node("fc1")
    if scheme.get("activation") == "static":  # the clamp is in the integer layer itself
        assert fc1.op == "qlinear" and fc1.attrs["activation"] == "relu6"
    else:  # split off a weight-only / dynamic layer as the generic activation op
        assert [u.op for u in fc1.users] == ["activation"]
