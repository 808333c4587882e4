"""``fuse-lstm-cell``: the unrolled Needle LSTM becomes one ``lstm_cell`` per step (IR text
before/after), the interpreter's numbers stay bit-identical, and the compiled fused cell
stays within float32 rounding of the unfused graph."""

import collections

import numpy as np
import pytest

import needle as ndl
import needle_qc as qc
from needle_qc.passes import run_passes

UNFUSED = ["fold-batchnorm", "fuse-activations", "cse", "dce"]


def _lstm_graph(bias=True, layers=2, steps=3, n=4):
    np.random.seed(0)
    model = ndl.nn.LSTM(5, 6, num_layers=layers, bias=bias)
    x = np.random.default_rng(0).normal(size=(steps, n, 5)).astype(np.float32)
    return qc.trace(model, x, batch_dims=1), x


def _flat(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flat(v)]
    return [np.asarray(value.numpy() if hasattr(value, "numpy") else value)]


def _trace_step(step, arrays):
    module = ndl.nn.Module()
    module.forward = step
    return qc.trace(module, *arrays, batch_dims=None)


def _ops(graph):
    return collections.Counter(n.op for n in graph.nodes)


@pytest.mark.parametrize("bias", [True, False])
def test_fuses_every_step_and_keeps_the_bits(bias):
    graph, x = _lstm_graph(bias)
    before = graph.copy()
    run_passes(before, UNFUSED)
    assert _ops(before)["matmul"] == 12 and "lstm_cell" not in _ops(before)
    after = graph.copy()
    run_passes(after, qc.FLOAT_PIPELINE)
    ops = _ops(after)
    assert ops["lstm_cell"] == 6 and not {"matmul", "sigmoid", "tanh", "mul"} & set(ops)
    text = str(after)
    b = ", %lstm_cells.0.bias_ih, %lstm_cells.0.bias_hh" if bias else ""
    first = [line for line in text.splitlines() if line.startswith("%lstm_cell = ")][0]
    assert first.startswith("%lstm_cell = lstm_cell(%tuple_get_item, %const, %const, "
                            f"%lstm_cells.0.W_ih, %lstm_cells.0.W_hh{b})"), first
    assert first.endswith('{gate_order="ifgo"} : (f32[N,6], f32[N,6])')
    for a, b_ in zip(_flat(before(x)), _flat(after(x))):
        assert np.array_equal(a, b_)  # the row evaluates the same Needle ops


def test_compiled_cell_within_float_rounding():
    graph, x = _lstm_graph()
    before, after = graph.copy(), graph.copy()
    run_passes(before, UNFUSED)
    run_passes(after, qc.FLOAT_PIPELINE)
    cu, cf = qc.compile(before), qc.compile(after)
    assert any(s.op == "lstm_layer" and "C++" in s.impl.kernel for s in cf.program.steps)
    for a, b in zip(_flat(cu(x)), _flat(cf(x))):
        assert np.abs(a - b).max() <= 4e-7 * max(1.0, float(np.abs(a).max()))


def test_gate_order_read_from_the_dataflow():
    # the same step written with the gates in order g, o, i, f of the 4H axis ("goif")
    def step(x, h, c, w_ih, w_hh):
        ops = ndl.ops
        z = ops.reshape(x @ w_ih + h @ w_hh, (2, 4, 3))
        g, o, i, f = ops.split(z, 1)
        sig = ndl.nn.Sigmoid()
        c2 = c * sig(f) + ops.tanh(g) * sig(i)
        return ops.tanh(c2) * sig(o)

    rng = np.random.default_rng(1)
    shapes = [(2, 4), (2, 3), (2, 3), (4, 12), (3, 12)]
    arrays = [rng.normal(size=s).astype(np.float32) for s in shapes]
    graph = _trace_step(step, arrays)
    want = _flat(graph(*arrays))
    run_passes(graph, qc.FLOAT_PIPELINE)
    cells = graph.find("lstm_cell")
    assert len(cells) == 1 and cells[0].attrs["gate_order"] == "goif"
    assert np.array_equal(_flat(graph(*arrays))[0], want[0])


