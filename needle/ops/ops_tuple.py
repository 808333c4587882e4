"""Ops that build and take apart TensorTuples."""

from ..autograd import Tensor, TensorOp, TensorTuple, TensorTupleOp
from . import array_helpers as H


class MakeTensorTuple(TensorTupleOp):
    def compute(self, *args):
        return tuple(args)

    def gradient(self, out_grad, node):
        return tuple(out_grad[i] for i in range(len(out_grad)))


def make_tuple(*args):
    return MakeTensorTuple()(*args)


class TupleGetItem(TensorOp):
    def __init__(self, index):
        self.index = index

    def __call__(self, a: TensorTuple, fold_const=True):
        if not isinstance(a, TensorTuple):
            raise TypeError(f"tuple_get_item needs a TensorTuple, got {type(a).__name__}")
        # make_tuple(x0, x1, ...)[i] is just x_i: skip the extra node.
        if fold_const and isinstance(a.op, MakeTensorTuple):
            return a.inputs[self.index]
        return Tensor.make_from_op(self, [a])

    def compute(self, a):
        return a[self.index]

    def gradient(self, out_grad, node):
        parts = node.inputs[0].realize_cached_data()
        grads = [
            out_grad if i == self.index else _zeros_like_array(part) for i, part in enumerate(parts)
        ]
        return MakeTensorTuple()(*grads)


def _zeros_like_array(array):
    return Tensor.make_const(H.full(array.shape, 0, H.dtype_of(array), array))


def tuple_get_item(value, index):
    return TupleGetItem(index)(value)


class FusedAddScalars(TensorTupleOp):
    """(a + c0, a + c1) in one op."""

    def __init__(self, c0: float, c1: float):
        self.c0 = c0
        self.c1 = c1

    def compute(self, a):
        return a + self.c0, a + self.c1

    def gradient(self, out_grad, node):
        return out_grad[0] + out_grad[1]


def fused_add_scalars(x, c0, c1):
    return FusedAddScalars(c0, c1)(x)


__all__ = [
    "MakeTensorTuple",
    "make_tuple",
    "TupleGetItem",
    "tuple_get_item",
    "FusedAddScalars",
    "fused_add_scalars",
]
