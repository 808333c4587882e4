"""Optimizers (course API): SGD with momentum and weight decay, Adam, gradient-norm clipping."""
import math

import numpy as np

from needle.autograd import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "clip_grad_norm"]


def _const(value, like):
    """A graph-free tensor on ``like``'s device and dtype (updates must not build graphs)."""
    return Tensor(value, device=like.device, dtype=like.dtype, requires_grad=False)


def clip_grad_norm(params, max_norm=0.25):
    """Scale all gradients so their joint L2 norm is at most ``max_norm``; returns the norm."""
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.sum(np.square(g.numpy(), dtype=np.float64))) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            if p.grad is not None:
                p.grad = (p.grad.detach() * scale).detach()
    return total


class Optimizer:
    """Holds ``params``; subclasses implement ``step``."""

    def __init__(self, params):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")

    def step(self):
        raise NotImplementedError

    def reset_grad(self):
        """Forget all gradients (sets ``p.grad = None``)."""
        for p in self.params:
            p.grad = None

    def clip_grad_norm(self, max_norm=0.25):
        """Clip the joint gradient norm of this optimizer's parameters; returns the norm."""
        return clip_grad_norm(self.params, max_norm)


class SGD(Optimizer):
    """u <- momentum*u + (1-momentum)*(grad + wd*theta); theta <- theta - lr*u."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.u = {}  # id(param) -> momentum buffer (Tensor does not hash by value)

    def step(self):
        for p in self.params:
            if p.grad is None:
                continue
            theta = p.detach()
            grad = _const(p.grad.detach(), theta) + theta * self.weight_decay
            u = self.u.get(id(p))
            u = grad * (1 - self.momentum) if u is None else (
                u * self.momentum + grad * (1 - self.momentum))
            self.u[id(p)] = u.detach()
            p.data = (theta - self.u[id(p)] * self.lr).detach()


class Adam(Optimizer):
    """Bias-corrected Adam; weight decay is added to the gradient (course semantics)."""

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.eps, self.weight_decay = eps, weight_decay
        self.t = 0
        self.m, self.v = {}, {}

    def _moments(self, p, grad):
        b1, b2 = self.beta1, self.beta2
        m = self.m.get(id(p))
        v = self.v.get(id(p))
        m = grad * (1 - b1) if m is None else m * b1 + grad * (1 - b1)
        v = grad * grad * (1 - b2) if v is None else v * b2 + grad * grad * (1 - b2)
        self.m[id(p)], self.v[id(p)] = m.detach(), v.detach()
        return self.m[id(p)], self.v[id(p)]

    def step(self):
        self.t += 1
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        for p in self.params:
            if p.grad is None:
                continue
            theta = p.detach()
            grad = _const(p.grad.detach(), theta) + theta * self.weight_decay
            m, v = self._moments(p, grad)
            denom = (v / c2) ** 0.5 + self.eps
            p.data = (theta - (m / c1) / denom * self.lr).detach()
