"""Casts between dtypes, differentiable for float targets."""

from ..autograd import TensorOp, is_int_dtype
from . import array_helpers as H


class AsType(TensorOp):
    """Cast to ``dtype`` (astype rules of docs/backend-contract.md).

    The gradient casts back to the input dtype; integer inputs/outputs carry no gradient.
    """

    def __init__(self, dtype):
        self.dtype = dtype

    def compute(self, a):
        return H.astype(a, self.dtype)

    def gradient(self, out_grad, node):
        source = node.inputs[0].dtype
        if is_int_dtype(source):
            return None
        return AsType(source)(out_grad)


def astype(a, dtype):
    return AsType(dtype)(a)


__all__ = [
    "AsType",
    "astype",
]
