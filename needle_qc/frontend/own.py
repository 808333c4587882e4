"""needle_qc's own arrays: a NumPy stand-in for the Needle API the op table evaluates with.

Compiled programs never compute on the user's framework: a step without a native kernel is
evaluated by the op table against this module (``ops``, ``nn``, ``init``, ``Tensor``), so
every value is a NumPy array owned by needle_qc, in any dtype the IR uses (the course NDArray
is float32 only). Semantics follow the course ops (``transpose`` swaps two axes, ``conv`` is
NHWC with a (K, K, Cin, Cout) weight, reductions drop their axes).
"""
import math
from types import SimpleNamespace

import numpy as np

DEVICE = "numpy (needle_qc)"


class Tensor:
    """A NumPy array with the few Tensor methods the op table's evaluators call."""

    def __init__(self, array, *, device=None, dtype=None, requires_grad=False, **kwargs):
        array = array.data if isinstance(array, Tensor) else array
        self.data = np.asarray(array, dtype=dtype if dtype not in (None, "bfloat16")
                               else None)
        if dtype == "bfloat16" or (dtype is None and self.data.dtype == np.float64):
            self.data = self.data.astype(np.float32)

    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype.name)
    device = property(lambda self: DEVICE)

    def numpy(self):
        return self.data

    def realize_cached_data(self):
        return self.data

    def __add__(self, other):
        return _wrap(self.data + _raw(other))

    __radd__ = __add__

    def __sub__(self, other):
        return _wrap(self.data - _raw(other))

    def __mul__(self, other):
        return _wrap(self.data * _raw(other))

    __rmul__ = __mul__

    def __truediv__(self, other):
        return _wrap(self.data / _raw(other))

    def __neg__(self):
        return _wrap(-self.data)

    def __matmul__(self, other):
        return _wrap(self.data @ _raw(other))

    def reshape(self, shape):
        return _wrap(self.data.reshape(shape))

    def broadcast_to(self, shape):
        return _wrap(np.broadcast_to(self.data, shape))

    def __repr__(self):
        return f"needle_qc.Tensor({self.data!r})"


def _raw(value):
    return value.data if isinstance(value, Tensor) else np.float32(value) \
        if isinstance(value, float) else value


def _wrap(array):
    return Tensor(np.ascontiguousarray(array))


def _keep(array, like):
    """Result in the input's float dtype (NumPy promotes float32 op python-float to f32, but
    integer ops to int64)."""
    return array.astype(like.dtype, copy=False) if like.dtype.kind == "f" else array


def cpu():
    return DEVICE


# ----------------------------------------------------------------------------- ops

def _unary(fn):
    def make():
        return lambda x: _wrap(_keep(fn(x.data), x.data))
    return make


def _binary(fn):
    def make():
        return lambda a, b: _wrap(fn(a.data, b.data))
    return make


def _scalar(fn):
    def make(scalar):
        return lambda x: _wrap(_keep(fn(x.data, np.float32(scalar)), x.data))
    return make


def _axes(axes, ndim):
    if axes is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in ((axes,) if isinstance(axes, int) else axes))


def _transpose(axes=None):
    def run(x):
        i, j = (-2, -1) if axes is None else axes
        return _wrap(np.swapaxes(x.data, i, j))
    return run


def _summation(axes=None):
    return lambda x: _wrap(np.sum(x.data, axis=_axes(axes, x.data.ndim)))


def _logsumexp(axes=None):
    def run(x):
        ax = _axes(axes, x.data.ndim)
        m = np.max(x.data, axis=ax, keepdims=True)
        out = np.log(np.sum(np.exp(x.data - m), axis=ax)) + np.squeeze(m, axis=ax)
        return _wrap(out.astype(x.data.dtype))
    return run


def _max(axes=None, keepdims=False):
    return lambda x: _wrap(np.max(x.data, axis=_axes(axes, x.data.ndim), keepdims=keepdims))


def _logsoftmax():
    def run(x):
        shifted = x.data - np.max(x.data, axis=1, keepdims=True)
        return _wrap(shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True)))
    return run


def _split(axis):
    return lambda x: tuple(_wrap(np.take(x.data, i, axis=axis))
                           for i in range(x.data.shape[axis]))


def _tuple_get_item(index):
    return lambda t: t[index]


def _fused_add_scalars(c0, c1):
    return lambda x: (_wrap(x.data + np.float32(c0)), _wrap(x.data + np.float32(c1)))


def _flip(axes=None):
    return lambda x: _wrap(np.flip(x.data, axes))


def _dilate(axes, dilation):
    def run(x):
        shape = list(x.data.shape)
        index = [slice(None)] * len(shape)
        for a in _axes(axes, len(shape)):
            shape[a] *= dilation + 1
            index[a] = slice(None, None, dilation + 1)
        out = np.zeros(shape, x.data.dtype)
        out[tuple(index)] = x.data
        return _wrap(out)
    return run


def _undilate(axes, dilation):
    def run(x):
        index = [slice(None)] * x.data.ndim
        for a in _axes(axes, x.data.ndim):
            index[a] = slice(None, None, dilation + 1)
        return _wrap(x.data[tuple(index)])
    return run


