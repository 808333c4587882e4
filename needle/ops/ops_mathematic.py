"""Elementwise, shape, reduction, matmul and convolution ops with their gradients."""

import builtins

from ..autograd import NDArray, Tensor, TensorOp, TensorTupleOp  # noqa: F401 (course names)
from ..backend_selection import BACKEND, array_api  # noqa: F401 (course module attributes)
from . import array_helpers as H
from .ops_tuple import make_tuple


def _const(array):
    """A constant Tensor over an already computed array (used for masks in gradients)."""
    return Tensor.make_const(array)


def _check_same_shape(op, a, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"shape mismatch in {op}: {tuple(a.shape)} vs {tuple(b.shape)}")


def _axes_tuple(axes, ndim):
    """None -> None; int or sequence -> tuple of non-negative axes (validated)."""
    if axes is None:
        return None
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for {ndim} dimensions")
    return tuple(a % builtins.max(ndim, 1) for a in axes)


def _reduced_shape(shape, axes, keepdims):
    if axes is None:
        return (1,) * len(shape) if keepdims else ()
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _sum_to_shape(grad, shape):
    """Sum a broadcast gradient back down to ``shape`` (numpy broadcasting rules)."""
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    lead = len(grad.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[lead + i] != 1
    )
    return summation(grad, axes).reshape(shape) if axes else grad.reshape(shape)


# ---- elementwise -------------------------------------------------------------------------------


class EWiseAdd(TensorOp):
    def compute(self, a, b):
        _check_same_shape("add", a, b)
        return a + b

    def gradient(self, out_grad, node):
        return out_grad, out_grad


def add(a, b):
    return EWiseAdd()(a, b)


class AddScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return a + self.scalar

    def gradient(self, out_grad, node):
        return out_grad


def add_scalar(a, scalar):
    return AddScalar(scalar)(a)


class EWiseMul(TensorOp):
    def compute(self, a, b):
        _check_same_shape("multiply", a, b)
        return a * b

    def gradient(self, out_grad, node):
        lhs, rhs = node.inputs
        return out_grad * rhs, out_grad * lhs


def multiply(a, b):
    return EWiseMul()(a, b)


class MulScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return a * self.scalar

    def gradient(self, out_grad, node):
        return out_grad * self.scalar


def mul_scalar(a, scalar):
    return MulScalar(scalar)(a)


class EWisePow(TensorOp):
    """Elementwise ``a ** b`` for two tensors."""

    def compute(self, a, b):
        _check_same_shape("power", a, b)
        return H.power(a, b)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad * b * power(a, b - 1), out_grad * node * log(a)


def power(a, b):
    return EWisePow()(a, b)


class PowerScalar(TensorOp):
    """``a ** scalar`` for a Python number exponent."""

    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return a**self.scalar

    def gradient(self, out_grad, node):
        a = node.inputs[0]
        return out_grad * self.scalar * power_scalar(a, self.scalar - 1)


def power_scalar(a, scalar):
    return PowerScalar(scalar)(a)


class EWiseDiv(TensorOp):
    def compute(self, a, b):
        _check_same_shape("divide", a, b)
        return a / b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad / b, -out_grad * a / (b * b)


def divide(a, b):
    return EWiseDiv()(a, b)


class DivScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return a / self.scalar

    def gradient(self, out_grad, node):
        return out_grad / self.scalar


def divide_scalar(a, scalar):
    return DivScalar(scalar)(a)


class Negate(TensorOp):
    def compute(self, a):
        return -a

    def gradient(self, out_grad, node):
        return -out_grad


def negate(a):
    return Negate()(a)


class Log(TensorOp):
    def compute(self, a):
        return array_api.log(a)

    def gradient(self, out_grad, node):
        return out_grad / node.inputs[0]


def log(a):
    return Log()(a)


class Exp(TensorOp):
    def compute(self, a):
        return array_api.exp(a)

    def gradient(self, out_grad, node):
        return out_grad * node


def exp(a):
    return Exp()(a)


class ReLU(TensorOp):
    def compute(self, a):
        return H.maximum(a, 0)

    def gradient(self, out_grad, node):
        x = node.inputs[0].realize_cached_data()
        return out_grad * _const(H.as_dtype_of(x > 0, x))


