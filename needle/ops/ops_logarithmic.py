"""Numerically stable log-sum-exp and log-softmax."""

from ..autograd import TensorOp
from ..backend_selection import array_api
from . import array_helpers as H
from .ops_mathematic import _axes_tuple, _reduced_shape, broadcast_to, exp, reshape, summation


def _logsumexp_keepdims(a, axes):
    """log(sum(exp(a))) over ``axes`` with reduced dims kept, shifted by the max for stability."""
    top = H.reduce_max(a, axes, keepdims=True)
    shifted = a - H.broadcast_to(top, a.shape)
    return array_api.log(H.reduce_sum(array_api.exp(shifted), axes, keepdims=True)) + top


class LogSoftmax(TensorOp):
    """log(softmax(a)) over axis 1 of a 2-D tensor."""

    def compute(self, a):
        if a.ndim != 2:
            raise ValueError(f"logsoftmax needs a 2-D input, got shape {tuple(a.shape)}")
        return a - H.broadcast_to(_logsumexp_keepdims(a, (1,)), a.shape)

    def gradient(self, out_grad, node):
        shape = node.shape
        total = broadcast_to(reshape(summation(out_grad, (1,)), (shape[0], 1)), shape)
        return out_grad - exp(node) * total


def logsoftmax(a):
    return LogSoftmax()(a)


class LogSumExp(TensorOp):
    """log(sum(exp(a))) over ``axes`` (None = all, int or tuple); reduced dims are dropped."""

    def __init__(self, axes: tuple | None = None):
        self.axes = axes

    def compute(self, Z):
        axes = _axes_tuple(self.axes, Z.ndim)
        out = _logsumexp_keepdims(Z, axes)
        return H.reshape(out, _reduced_shape(Z.shape, axes, False))

    def gradient(self, out_grad, node):
        z = node.inputs[0]
        keep = _reduced_shape(z.shape, _axes_tuple(self.axes, len(z.shape)), True)
        lse = broadcast_to(reshape(node, keep), z.shape)
        return broadcast_to(reshape(out_grad, keep), z.shape) * exp(z - lse)


def logsumexp(a, axes=None):
    return LogSumExp(axes=axes)(a)


__all__ = [
    "LogSoftmax",
    "logsoftmax",
    "LogSumExp",
    "logsumexp",
]
