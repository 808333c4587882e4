"""needle.optim: exact update rules, convergence on a quadratic, clipping, no graph growth."""
import numpy as np
import pytest
import torch

import needle as ndl
import needle.nn as nn
from tests.devices import DEVICES


class _Quadratic(nn.Module):
    """f(w) = sum((w - target)^2 * scale)."""

    def __init__(self, device):
        super().__init__()
        self.w = nn.Parameter(ndl.Tensor(np.zeros(4, np.float32), device=device))
        self.target = ndl.Tensor(np.array([1.0, -2.0, 3.0, 0.5], np.float32), device=device,
                                 requires_grad=False)
        self.scale = ndl.Tensor(np.array([1.0, 2.0, 0.5, 1.5], np.float32), device=device,
                                requires_grad=False)

    def loss(self):
        d = self.w - self.target
        return (d * d * self.scale).sum()


def _run(opt, model, steps):
    for _ in range(steps):
        opt.reset_grad()
        model.loss().backward()
        opt.step()
    return model.w.numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("make", [
    lambda p: ndl.optim.SGD(p, lr=0.1),
    lambda p: ndl.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: ndl.optim.Adam(p, lr=0.1),
], ids=["sgd", "sgd-momentum", "adam"])
def test_optimizers_converge_on_quadratic(device, make):
    model = _Quadratic(device)
    w = _run(make(model.parameters()), model, 150)
    np.testing.assert_allclose(w, [1.0, -2.0, 3.0, 0.5], atol=1e-2)


def _numpy_sgd(w, grads, lr, momentum, wd):
    u = np.zeros_like(w)
    for g in grads:
        u = momentum * u + (1 - momentum) * (g(w) + wd * w)
        w = w - lr * u
    return w


@pytest.mark.parametrize("device", DEVICES)
def test_sgd_momentum_weight_decay_matches_formula(device):
    model = _Quadratic(device)
    opt = ndl.optim.SGD(model.parameters(), lr=0.05, momentum=0.8, weight_decay=0.1)
    got = _run(opt, model, 5)
    target, scale = model.target.numpy(), model.scale.numpy()
    ref = _numpy_sgd(np.zeros(4, np.float32), [lambda w: 2 * (w - target) * scale] * 5,
                     0.05, 0.8, 0.1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_adam_matches_torch(device):
    model = _Quadratic(device)
    opt = ndl.optim.Adam(model.parameters(), lr=0.03, beta1=0.8, beta2=0.95, weight_decay=0.01)
    got = _run(opt, model, 6)
    w = torch.zeros(4, requires_grad=True)
    ref = torch.optim.Adam([w], lr=0.03, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.01)
    target, scale = torch.tensor(model.target.numpy()), torch.tensor(model.scale.numpy())
    for _ in range(6):
        ref.zero_grad()
        ((w - target) ** 2 * scale).sum().backward()
        ref.step()
    np.testing.assert_allclose(got, w.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_step_builds_no_graph_and_keeps_dtype(device):
    model = _Quadratic(device)
    opt = ndl.optim.Adam(model.parameters(), lr=0.1)
    _run(opt, model, 2)
    assert model.w.op is None and model.w.dtype == "float32"
    assert all(m.op is None for m in opt.m.values())


def test_clip_grad_norm_scales_to_max_norm():
    model = _Quadratic(ndl.cpu_numpy())
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    model.loss().backward()
    before = model.w.grad.numpy()
    norm = opt.clip_grad_norm(max_norm=0.5)
    assert norm == pytest.approx(np.linalg.norm(before), rel=1e-5)
    assert np.linalg.norm(model.w.grad.numpy()) == pytest.approx(0.5, rel=1e-4)
    np.testing.assert_allclose(model.w.grad.numpy() / 0.5, before / norm, rtol=1e-4)


def test_reset_grad_and_empty_params():
    model = _Quadratic(ndl.cpu_numpy())
    opt = ndl.optim.SGD(model.parameters())
    model.loss().backward()
    opt.reset_grad()
    assert model.w.grad is None
    opt.step()  # parameters without gradients are skipped
    with pytest.raises(ValueError, match="empty"):
        ndl.optim.Adam([])
