"""needle.models: parameter counts, shapes, forward + backward of every reference model."""
import numpy as np
import pytest

import needle as ndl
from needle import models
from tests.devices import DEVICES


def _count(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def _t(x, device):
    return ndl.Tensor(np.asarray(x, np.float32), device=device)


def test_resnet9_parameter_count_and_forward():
    np.random.seed(0)
    model = models.ResNet9(device=ndl.cpu_numpy())
    assert _count(model) == 431946
    x = _t(np.random.default_rng(0).standard_normal((2, 3, 32, 32)), ndl.cpu_numpy())
    assert model(x).shape == (2, 10)
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "layers.modules.0.conv.weight"
    assert "layers.modules.2.fn.modules.1.bn.bias" in names


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seq_model", ["rnn", "lstm", "transformer"])
def test_language_model_forward_backward(device, seq_model):
    np.random.seed(1)
    lm = models.LanguageModel(8, 30, 12, num_layers=2, seq_model=seq_model, seq_len=6,
                              device=device)
    ids = ndl.Tensor(np.random.randint(0, 30, (6, 3)).astype(np.float32), device=device)
    logits, h = lm(ids)
    assert logits.shape == (18, 30)
    loss = ndl.nn.SoftmaxLoss()(logits, ndl.Tensor(np.random.randint(0, 30, 18), device=device,
                                                    dtype="float32"))
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in lm.parameters())


def test_language_model_rejects_unknown_kind():
    with pytest.raises(ValueError, match="gru"):
        models.LanguageModel(4, 5, 6, seq_model="gru")


@pytest.mark.parametrize("device", DEVICES)
def test_mnist_models_shapes(device):
    x = _t(np.random.default_rng(2).random((4, 1, 28, 28)), device)
    mlp = models.MLP(784, hidden=(32, 16), device=device)
    assert mlp(x).shape == (4, 10) and _count(mlp) == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    cnn = models.SmallCNN(device=device)
    out = cnn(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert cnn.parameters()[0].grad.shape == (3, 3, 1, 16)


def test_mlp_resnet_structure_and_forward():
    np.random.seed(3)
    model = models.MLPResNet(20, hidden_dim=16, num_blocks=2, num_classes=5,
                             device=ndl.cpu_numpy())
    x = _t(np.random.default_rng(3).random((6, 20)), ndl.cpu_numpy())
    assert model(x).shape == (6, 5)
    bn_layers = [m for _, m in model.named_modules() if isinstance(m, ndl.nn.BatchNorm1d)]
    assert len(bn_layers) == 4
    model.eval()
    y1, y2 = model(x).numpy(), model(x).numpy()
    np.testing.assert_array_equal(y1, y2)


def test_accuracy_helper_counts_argmax_hits():
    model = models.MLP(3, hidden=(), out_features=3, device=ndl.cpu_numpy())
    layer = model.layers.modules[1]
    layer.weight.data = ndl.Tensor(np.eye(3, dtype=np.float32), device=ndl.cpu_numpy())
    layer.bias.data = ndl.Tensor(np.zeros((1, 3), np.float32), device=ndl.cpu_numpy())
    X = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3], [5, 0, 0]], np.float32)
    assert models.accuracy(model, X, np.array([0, 1, 1, 0]), batch_size=3) == 0.75
