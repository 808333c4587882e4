"""Basic modules: Linear, activations, Sequential, losses, normalization, Dropout, Residual."""
import numpy as np

import needle.init as init
from needle import ops

from .nn_module import Module, Parameter

__all__ = [
    "Parameter", "Module", "Identity", "Linear", "Flatten", "ReLU", "Tanh", "Sequential",
    "SoftmaxLoss", "BatchNorm1d", "BatchNorm2d", "LayerNorm1d", "Dropout", "Residual",
]


def _expand_rows(vector, shape):
    """Broadcast a (dim,) or (1, dim) tensor over the rows of a 2-D ``shape``."""
    return ops.broadcast_to(ops.reshape(vector, (1, shape[-1])), shape)


def _as_2d(x, features, where):
    """Reshape (..., features) to (rows, features); course modules are 2-D only."""
    if x.shape[-1] != features:
        raise ValueError(f"{where}: expected last dim {features}, got input shape {x.shape}")
    rows = int(np.prod(x.shape[:-1]))
    return ops.reshape(x, (rows, features)) if len(x.shape) != 2 else x


class Identity(Module):
    """Returns its input."""

    def forward(self, x):
        return x


class Linear(Module):
    """y = x @ W + b with W (in, out) and b (1, out), both kaiming-uniform (course order).

    Inputs of rank > 2 are flattened to 2-D over the leading dims and reshaped back.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype="float32"):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(init.kaiming_uniform(
            in_features, out_features, device=device, dtype=dtype, requires_grad=True))
        self.bias = None
        if bias:
            b = init.kaiming_uniform(out_features, 1, device=device, dtype=dtype)
            self.bias = Parameter(ops.reshape(b, (1, out_features)).detach(), requires_grad=True)

    def forward(self, X):
        lead = X.shape[:-1]
        y = _as_2d(X, self.in_features, "Linear") @ self.weight
        if self.bias is not None:
            y = y + _expand_rows(self.bias, y.shape)
        return ops.reshape(y, (*lead, self.out_features)) if len(lead) != 1 else y


class Flatten(Module):
    """(B, d1, d2, ...) -> (B, d1 * d2 * ...)."""

    def forward(self, X):
        return ops.reshape(X, (X.shape[0], int(np.prod(X.shape[1:]))))


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x):
        return ops.relu(x)


class Tanh(Module):
    """tanh(x) (an addition to the 2023+ course API; the 2022 one had it)."""

    def forward(self, x):
        return ops.tanh(x)


class Sequential(Module):
    """Applies ``modules`` in order."""

    def __init__(self, *modules):
        super().__init__()
        self.modules = modules

    def forward(self, x):
        for module in self.modules:
            x = module(x)
        return x


class SoftmaxLoss(Module):
    """Mean softmax cross-entropy of logits (N, k) against integer labels y (N,)."""

    def forward(self, logits, y):
        if len(logits.shape) != 2:
            raise ValueError(f"SoftmaxLoss: logits must be (N, k), got {logits.shape}")
        n, k = logits.shape
        if tuple(y.shape) != (n,):
            raise ValueError(f"SoftmaxLoss: labels must have shape ({n},), got {tuple(y.shape)}")
        y_one_hot = init.one_hot(k, y, device=logits.device, dtype=logits.dtype)
        picked = ops.summation(logits * y_one_hot, axes=(1,))
        return ops.summation(ops.logsumexp(logits, axes=(1,)) - picked) / n


class BatchNorm1d(Module):
    """Batch normalization over the rows of (N, dim) input.

    Training uses batch statistics (biased variance) and updates
    ``running = (1 - momentum) * running + momentum * batch`` with the biased variance, as
    the hw2 goldens do. Eval uses the running statistics.
    """

    _buffer_names = ("running_mean", "running_var")

    def __init__(self, dim, eps=1e-5, momentum=0.1, device=None, dtype="float32"):
        super().__init__()
        self.dim, self.eps, self.momentum = dim, eps, momentum
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype, requires_grad=True))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype, requires_grad=True))
        self.running_mean = init.zeros(dim, device=device, dtype=dtype)
        self.running_var = init.ones(dim, device=device, dtype=dtype)

    def _batch_stats(self, x):
        n = x.shape[0]
        mean = ops.summation(x, axes=(0,)) / n
        centered = x - _expand_rows(mean, x.shape)
        var = ops.summation(centered * centered, axes=(0,)) / n
        return mean, centered, var

    def _update_running(self, mean, var):
        m = self.momentum
        self.running_mean = (self.running_mean * (1 - m) + mean.detach() * m).detach()
        self.running_var = (self.running_var * (1 - m) + var.detach() * m).detach()

    def forward(self, x):
        if len(x.shape) != 2 or x.shape[1] != self.dim:
            raise ValueError(f"BatchNorm1d({self.dim}): expected (N, {self.dim}), got {x.shape}")
        if self.training:
            mean, centered, var = self._batch_stats(x)
            self._update_running(mean, var)
        else:
            mean, var = self.running_mean, self.running_var
            centered = x - _expand_rows(mean, x.shape)
        std = _expand_rows(ops.power_scalar(var + self.eps, 0.5), x.shape)
        scaled = centered / std
        return scaled * _expand_rows(self.weight, x.shape) + _expand_rows(self.bias, x.shape)


class BatchNorm2d(BatchNorm1d):
    """BatchNorm over the channels of NCHW input."""

    def forward(self, x):
        if len(x.shape) != 4:
            raise ValueError(f"BatchNorm2d: expected NCHW input, got shape {x.shape}")
        n, c, h, w = x.shape
        nhwc = ops.transpose(ops.transpose(x, (1, 2)), (2, 3))
        y = super().forward(ops.reshape(nhwc, (n * h * w, c)))
        y = ops.reshape(y, (n, h, w, c))
        return ops.transpose(ops.transpose(y, (2, 3)), (1, 2))


class LayerNorm1d(Module):
    """Normalizes each row over the last dim (biased variance); any leading dims."""

    def __init__(self, dim, eps=1e-5, device=None, dtype="float32"):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype, requires_grad=True))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype, requires_grad=True))

    def _row_stat(self, x):
        """Mean over the last dim of 2-D x, broadcast back to x's shape."""
        s = ops.summation(x, axes=(1,)) / self.dim
        return ops.broadcast_to(ops.reshape(s, (x.shape[0], 1)), x.shape)

    def forward(self, x):
        shape = x.shape
        x2 = _as_2d(x, self.dim, f"LayerNorm1d({self.dim})")
        centered = x2 - self._row_stat(x2)
        var = self._row_stat(centered * centered)
        y = centered / ops.power_scalar(var + self.eps, 0.5)
        y = y * _expand_rows(self.weight, y.shape) + _expand_rows(self.bias, y.shape)
        return ops.reshape(y, shape) if len(shape) != 2 else y


class Dropout(Module):
    """Training: zero each entry with probability p and scale the rest by 1/(1-p)."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        mask = init.randb(*x.shape, p=1 - self.p, device=x.device, dtype=x.dtype)
        return x * mask / (1 - self.p)


class Residual(Module):
    """fn(x) + x."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x

