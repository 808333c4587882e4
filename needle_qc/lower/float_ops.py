"""fp32 kernels (C++ NDArray GEMM, NHWC im2col) and the builders of float ops."""

import numpy as np

from needle_qc import opset
from needle_qc.frontend.compute import zero_copy
from needle_qc.lower.common import _shared_layout, _weight_record
from needle_qc.lower.conv_f32 import direct_conv_available, direct_conv_f32, direct_gemm_f32
from needle_qc.lower.program import Impl
from needle_qc.lower.registry import builder, register_builder
from needle_qc.opset.activations import apply_to_array

# ----------------------------------------------------------------------------- fp32 helpers

def _ndl_module():
    # Only the bundled reference Needle's C++ backend, never a user's (see frontend.compute).
    from needle_qc.frontend.compute import bundled_cpu_module

    return bundled_cpu_module()


class F32Matmul:
    """``a @ w`` with a fixed fp32 weight uploaded once to the C++ NDArray backend."""

    def __init__(self, w2d):
        w2d = np.ascontiguousarray(w2d, np.float32)
        self.k, self.n = w2d.shape
        self.nbytes = w2d.nbytes
        self.mod = _ndl_module()
        self.direct = None  # the direct kernel, where its sums equal the NDArray sgemm's
        if self.mod is None:
            self.w = w2d  # numpy fallback when the C++ backend is not built
            return
        self.direct = direct_gemm_f32(w2d)
        if self.direct is not None:  # the packed weight is the only copy kept
            self.w, self.nbytes = None, self.direct.nbytes
            return
        self.w = self.mod.Array(w2d.size)
        self.mod.from_numpy(w2d, self.w)

    def __call__(self, a2d):
        a2d = np.ascontiguousarray(a2d, np.float32)
        m = a2d.shape[0]
        if self.mod is not None and self.direct is not None and m:
            return self.direct(a2d)
        if self.mod is None or m == 0:
            return a2d @ (self.w if self.mod is None else np.zeros((self.k, self.n), np.float32))
        a = self.mod.Array(a2d.size)
        self.mod.from_numpy(a2d, a)
        return self._product(a, m)

    def bound_layer(self, bias, relu):
        """The direct GEMM bound to this weight, ``bias`` (or None) and ``relu``: a callable on
        [m, k] float32 rows, or None where the direct kernel is not in use."""
        if self.mod is None or self.direct is None:
            return None
        if bias is not None and (bias.dtype != np.float32 or bias.size != self.n):
            return None  # numpy's broadcast or wider add: keep the numpy pass
        return self.direct.bind(bias, relu)

    @property
    def kernel(self):
        """What computes the product (for explain())."""
        return "fp32 gemm (C++ direct, packed weight)" if self.direct else "fp32 gemm (ndl.cpu)"

    def with_rows(self, m, fill):
        """``rows @ w`` where ``fill(view)`` writes the [m, k] rows straight into the backend's
        buffer (a zero-copy numpy view): one copy fewer than building them in numpy first."""
        if self.mod is None or m == 0 or not zero_copy(self.mod) or self.direct is not None:
            rows = np.empty((m, self.k), np.float32)
            fill(rows)
            return self(rows)
        a = self.mod.Array(m * self.k)
        fill(self.mod.to_numpy(a, (m, self.k), (self.k, 1), 0))
        return self._product(a, m)

    def _product(self, a, m):
        out = self.mod.Array(m * self.n)
        self.mod.matmul(a, self.w, out, m, self.k, self.n)
        return self.mod.to_numpy(out, (m, self.n), (self.n, 1), 0)


def _linear_f32(mm, bias, activation=None):
    bind = getattr(mm, "bound_layer", None)  # (a lazily dequantized weight has none)
    layer = bind(bias, activation == "relu") if bind else None
    if layer is not None:  # bias and ReLU in the GEMM's call: no numpy passes over y
        after = None if activation == "relu" else activation

        def run_bound(x):
            y = layer(np.asarray(x, np.float32).reshape(-1, mm.k))
            return apply_to_array(after, y).reshape(x.shape[:-1] + (mm.n,))

        return run_bound

    def run(x):
        y = mm(x.reshape(-1, mm.k))
        if bias is not None:
            np.add(y, bias, out=y)
        y = apply_to_array(activation, y)
        return y.reshape(x.shape[:-1] + (mm.n,))

    return run