def conv_nhwc(x, w, stride, padding):
    """NHWC ``x`` (*) (K, K, Cin, Cout) ``w`` by im2col in NumPy (float32 sums)."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    k = w.shape[0]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    win = win[:, ::stride, ::stride].transpose(0, 1, 2, 4, 5, 3)
    n, oh, ow = win.shape[:3]
    rows = win.reshape(n * oh * ow, -1)
    return (rows @ w.reshape(-1, w.shape[3])).reshape(n, oh, ow, w.shape[3])


def _conv(stride=1, padding=0):
    return lambda x, w: _wrap(conv_nhwc(x.data, w.data, stride, padding))


def _getitem(index):
    return lambda x: _wrap(x.data[index])


def _permute(axes):
    return lambda x: _wrap(np.transpose(x.data, axes))


def _astype(dtype):
    return lambda x: _wrap(x.data.astype(dtype))


def _reshape(shape):
    return lambda x: _wrap(x.data.reshape(shape))


def _broadcast(shape):
    return lambda x: _wrap(np.broadcast_to(x.data, shape))


def _sigmoid(x):
    return np.float32(1) / (np.float32(1) + np.exp(-x))


ops = SimpleNamespace(
    Negate=_unary(np.negative), Log=_unary(np.log), Exp=_unary(np.exp),
    ReLU=_unary(lambda x: np.maximum(x, np.zeros((), x.dtype))), Tanh=_unary(np.tanh),
    Sigmoid=_unary(_sigmoid), LogSoftmax=_logsoftmax,
    EWiseAdd=_binary(np.add), EWiseMul=_binary(np.multiply), EWiseDiv=_binary(np.divide),
    EWisePow=_binary(np.power), Maximum=_binary(np.maximum),
    AddScalar=_scalar(np.add), MulScalar=_scalar(np.multiply), DivScalar=_scalar(np.divide),
    PowerScalar=_scalar(np.power), MatMul=_binary(np.matmul), Transpose=_transpose,
    BroadcastTo=_broadcast, Summation=_summation, LogSumExp=_logsumexp, Max=_max,
    Split=_split, TupleGetItem=_tuple_get_item, FusedAddScalars=_fused_add_scalars,
    Flip=_flip, Dilate=_dilate, UnDilate=_undilate, Conv=_conv, GetItem=_getitem,
    Permute=_permute, AsType=_astype, Reshape=_reshape,
    stack=lambda args, axis: _wrap(np.stack([a.data for a in args], axis=axis)),
    make_tuple=lambda *args: tuple(args),
    relu=lambda x: ops.ReLU()(x), add=lambda a, b: ops.EWiseAdd()(a, b),
    reshape=lambda x, shape: _wrap(x.data.reshape(shape)),
    transpose=lambda x, axes=None: _transpose(axes)(x),
    broadcast_to=lambda x, shape: _wrap(np.broadcast_to(x.data, shape)),
    conv=lambda x, w, stride=1, padding=1: _conv(stride, padding)(x, w),
)


# ----------------------------------------------------------------------------- nn

class Module:
    """The op table builds layers without their constructors (``__new__`` + fields)."""

    def __init__(self):
        self.training = False

    def eval(self):
        self.training = False

    def __call__(self, *args):
        return self.forward(*args)


class Linear(Module):
    def forward(self, x):
        y = x.data @ self.weight.data
        if self.bias is not None:
            y = y + self.bias.data.reshape(1, -1)
        return _wrap(y)


class Conv(Module):
    def forward(self, x):
        nhwc = x.data.transpose(0, 2, 3, 1)
        y = conv_nhwc(nhwc, self.weight.data, self.stride, self.padding)
        if self.bias is not None:
            y = y + self.bias.data
        return _wrap(y.transpose(0, 3, 1, 2))


class BatchNorm1d(Module):
    def _normalize(self, x):
        std = np.sqrt(self.running_var.data + np.float32(self.eps))
        return (x - self.running_mean.data) / std * self.weight.data + self.bias.data

    def forward(self, x):
        return _wrap(self._normalize(x.data))


class BatchNorm2d(BatchNorm1d):
    def forward(self, x):
        y = self._normalize(x.data.transpose(0, 2, 3, 1))
        return _wrap(y.transpose(0, 3, 1, 2))


class LayerNorm1d(Module):
    def forward(self, x):
        d = x.data
        mean = d.mean(axis=-1, keepdims=True)
        var = ((d - mean) ** 2).mean(axis=-1, keepdims=True)
        y = (d - mean) / np.sqrt(var + np.float32(self.eps))
        return _wrap(y * self.weight.data + self.bias.data)


class Embedding(Module):
    def forward(self, x):
        return _wrap(self.weight.data[x.data.astype(np.int64)])


class Dropout(Module):
    def forward(self, x):
        return x


class MultiHeadAttention(Module):
    def forward(self, q, k, v):
        d = q.data.shape[-1]
        logits = q.data @ np.swapaxes(k.data, -1, -2) / np.float32(math.sqrt(d))
        if self.causal:
            i, j = logits.shape[-2:]
            mask = np.triu(np.ones((i, j), np.float32), j - i + 1)
            logits = logits - np.float32(np.finfo(np.float32).max) * mask
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = shifted / shifted.sum(axis=-1, keepdims=True)
        return _wrap(probs @ v.data), _wrap(probs)


nn = SimpleNamespace(Module=Module, Linear=Linear, Conv=Conv, BatchNorm1d=BatchNorm1d,
                     BatchNorm2d=BatchNorm2d, LayerNorm1d=LayerNorm1d, Embedding=Embedding,
                     Dropout=Dropout, MultiHeadAttention=MultiHeadAttention)


def _constant(*shape, c=1.0, device=None, dtype="float32", requires_grad=False):
    return _wrap(np.full(shape, c, dtype))


init = SimpleNamespace(constant=_constant)