def relu(a):
    return ReLU()(a)


class Tanh(TensorOp):
    def compute(self, a):
        return array_api.tanh(a)

    def gradient(self, out_grad, node):
        return out_grad * (1 - node * node)


def tanh(a):
    return Tanh()(a)


class Sigmoid(TensorOp):
    """1 / (1 + exp(-a)); saturates to 0/1 without NaN for large |a|."""

    def compute(self, a):
        return 1 / (array_api.exp(-a) + 1)

    def gradient(self, out_grad, node):
        return out_grad * node * (1 - node)


def sigmoid(a):
    return Sigmoid()(a)


class Maximum(TensorOp):
    """Elementwise max of two tensors; ties send the gradient to ``a``."""

    def compute(self, a, b):
        _check_same_shape("maximum", a, b)
        return H.maximum(a, b)

    def gradient(self, out_grad, node):
        a, b = (x.realize_cached_data() for x in node.inputs)
        mask = _const(H.as_dtype_of(a >= b, a))
        return out_grad * mask, out_grad * (1 - mask)


def maximum(a, b):
    return Maximum()(a, b)


# ---- shapes --------------------------------------------------------------------------------------


class Transpose(TensorOp):
    """Swap two axes: ``None`` swaps the last two, ``(i, j)`` swaps i and j (not a permutation)."""

    def __init__(self, axes: tuple | None = None):
        if axes is not None and len(axes) != 2:
            raise ValueError(f"transpose swaps two axes, got {axes}; use permute for more")
        self.axes = axes

    def compute(self, a):
        if a.ndim < 2 and self.axes is None:
            raise ValueError(f"transpose needs at least 2 dimensions, got shape {a.shape}")
        i, j = (-2, -1) if self.axes is None else self.axes
        order = list(range(a.ndim))
        order[i], order[j] = order[j], order[i]
        return H.permute(a, order)

    def gradient(self, out_grad, node):
        return transpose(out_grad, self.axes)


def transpose(a, axes=None):
    return Transpose(axes)(a)


class Permute(TensorOp):
    """Reorder all axes (``axes`` is a permutation, like numpy.transpose)."""

    def __init__(self, axes: tuple):
        self.axes = tuple(axes)

    def compute(self, a):
        if sorted(self.axes) != list(range(a.ndim)):
            raise ValueError(f"permute: {self.axes} is not a permutation for shape {a.shape}")
        return H.permute(a, self.axes)

    def gradient(self, out_grad, node):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return permute(out_grad, tuple(inverse))


def permute(a, axes):
    return Permute(axes)(a)


class Reshape(TensorOp):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def compute(self, a):
        return H.reshape(a, self.shape)

    def gradient(self, out_grad, node):
        return reshape(out_grad, node.inputs[0].shape)


def reshape(a, shape):
    return Reshape(shape)(a)