def test_leaves_a_step_whose_gates_are_read_elsewhere():
    def step(x, h, c, w_ih, w_hh):
        ops = ndl.ops
        z = x @ w_ih + h @ w_hh
        i, f, g, o = ops.split(ops.reshape(z, (2, 4, 3)), 1)
        sig = ndl.nn.Sigmoid()
        c2 = sig(f) * c + sig(i) * ops.tanh(g)
        return sig(o) * ops.tanh(c2) + ops.summation(z, axes=(1,)).reshape((2, 1)) \
            .broadcast_to((2, 3))

    rng = np.random.default_rng(2)
    shapes = [(2, 4), (2, 3), (2, 3), (4, 12), (3, 12)]
    arrays = [rng.normal(size=s).astype(np.float32) for s in shapes]
    graph = _trace_step(step, arrays)
    run_passes(graph, qc.FLOAT_PIPELINE)
    assert not graph.find("lstm_cell")


class _CourseLSTM(ndl.nn.Module):
    """An LSTM layer as course code writes it: the sigmoid spelled out (the course's Sigmoid
    module, ``(1 + exp(-v)) ** -1``) and the two biases added before broadcasting."""

    def __init__(self, inputs=5, hidden=6):
        super().__init__()
        rng = np.random.default_rng(3)

        def param(*shape):
            return ndl.nn.Parameter(rng.uniform(-0.5, 0.5, shape).astype(np.float32))

        self.W_ih, self.W_hh = param(inputs, 4 * hidden), param(hidden, 4 * hidden)
        self.bias_ih, self.bias_hh = param(4 * hidden), param(4 * hidden)
        self.hidden = hidden

    def forward(self, x):
        ops, n, k = ndl.ops, x.shape[1], self.hidden
        h = c = ndl.init.zeros(n, k, device=x.device)
        sig = lambda v: (1 + ops.exp(-v)) ** -1  # noqa: E731
        outs = []
        for x_t in ops.split(x, 0):
            z = x_t @ self.W_ih + h @ self.W_hh
            z = z + (self.bias_ih + self.bias_hh).reshape((1, 4 * k)).broadcast_to((n, 4 * k))
            i, f, g, o = ops.split(ops.reshape(z, (n, 4, k)), 1)
            c = sig(f) * c + sig(i) * ops.tanh(g)
            h = sig(o) * ops.tanh(c)
            outs.append(h)
        return ops.stack(outs, 0)


def test_course_style_step_fuses():
    x = np.random.default_rng(4).normal(size=(3, 4, 5)).astype(np.float32)
    graph = qc.trace(_CourseLSTM(), x, batch_dims=1)
    before, after = graph.copy(), graph.copy()
    run_passes(before, UNFUSED)
    ops = _ops(before)
    assert ops["power_scalar"] == 9 and ops["matmul"] == 6 and "sigmoid" not in ops
    run_passes(after, qc.FLOAT_PIPELINE)
    ops = _ops(after)
    assert ops["lstm_cell"] == 3
    assert not {"matmul", "power_scalar", "exp", "negate", "add_scalar", "mul"} & set(ops)
    lines = str(after).splitlines()
    assert "%add_1 = add(%bias_ih, %bias_hh) : f32[24]" in lines  # CSE: one for all steps
    cells = [line for line in lines if " = lstm_cell(" in line]
    assert cells[0] == ("%lstm_cell = lstm_cell(%tuple_get_item, %const, %const, %W_ih, %W_hh, "
                        '%add_1, %add_1_zero_partner) {gate_order="ifgo"} : (f32[N,6], f32[N,6])')
    assert cells[2].startswith("%lstm_cell_2 = lstm_cell(%tuple_get_item_2, %lstm_cell_1_h, "
                               "%lstm_cell_1_c, %W_ih, %W_hh, %add_1, %add_1_zero_partner)")
    # the row's sigmoid op instead of the spelled-out formula: float32 rounding, not bits
    want, got = _flat(before(x))[0], _flat(after(x))[0]
    assert np.abs(want - got).max() <= 1e-6 and not np.array_equal(want, np.zeros_like(want))
    fused = qc.compile(after)
    assert all("C++" in s.impl.kernel for s in fused.program.steps if s.op == "lstm_cell")
    assert np.abs(_flat(fused(x))[0] - want).max() <= 1e-6
    dyn = qc.compile(qc.quantize_pass(graph, qc.QConfig(weight="int8", activation="dynamic")))
    assert sum(s.op == "qlstm_layer" and "C++" in s.impl.kernel for s in dyn.program.steps) == 1
    assert np.abs(_flat(dyn(x))[0] - want).max() < 0.05
