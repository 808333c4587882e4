"""Tracer: every reference model traces, lints, round-trips as text and equals eager exactly."""

import numpy as np
import pytest

import needle as ndl
import needle.models as models
from needle import nn, ops
from needle_qc.capture.tracer import trace
from needle_qc.errors import TraceError
from needle_qc.ir.graph import Graph
from tests.devices import DEVICES


def _images(channels, size):
    return lambda rng, b: rng.standard_normal((b, channels, size, size)).astype(np.float32)


def _ids(rng, b):
    return rng.integers(0, 11, size=(5, b)).astype(np.float32)


# name -> (model factory(device), input maker(rng, batch), batch dim, batch sizes to run)
MODELS = {
    "mlp": (lambda d: models.MLP(784, (32,), 10, device=d), _images(1, 28), 0, (1, 8, 1000)),
    "small_cnn": (lambda d: models.SmallCNN(device=d), _images(1, 28), 0, (1, 8)),
    "resnet9": (lambda d: models.ResNet9(device=d), _images(3, 32), 0, (1, 8)),
    "mlp_resnet": (lambda d: models.MLPResNet(20, 16, 2, 5, device=d),
                   lambda rng, b: rng.standard_normal((b, 20)).astype(np.float32), 0,
                   (1, 8, 1000)),
    "lm_rnn": (lambda d: models.LanguageModel(8, 11, 6, 2, "rnn", device=d), _ids, 1,
               (1, 8, 1000)),
    "lm_lstm": (lambda d: models.LanguageModel(8, 11, 6, 2, "lstm", device=d), _ids, 1,
                (1, 8, 1000)),
    "lm_transformer": (lambda d: models.LanguageModel(8, 11, 6, 1, "transformer", seq_len=10,
                                                      device=d), _ids, 1, (1, 8)),
}
HEAVY = [name for name, row in MODELS.items() if 1000 not in row[3]]


def _flat_numpy(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flat_numpy(v)]
    return [value.numpy()]


def _structure(value):
    if isinstance(value, (tuple, list)):
        return tuple(_structure(v) for v in value)
    return type(value).__name__


def _tensor(array, device):
    return ndl.Tensor(array, device=device, requires_grad=False)


# every model on every device (cpu_numpy, cpu, cuda), skipped visibly where a backend is missing
MODEL_DEVICES = [pytest.param((name, dev.values[0]), marks=dev.marks, id=f"{name}-{dev.id}")
                 for dev in DEVICES for name in MODELS]


@pytest.fixture(scope="module", params=MODEL_DEVICES)
def traced(request):
    name, device = request.param
    make, data, batch_dim, batches = MODELS[name]
    np.random.seed(0)
    model = make(device)
    rng = np.random.default_rng(0)
    graph = trace(model, _tensor(data(rng, 4), device), batch_dims=batch_dim)
    return name, model, graph, data, batches, device


def test_traced_graph_lints_and_round_trips(traced):
    _, _, graph, *_ = traced
    graph.lint()
    again = Graph.parse(str(graph), tensors=graph.tensors)
    again.lint()
    assert str(again) == str(graph)


def test_traced_graph_equals_eager_bit_for_bit_at_any_batch(traced):
    name, model, graph, data, batches, device = traced
    rng = np.random.default_rng(1)
    model.eval()
    for batch in batches:
        x = _tensor(data(rng, batch), device)
        want, got = model(x), graph(x)
        assert _structure(got) == _structure(want), name
        for w, g in zip(_flat_numpy(want), _flat_numpy(got)):
            np.testing.assert_array_equal(g, w, err_msg=f"{name} at batch {batch}")


@pytest.mark.slow
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_models_equal_eager_at_batch_1000(name):
    make, data, batch_dim, _ = MODELS[name]
    np.random.seed(0)
    device = ndl.cpu_numpy()
    model = make(device)
    rng = np.random.default_rng(3)
    graph = trace(model, _tensor(data(rng, 2), device), batch_dims=batch_dim)
    x = _tensor(data(rng, 1000), device)
    model.eval()
    for w, g in zip(_flat_numpy(model(x)), _flat_numpy(graph(x))):
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_traced_graph_runs_from_numpy_and_parsed_text(traced):
    name, model, graph, data, _, device = traced
    x = data(np.random.default_rng(2), 3)
    model.eval()
    want = _flat_numpy(model(_tensor(x, device)))
    parsed = Graph.parse(str(graph), tensors=graph.tensors)
    for got in (_flat_numpy(graph(x, device=device)), _flat_numpy(parsed(x, device=device))):
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w, err_msg=name)


def test_batch_dim_is_symbolic_by_provenance():
    np.random.seed(0)
    model = models.LanguageModel(8, 11, 6, 1, "lstm", device=ndl.cpu_numpy())
    # batch 5 equals the sequence length 5 on purpose: only provenance can tell them apart
    graph = trace(model, _tensor(_ids(np.random.default_rng(0), 5), ndl.cpu_numpy()),
                  batch_dims=1)
    assert graph.placeholders[0].meta["shape"] == (5, "N")
    assert graph.node("linear").meta["shape"] == ("5*N", 11)
    assert [n.op for n in graph.find("full")] == ["full"] * len(graph.find("full"))
    assert any(n.attrs["shape"] == ("N", 6) for n in graph.find("full"))