class BroadcastTo(TensorOp):
    """numpy broadcasting to ``shape``; the gradient sums over the broadcast axes."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def compute(self, a):
        return H.broadcast_to(a, self.shape)

    def gradient(self, out_grad, node):
        return _sum_to_shape(out_grad, node.inputs[0].shape)


def broadcast_to(a, shape):
    return BroadcastTo(shape)(a)


class Summation(TensorOp):
    """Sum over ``axes`` (None = all, giving shape ()); reduced axes are dropped."""

    def __init__(self, axes: tuple | None = None):
        self.axes = axes

    def compute(self, a):
        axes = _axes_tuple(self.axes, a.ndim)
        out = H.reduce_sum(a, axes)
        return H.reshape(out, _reduced_shape(a.shape, axes, False))

    def gradient(self, out_grad, node):
        shape = node.inputs[0].shape
        keep = _reduced_shape(shape, _axes_tuple(self.axes, len(shape)), True)
        return broadcast_to(reshape(out_grad, keep), shape)


def summation(a, axes=None):
    return Summation(axes)(a)


class Max(TensorOp):
    """Max over ``axes``; the gradient is split evenly between tied maxima."""

    def __init__(self, axes: tuple | None = None, keepdims=False):
        self.axes = axes
        self.keepdims = keepdims

    def compute(self, a):
        axes = _axes_tuple(self.axes, a.ndim)
        out = H.reduce_max(a, axes, keepdims=True)
        return H.reshape(out, _reduced_shape(a.shape, axes, self.keepdims))

    def gradient(self, out_grad, node):
        x = node.inputs[0].realize_cached_data()
        axes = _axes_tuple(self.axes, x.ndim)
        keep = _reduced_shape(x.shape, axes, True)
        top = H.broadcast_to(H.reshape(node.realize_cached_data(), keep), x.shape)
        mask = H.as_dtype_of(x == top, x)
        share = mask / H.broadcast_to(H.reduce_sum(mask, axes, keepdims=True), x.shape)
        return broadcast_to(reshape(out_grad, keep), x.shape) * _const(share)


def max(a, axes=None, keepdims=False):
    return Max(axes, keepdims)(a)


# ---- slicing -----------------------------------------------------------------------------------


def _parse_index(index, shape):
    """(slices with positive steps, kept shape) for basic indexing; ints drop their axis."""
    index = index if isinstance(index, tuple) else (index,)
    if len(index) > len(shape):
        raise IndexError(f"too many indices {index} for shape {tuple(shape)}")
    index = index + (slice(None),) * (len(shape) - len(index))
    slices, kept = [], []
    for idx, dim in zip(index, shape):
        sl, keeps = _parse_one(idx, dim, shape)
        slices.append(sl)
        if keeps:
            kept.append(len(range(sl.start, sl.stop, sl.step)))
    return tuple(slices), tuple(kept)


def _parse_one(idx, dim, shape):
    if isinstance(idx, slice):
        start, stop, step = idx.indices(dim)
        if step <= 0:
            raise ValueError(f"slice {idx} of shape {tuple(shape)}: only positive steps")
        return slice(start, stop if stop > start else start, step), True
    if isinstance(idx, int) and not isinstance(idx, bool):
        if not -dim <= idx < dim:
            raise IndexError(f"index {idx} out of bounds for axis of size {dim} in {tuple(shape)}")
        return slice(idx % dim, idx % dim + 1, 1), False
    raise TypeError(f"Tensor index must be int or slice, got {type(idx).__name__}")


class GetItem(TensorOp):
    """Basic indexing (ints and positive-step slices); integer indices drop their axis."""

    def __init__(self, index):
        self.index = index

    def compute(self, a):
        slices, kept = _parse_index(self.index, a.shape)
        return H.reshape(H.compact(a[slices]), kept)

    def gradient(self, out_grad, node):
        return SliceScatter(self.index, node.inputs[0].shape)(out_grad)


def getitem(a, index):
    return GetItem(index)(a)


class SliceScatter(TensorOp):
    """Zeros of ``shape`` with ``a`` written at ``index`` (the adjoint of GetItem)."""

    def __init__(self, index, shape):
        self.index = index
        self.shape = tuple(shape)

    def compute(self, a):
        slices, _ = _parse_index(self.index, self.shape)
        out = H.full(self.shape, 0, H.dtype_of(a), a)
        view_shape = tuple(len(range(s.start, s.stop, s.step)) for s in slices)
        out[slices] = H.reshape(a, view_shape)
        return out

    def gradient(self, out_grad, node):
        return GetItem(self.index)(out_grad)


# ---- matmul ------------------------------------------------------------------------------------


class MatMul(TensorOp):
    """Matrix product with broadcast leading (batch) dims; gradients sum over broadcast dims."""

    def compute(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"shape mismatch in matmul: {tuple(a.shape)} vs {tuple(b.shape)}")
        return a @ b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        grad_a = matmul(out_grad, transpose(b))
        grad_b = matmul(transpose(a), out_grad)
        return _sum_to_shape(grad_a, a.shape), _sum_to_shape(grad_b, b.shape)


def matmul(a, b):
    return MatMul()(a, b)


# ---- stack / split -------------------------------------------------------------------------------


class Stack(TensorOp):
    """Stack equal-shape tensors along a new axis ``axis``."""

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, args):
        if not args:
            raise ValueError("stack needs at least one tensor")
        first = args[0]
        for arr in args[1:]:
            _check_same_shape("stack", first, arr)
            if H.dtype_of(arr) != H.dtype_of(first):
                dtypes = f"{H.dtype_of(first)} vs {H.dtype_of(arr)}"
                raise TypeError(f"dtype mismatch in stack: {dtypes}")
        shape = tuple(first.shape)
        axis = self.axis % (len(shape) + 1)
        out_shape = shape[:axis] + (len(args),) + shape[axis:]
        one_shape = shape[:axis] + (1,) + shape[axis:]
        out = H.full(out_shape, 0, H.dtype_of(first), first)
        for i, arr in enumerate(args):
            out[_axis_slice(len(out_shape), axis, i)] = H.reshape(arr, one_shape)
        return out

    def gradient(self, out_grad, node):
        return split(out_grad, self.axis)


def _axis_slice(ndim, axis, i):
    return tuple(slice(i, i + 1) if d == axis else slice(None) for d in range(ndim))


def stack(args, axis):
    return Stack(axis)(make_tuple(*args))


class Split(TensorTupleOp):
    """Split along ``axis`` into a tuple of tensors without that axis (inverse of stack)."""

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, a):
        axis = self.axis % a.ndim
        rest = tuple(s for d, s in enumerate(a.shape) if d != axis)
        return tuple(
            H.reshape(H.compact(a[_axis_slice(a.ndim, axis, i)]), rest)
            for i in range(a.shape[axis])
        )

    def gradient(self, out_grad, node):
        return Stack(self.axis)(out_grad)


def split(a, axis):
    return Split(axis)(a)


# ---- flip / dilate -------------------------------------------------------------------------------


class Flip(TensorOp):
    def __init__(self, axes: tuple | None = None):
        self.axes = axes

    def compute(self, a):
        axes = tuple(range(a.ndim)) if self.axes is None else _axes_tuple(self.axes, a.ndim)
        return H.flip(a, axes)

    def gradient(self, out_grad, node):
        return flip(out_grad, self.axes)


def flip(a, axes):
    return Flip(axes)(a)


def _dilation_slices(shape, axes, dilation):
    return tuple(
        slice(0, None, dilation + 1) if d in axes else slice(None) for d in range(len(shape))
    )


class Dilate(TensorOp):
    """Insert ``dilation`` zeros after every element along ``axes`` (0 = identity)."""

    def __init__(self, axes: tuple, dilation: int):
        self.axes = tuple(axes)
        self.dilation = dilation

    def compute(self, a):
        axes = _axes_tuple(self.axes, a.ndim)
        shape = tuple(s * (self.dilation + 1) if d in axes else s for d, s in enumerate(a.shape))
        out = H.full(shape, 0, H.dtype_of(a), a)
        out[_dilation_slices(shape, axes, self.dilation)] = a
        return out

    def gradient(self, out_grad, node):
        return undilate(out_grad, self.axes, self.dilation)


def dilate(a, axes, dilation):
    return Dilate(axes, dilation)(a)


class UnDilate(TensorOp):
    """Keep every ``dilation + 1``-th element along ``axes`` (inverse of Dilate)."""

    def __init__(self, axes: tuple, dilation: int):
        self.axes = tuple(axes)
        self.dilation = dilation

    def compute(self, a):
        axes = _axes_tuple(self.axes, a.ndim)
        return H.compact(a[_dilation_slices(a.shape, axes, self.dilation)])

    def gradient(self, out_grad, node):
        return dilate(out_grad, self.axes, self.dilation)


def undilate(a, axes, dilation):
    return UnDilate(axes, dilation)(a)


# ---- convolution ---------------------------------------------------------------------------------


class Conv(TensorOp):
    """2-D convolution, NHWC input, weight (K, K, C_in, C_out), zero padding, square stride.

    Computed by im2col: a strided (N, H', W', K, K, C_in) view of the padded input, made compact
    and multiplied by the reshaped weight in one matmul.
    """

    def __init__(self, stride: int | None = 1, padding: int | None = 0):
        self.stride = stride
        self.padding = padding

    def compute(self, a, b):
        _check_conv_shapes(a, b)
        p, s = self.padding, self.stride
        if p:
            a = H.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
        a = H.compact(a)
        n, h, w, c_in = a.shape
        kh, kw, _, c_out = b.shape
        ho, wo = (h - kh) // s + 1, (w - kw) // s + 1
        if ho <= 0 or wo <= 0:
            raise ValueError(f"conv: kernel {b.shape[:2]} is larger than padded input {(h, w)}")
        sn, sh, sw, sc = H.element_strides(a)
        cols = H.as_strided(a, (n, ho, wo, kh, kw, c_in), (sn, sh * s, sw * s, sh, sw, sc))
        cols = H.reshape(H.compact(cols), (n * ho * wo, kh * kw * c_in))
        out = cols @ H.reshape(b, (kh * kw * c_in, c_out))
        return H.reshape(out, (n, ho, wo, c_out))

    def gradient(self, out_grad, node):
        x, w = node.inputs
        return _conv_grad_input(out_grad, x, w, self), _conv_grad_weight(out_grad, x, w, self)


def _check_conv_shapes(a, b):
    if a.ndim != 4 or b.ndim != 4 or a.shape[3] != b.shape[2]:
        raise ValueError(
            f"conv needs NHWC input and (K, K, C_in, C_out) weight with matching C_in, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _conv_out_grad_full(out_grad, x, w, op):
    """out_grad dilated by the stride and cut to the stride-1 output size."""
    g = dilate(out_grad, (1, 2), op.stride - 1) if op.stride > 1 else out_grad
    need_h = x.shape[1] + 2 * op.padding - w.shape[0] + 1
    need_w = x.shape[2] + 2 * op.padding - w.shape[1] + 1
    if g.shape[1] != need_h or g.shape[2] != need_w:
        g = g[:, :need_h, :need_w, :]
    return g


def _conv_grad_input(out_grad, x, w, op):
    g = _conv_out_grad_full(out_grad, x, w, op)
    w_flipped = transpose(flip(w, (0, 1)), (2, 3))
    k, p = w.shape[0], op.padding
    if k - 1 - p >= 0 and w.shape[0] == w.shape[1]:
        return conv(g, w_flipped, stride=1, padding=k - 1 - p)
    # Padding beyond K-1: convolve at full padding, then cut the padded border off.
    full_pad = conv(g, w_flipped, stride=1, padding=k - 1)
    return full_pad[:, p : p + x.shape[1], p : p + x.shape[2], :]


def _conv_grad_weight(out_grad, x, w, op):
    g = _conv_out_grad_full(out_grad, x, w, op)
    x_cn = transpose(x, (0, 3))  # (C_in, H, W, N): channels become the batch
    g_hw = transpose(transpose(g, (0, 1)), (1, 2))  # (H', W', N, C_out): a (H', W') kernel
    grad = conv(x_cn, g_hw, stride=1, padding=op.padding)  # (C_in, K, K, C_out)
    return transpose(transpose(grad, (0, 1)), (1, 2))


def conv(a, b, stride=1, padding=1):
    return Conv(stride, padding)(a, b)


__all__ = [
    "EWiseAdd",
    "add",
    "AddScalar",
    "add_scalar",
    "EWiseMul",
    "multiply",
    "MulScalar",
    "mul_scalar",
    "EWisePow",
    "power",
    "PowerScalar",
    "power_scalar",
    "EWiseDiv",
    "divide",
    "DivScalar",
    "divide_scalar",
    "Negate",
    "negate",
    "Log",
    "log",
    "Exp",
    "exp",
    "ReLU",
    "relu",
    "Tanh",
    "tanh",
    "Sigmoid",
    "sigmoid",
    "Maximum",
    "maximum",
    "Transpose",
    "transpose",
    "Permute",
    "permute",
    "Reshape",
    "reshape",
    "BroadcastTo",
    "broadcast_to",
    "Summation",
    "summation",
    "Max",
    "max",
    "GetItem",
    "getitem",
    "SliceScatter",
    "MatMul",
    "matmul",
    "Stack",
    "stack",
    "Split",
    "split",
    "Flip",
    "flip",
    "Dilate",
    "dilate",
    "UnDilate",
    "undilate",
    "Conv",
    "conv",
]
