"""Interpreter: exact evaluation of every op, symbolic batch, inputs, errors, subclassing."""

import numpy as np
import pytest

import needle as ndl
from needle import nn, ops
from needle_qc import opset
from needle_qc.capture.tracer import trace
from needle_qc.errors import IRError
from needle_qc.ir.graph import Graph
from needle_qc.ir.interpreter import Interpreter
from tests.devices import DEVICES


def _tensor(array, device=None):
    return ndl.Tensor(array, device=device or ndl.cpu_numpy(), requires_grad=False)


def linear_graph():
    g = Graph()
    x = g.placeholder("x", ("N", 3), "float32")
    w = g.param("w", np.arange(6, dtype=np.float32).reshape(3, 2) / 4)
    b = g.param("b", np.array([[0.5, -1.0]], np.float32))
    y = g.call("relu", [g.call("linear", [x, w, b])])
    g.output(y)
    return g


def test_hand_built_graph_matches_numpy_and_returns_tensors():
    g = linear_graph()
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    want = np.maximum(x @ g.tensors["w"] + g.tensors["b"], 0)
    out = g(x, device=ndl.cpu_numpy())
    assert isinstance(out, ndl.Tensor) and out.shape == (5, 2)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(Interpreter(g).run(_tensor(x)).numpy(), out.numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_device_of_its_inputs(device):
    g = linear_graph()
    x = _tensor(np.ones((2, 3), np.float32), device)
    out = g(x)
    assert out.device == device
    np.testing.assert_array_equal(out.numpy(), g(np.ones((2, 3), np.float32), device=device)
                                  .numpy())


@pytest.mark.parametrize("batch", [1, 8, 1000])
def test_symbolic_shapes_resolve_per_run(batch):
    g = Graph()
    x = g.placeholder("x", (3, "N"), "float32")
    zeros = g.call("full", [], {"shape": (3, "N"), "value": 2.0, "dtype": "float32"})
    flat = g.call("reshape", [g.call("add", [x, zeros])], {"shape": ("3*N",)})
    back = g.call("reshape", [flat], {"shape": (-1, 3)})
    g.output((flat, back))
    data = np.arange(3 * batch, dtype=np.float32).reshape(3, batch)
    flat_out, back_out = g(data, device=ndl.cpu_numpy())
    np.testing.assert_array_equal(flat_out.numpy(), (data + 2).reshape(-1))
    assert back_out.shape == (batch, 3)


class Primitives(nn.Module):
    """Touches every Needle primitive op the IR has a row for."""

    def forward(self, x, y):
        a = ops.exp(ops.negate(x)) + ops.log(ops.relu(y) + 1.0)
        a = ops.power(ops.exp(ops.maximum(a * y / (x * x + 1.0), ops.tanh(x)) * 0.1), y)
        a = ops.divide_scalar(ops.mul_scalar(ops.power_scalar(a, 2), 0.5), 3.0)
        s = ops.sigmoid(a) + ops.broadcast_to(ops.summation(a, axes=(1,)).reshape((4, 1)),
                                              (4, 6))
        m = ops.max(s, axes=(0,), keepdims=True) + ops.logsumexp(s, axes=(0,)).reshape((1, 6))
        t = ops.transpose(ops.permute(s.reshape((4, 2, 3)), (1, 0, 2)), (0, 2))
        parts = ops.split(ops.flip(t, (1,)), axis=0)
        st = ops.stack([parts[0], parts[2]], axis=0) @ ops.transpose(parts[1])
        d = ops.undilate(ops.dilate(st, (1,), 1), (1,), 1)
        img = ops.reshape(s, (1, 4, 6, 1))
        w = ops.reshape(x[0:3, 0:3], (3, 3, 1, 1))
        conv = ops.conv(img, w, stride=1, padding=1)
        return (ops.logsoftmax(s) + ops.broadcast_to(m, (4, 6)), d, conv, x[1, 2:5],
                ops.astype(s, "float16"))


def test_every_primitive_evaluates_exactly_like_eager():
    rng = np.random.default_rng(0)
    x = _tensor(rng.standard_normal((4, 6)).astype(np.float32))
    y = _tensor(rng.standard_normal((4, 6)).astype(np.float32))
    model = Primitives()
    graph = trace(model, x, y, batch_dims=None)
    used = {n.op for n in graph.nodes}
    for op in ["exp", "negate", "log", "relu", "add_scalar", "maximum", "mul", "div", "tanh",
               "pow", "power_scalar", "mul_scalar", "div_scalar", "sigmoid", "summation",
               "broadcast_to", "max", "logsumexp", "transpose", "permute", "split", "flip",
               "stack", "matmul", "dilate", "undilate", "conv", "logsoftmax", "getitem",
               "astype", "tuple_get_item"]:
        assert op in used, op
    for want, got in zip(model(x, y), graph(x, y)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_input_errors_name_the_placeholder_and_type():
    g = linear_graph()
    with pytest.raises(IRError, match=r"graph takes 1 inputs \(%x\), got 2"):
        g(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(IRError, match=r"input %x has shape \(2, 4\); expected f32\[N,3\]"):
        g(np.ones((2, 4), np.float32))
    with pytest.raises(IRError, match="rank differs"):
        g(np.ones((2, 3, 1), np.float32))
    two = Graph()
    a = two.placeholder("a", ("N", 2), "float32")
    b = two.placeholder("b", ("N", 2), "float32")
    two.output(two.call("add", [a, b]))
    with pytest.raises(IRError, match="batch dim 3 disagrees"):
        two(np.ones((2, 2), np.float32), np.ones((3, 2), np.float32))


def test_missing_tensor_and_unevaluable_op_are_clear_errors():
    g = linear_graph()
    del g.tensors["w"]
    with pytest.raises(IRError, match="%w: tensor 'w' missing from graph.tensors"):
        g(np.ones((1, 3), np.float32))
    opset.register_op(opset.OpDef("test_no_eval", 1, {}, opset.unary_rule, "No evaluate."),
                      replace=True)
    try:
        g = Graph()
        g.output(g.call("test_no_eval", [g.placeholder("x", (2,), "float32")], name="odd"))
        with pytest.raises(IRError, match="%odd: op test_no_eval has no evaluation rule"):
            g(np.ones(2, np.float32))
    finally:
        opset.unregister_op("test_no_eval")


class RecordingInterpreter(Interpreter):
    """Remembers the max |value| of every node, like a calibration observer would."""

    def __init__(self, graph, device=None):
        super().__init__(graph, device)
        self.seen = {}

    def call_op(self, node, inputs):
        out = super().call_op(node, inputs)
        self.seen[node.name] = float(np.abs(out.numpy()).max())
        return out


def test_subclass_can_observe_every_node():
    g = linear_graph()
    interp = RecordingInterpreter(g, device=ndl.cpu_numpy())
    out = interp.run(np.ones((2, 3), np.float32))
    assert list(interp.seen) == ["w", "b", "linear", "relu"]
    assert interp.seen["relu"] == float(out.numpy().max())
    assert interp.batch_size == 2 and interp.node is None


def test_param_tensors_are_cached_until_the_array_is_replaced():
    g = linear_graph()
    x = np.ones((1, 3), np.float32)
    first = g(x, device=ndl.cpu_numpy()).numpy()
    cached = dict(g._param_cache)
    g(x, device=ndl.cpu_numpy())
    assert all(g._param_cache[k][1] is v[1] for k, v in cached.items())
    g.tensors["b"] = g.tensors["b"] + 10.0  # passes replace arrays, never mutate them
    np.testing.assert_array_equal(g(x, device=ndl.cpu_numpy()).numpy(), first + 10.0)