def test_known_modules_become_high_level_ops_with_module_paths():
    np.random.seed(0)
    graph = trace(models.SmallCNN(device=ndl.cpu_numpy()),
                  _tensor(np.zeros((2, 1, 28, 28), np.float32), ndl.cpu_numpy()))
    ops_used = {n.op for n in graph.nodes}
    assert {"conv2d", "batch_norm", "relu", "reshape", "linear"} <= ops_used
    conv = graph.find("conv2d")[1]
    assert conv.attrs == {"stride": 2, "padding": 1}
    assert conv.meta["module_path"] == conv.name == "layers.modules.1.conv"
    assert conv.meta["source"].startswith("models.py:")
    bn = graph.find("batch_norm")[0]
    assert bn.attrs["dims"] == 2
    assert [i.op for i in bn.inputs] == ["conv2d", "param", "param", "param", "param"]
    assert bn.inputs[3].name == "layers.modules.0.bn.running_mean"


def test_leaf_modules_choose_what_is_traced_through():
    np.random.seed(0)
    model = models.MLP(6, (4,), 3, device=ndl.cpu_numpy())
    x = _tensor(np.ones((2, 6), np.float32), ndl.cpu_numpy())
    graph = trace(model, x, leaf_modules=["Flatten"])
    assert not graph.find("linear") and graph.find("matmul") and graph.find("broadcast_to")
    np.testing.assert_array_equal(graph(x).numpy(), model(x).numpy())
    with pytest.raises(TraceError, match="leaf_modules: no recorder for Lineer"):
        trace(model, x, leaf_modules=["Lineer"])


@pytest.mark.parametrize("device", DEVICES)
def test_trace_on_every_device(device):
    np.random.seed(0)
    model = models.SmallCNN(device=device)
    x = _tensor(np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32),
                device)
    graph = trace(model, x)
    model.eval()
    np.testing.assert_array_equal(graph(x).numpy(), model(x).numpy())


def test_training_flags_and_patches_are_restored():
    np.random.seed(0)
    model = models.MLPResNet(4, 4, 1, 2, device=ndl.cpu_numpy())
    model.train()
    call, make = nn.Module.__call__, ndl.Tensor.make_from_op
    trace(model, _tensor(np.ones((2, 4), np.float32), ndl.cpu_numpy()))
    assert all(m.training for _, m in model.named_modules())
    assert nn.Module.__call__ is call and ndl.Tensor.make_from_op is make
    assert "__bool__" not in vars(ndl.Tensor)


# ----------------------------------------------------------------------------- errors


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3, device=ndl.cpu_numpy())

    def forward(self, x):
        y = self.fc(x)
        if y.numpy().sum() > 0:  # value-dependent: must be refused
            return y
        return -y


class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.block = [inner]

    def forward(self, x):
        return self.block[0](x)


class BoolBranch(nn.Module):
    def forward(self, x):
        return x * 2.0 if x else x


class ReturnsInt(nn.Module):
    def forward(self, x):
        return x + 1.0, 3


class Shifty(nn.Module):
    def forward(self, x):
        shift = ndl.Tensor(x.realize_cached_data(), device=x.device, requires_grad=False)
        return x - shift * 0.5


class Mystery(ndl.autograd.TensorOp):
    def compute(self, a):
        return a


class UsesMystery(nn.Module):
    def forward(self, x):
        return Mystery()(x)


def _x(shape=(2, 3)):
    return _tensor(np.arange(np.prod(shape), dtype=np.float32).reshape(shape), ndl.cpu_numpy())


def test_numpy_in_forward_names_module_path_and_user_line():
    np.random.seed(0)
    with pytest.raises(TraceError) as err:
        trace(Wrapper(Branchy()), _x())
    message = str(err.value)
    assert ".numpy() on a traced tensor" in message
    assert "module 'block.0'" in message
    line = Branchy.forward.__code__.co_firstlineno + 2
    assert f"test_tracer.py:{line}" in message


def test_bool_on_traced_tensor_is_refused():
    with pytest.raises(TraceError, match=r"bool\(\).*module '<root>'.*test_tracer.py:\d+"):
        trace(BoolBranch(), _x())


def test_non_tensor_output_is_refused():
    with pytest.raises(TraceError, match=r"returned a int at output\[1\]"):
        trace(ReturnsInt(), _x())


def test_unknown_op_class_is_refused():
    with pytest.raises(TraceError, match="unknown op class Mystery.*module '<root>'"):
        trace(UsesMystery(), _x())


def test_value_dependent_constant_is_refused():
    with pytest.raises(TraceError, match="depends on the input values"):
        trace(Shifty(), _x((3, 2)))


def test_bad_example_inputs_are_refused():
    with pytest.raises(TraceError, match=r"example input 0 \(x\) is a list"):
        trace(BoolBranch(), [[1.0, 2.0]])
    with pytest.raises(TraceError, match="has no batch dim 2"):
        trace(BoolBranch(), _x(), batch_dims=2)
    with pytest.raises(TraceError, match="batch_dims has 2 entries for 1"):
        trace(BoolBranch(), _x(), batch_dims=(0, 0))


def test_graph_output_structure_matches_model():
    class Pair(nn.Module):
        def forward(self, x):
            return x + 1.0, (x * 2.0, ops.relu(x))

    graph = trace(Pair(), _x())
    assert str(graph).splitlines()[-1] == "return %add_scalar, (%mul_scalar, %relu)"
    out = graph(_x())
    assert isinstance(out, tuple) and isinstance(out[1], tuple) and len(out[1]) == 2