def _patches_nhwc(x, k, stride, padding):
    """The [n, oh, ow, kh, kw, c] view of NHWC ``x``'s patches (no copy yet)."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    return win[:, ::stride, ::stride].transpose(0, 1, 2, 4, 5, 3)


def im2col_nhwc(x, k, stride, padding):
    """Patches of NHWC ``x`` as rows ``[N*OH*OW, k*k*C]`` in (kh, kw, c) order."""
    win = _patches_nhwc(x, k, stride, padding)
    n, oh, ow = win.shape[:3]
    return win.reshape(n * oh * ow, -1), (n, oh, ow)


def _conv_f32_nhwc(w, bias, stride, padding, activation=None):
    if direct_conv_available():  # the C++ direct conv; the im2col path is its fallback
        return direct_conv_f32(w, bias, stride, padding, activation)
    k, cout = w.shape[0], w.shape[3]
    mm = F32Matmul(w.reshape(-1, cout))

    def run(x):
        win = _patches_nhwc(np.asarray(x, np.float32), k, stride, padding)
        n, oh, ow = win.shape[:3]
        y = mm.with_rows(n * oh * ow, lambda rows: np.copyto(rows.reshape(win.shape), win))
        if bias is not None:
            np.add(y, bias, out=y)
        y = apply_to_array(activation, y)
        return y.reshape(n, oh, ow, cout)

    return run, mm


# ----------------------------------------------------------------------------- builders

def _float_layer_consts(ctx, node):
    """(w, bias or None) of a float32 linear/conv2d with constant operands, else None."""
    w = ctx.const(node.inputs[1])
    has_bias = len(node.inputs) == 3
    bias = ctx.const(node.inputs[2]) if has_bias else None
    if w is None or (has_bias and bias is None) or node.meta["dtype"] != "float32":
        return None
    return w, bias


@builder("linear")
def build_linear(ctx, node):
    consts = _float_layer_consts(ctx, node)
    if consts is None:
        return None
    w, bias = consts
    mm = F32Matmul(w)
    return Impl(mm.kernel, "float layer", _linear_f32(
        mm, None if bias is None else bias.astype(np.float32), node.attrs.get("activation")),
        [ctx.value(node.inputs[0], "logical")],
        weights=[_weight_record(node, "float32", w.size, mm.nbytes, 0)])


@builder("conv2d")
def build_conv2d(ctx, node):
    consts = _float_layer_consts(ctx, node)
    if consts is None:
        return None
    w, bias = consts
    conv, mm = _conv_f32_nhwc(w.astype(np.float32), None if bias is None else
                              bias.astype(np.float32), node.attrs["stride"],
                              node.attrs["padding"], node.attrs.get("activation"))
    why = node.meta.get("float_reason", "float layer")  # e.g. a conv that dynamic kept float
    return Impl(getattr(conv, "kernel", "fp32 im2col gemm (ndl.cpu, NHWC)"), why, conv,
                [ctx.value(node.inputs[0], "nhwc")], "nhwc",
                [_weight_record(node, "float32", w.size, mm.nbytes, 0)])


def _elementwise(np_fn, label):
    def build(ctx, node):
        if node.meta.get("dtype") != "float32" and label not in ("relu", "maximum"):
            return None
        if any(ctx.const(i) is not None for i in node.inputs):
            return None  # a param operand is broadcast in logical layout: leave it to Needle
        layout = _shared_layout(ctx, node)
        scalar = node.attrs.get("scalar")
        fn = (lambda *xs: np_fn(*xs, scalar)) if scalar is not None else np_fn
        return Impl(f"{label} (numpy)", "elementwise", fn,
                    [ctx.value(i, layout) for i in node.inputs], layout)
    return build


def _relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


def _sigmoid(x):
    return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(x.dtype)


@builder("reshape")
def build_reshape(ctx, node):
    shape = node.attrs["shape"]
    symbolic = [d for d in shape if opset.is_symbolic(d)]
    if len(symbolic) > 1 or (symbolic and -1 in shape):
        return None
    target = tuple(-1 if opset.is_symbolic(d) else d for d in shape)
    return Impl("reshape (view)", "no data movement in logical layout",
                lambda x: x.reshape(target), [ctx.value(node.inputs[0], "logical")])


@builder("observer")
def build_observer(ctx, node):
    """Observers update ``graph.observers`` through the op table (they must see the data)."""
    return None


# Elementwise float ops on numpy, in whatever layout their inputs share.
for _op, _fn in {
    "relu": _relu,
    "add": np.add,
    "add_relu": lambda a, b: _relu(np.add(a, b)),
    "mul": np.multiply,
    "maximum": np.maximum,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "add_scalar": lambda x, c: (x + np.float32(c)).astype(x.dtype),
    "mul_scalar": lambda x, c: (x * np.float32(c)).astype(x.dtype),
}.items():
    register_builder(_op, _elementwise(_fn, _op))


@builder("activation")
def build_activation(ctx, node):
    """A fused activation on its own: the table's numpy form, in its input's layout."""
    if node.meta.get("dtype") != "float32":
        return None
    layout = _shared_layout(ctx, node)
    name = node.attrs["name"]
    return Impl(f"{name} (numpy)", "elementwise activation",
                lambda x: apply_to_array(name, x), [ctx.value(node.inputs[0], layout)], layout)
