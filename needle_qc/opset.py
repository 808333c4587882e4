"""The IR op vocabulary: one table of OpDef rows (arity, attrs, shape rule, doc, evaluation).

Every op a Graph may contain is a row here. Passes and the quantizer add their own ops with
:func:`register_op`. Evaluation uses Needle's own ops and modules, so the interpreter gives the
same bits as eager Needle on the same device.

Shapes are tuples of dims; a dim is an ``int``, the batch symbol ``"N"`` or a multiple ``"k*N"``
(the LanguageModel's ``(T*N, vocab)`` logits). Tuple-valued nodes (``split``, ``make_tuple``)
carry a tuple of shapes and a tuple of dtypes.
"""

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import IRError

# ----------------------------------------------------------------------------- symbolic dims

_SYM_DIM = re.compile(r"^(?:([0-9]+)\*)?N$")


def dim_parts(dim):
    """Split a dim into ``(k, p)`` meaning ``k * N**p`` (p is 0 or 1)."""
    if isinstance(dim, int) and not isinstance(dim, bool):
        return dim, 0
    if isinstance(dim, str):
        match = _SYM_DIM.match(dim)
        if match:
            return int(match.group(1) or 1), 1
    raise IRError(f"bad dim {dim!r}: expected an int, 'N' or 'k*N'")


def make_dim(k, p):
    """Inverse of :func:`dim_parts`: ``(3, 1) -> "3*N"``, ``(1, 1) -> "N"``, ``(5, 0) -> 5``."""
    if p == 0 or k == 0:
        return k
    if p != 1:
        raise IRError(f"dim {k}*N^{p} is not supported: only one batch dim may enter a dim")
    return "N" if k == 1 else f"{k}*N"


def is_symbolic(dim):
    """True for ``"N"`` and ``"k*N"``."""
    return isinstance(dim, str) and bool(_SYM_DIM.match(dim))


def normalize_shape(shape):
    """Shape as a tuple of canonical dims (``"1*N"`` -> ``"N"``); raises IRError if malformed."""
    if not isinstance(shape, (tuple, list)):
        raise IRError(f"bad shape {shape!r}: expected a tuple of dims")
    return tuple(make_dim(*dim_parts(d)) for d in shape)


def shape_size(shape):
    """Number of elements of a shape as ``(k, p)`` (``k * N**p``)."""
    k, p = 1, 0
    for d in shape:
        dk, dp = dim_parts(d)
        k, p = k * dk, p + dp
    return k, p


def resolve_dim(dim, n):
    """Concrete value of a dim for batch size ``n`` (``n`` may be None for concrete dims)."""
    k, p = dim_parts(dim)
    if p and n is None:
        raise IRError(f"dim {dim!r} needs the batch size, which is unknown here")
    return k * n if p else k


def resolve_shape(shape, n):
    """Concrete tuple for ``shape`` at batch size ``n``; ``-1`` entries are left as they are."""
    return tuple(resolve_dim(d, n) for d in shape)


def format_dim(dim):
    return str(dim)


# ----------------------------------------------------------------------------- attr types

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return _is_int(v) or isinstance(v, float)


def _is_dim(v):
    return _is_int(v) or is_symbolic(v)


def is_plain(value):
    """True if ``value`` is plain JSON-able data: None/bool/int/float/str/tuple/list/dict."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def _is_seq(v, item):
    return isinstance(v, (tuple, list)) and all(item(x) for x in v)


ATTR_TYPES: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "float": _is_number,
    "number": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "ints": lambda v: _is_seq(v, _is_int),
    "shape": lambda v: _is_seq(v, lambda d: _is_dim(d) or d == -1),
    "axes": lambda v: v is None or _is_int(v) or _is_seq(v, _is_int),
    "any": is_plain,
}
"""Attr type names used in OpDef.attrs; a trailing ``?`` also allows None."""


def check_attr(spec, value):
    """True if ``value`` matches the attr type ``spec`` (e.g. ``"int"``, ``"shape?"``)."""
    if spec.endswith("?"):
        if value is None:
            return True
        spec = spec[:-1]
    if spec not in ATTR_TYPES:
        raise IRError(f"unknown attr type {spec!r}; valid: {', '.join(ATTR_TYPES)}")
    return ATTR_TYPES[spec](value)


# ----------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class OpDef:
    """One op of the IR.

    Attributes
    ----------
    name : str
        The op name used in ``Node.op`` and in the text form.
    num_inputs : int | str | tuple[int, int]
        Exact input count, ``"variadic"``, or an inclusive ``(min, max)`` range
        (``linear`` takes ``(2, 3)``: the bias is optional).
    attrs : dict[str, str]
        Attr name -> type name from :data:`ATTR_TYPES` (``"int"``, ``"shape?"``...).
        An attr whose type ends in ``?`` may be None or left out (evaluate with
        ``attrs.get``); every other attr must be present (``Graph.call`` fills defaults).
    shape_rule : callable or None
        ``shape_rule(input_metas, attrs) -> (shape, dtype)`` or a list of pairs for a
        tuple-valued op, or None when the node's own meta is authoritative (placeholder, param).
        Raises IRError on inputs the op cannot take.
    doc : str
        One line saying what the op computes.
    evaluate : callable or None
        ``evaluate(inputs, attrs, ctx) -> Tensor`` with Needle Tensors; ``ctx`` is the
        Interpreter (``ctx.device``, ``ctx.param(key)``, ``ctx.batch_size``, ``ctx.node``).
    defaults : dict
        Values ``Graph.call`` fills in for attrs left out.
    """

    name: str
    num_inputs: Any
    attrs: dict
    shape_rule: Callable | None
    doc: str
    evaluate: Callable | None = None
    defaults: dict = field(default_factory=dict)

    def arity_error(self, count):
        """A message if ``count`` inputs is wrong for this op, else None."""
        n = self.num_inputs
        if n == "variadic":
            return None
        lo, hi = n if isinstance(n, tuple) else (n, n)
        if lo <= count <= hi:
            return None
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        return f"{self.name} takes {want} inputs, got {count}"


_OPS: dict[str, OpDef] = {}


def register_op(opdef, *, replace=False):
    """Add ``opdef`` to the table; re-registering a name needs ``replace=True``."""
    if not isinstance(opdef, OpDef):
        raise IRError(f"register_op expects an OpDef, got {type(opdef).__name__}")
    if opdef.name in _OPS and not replace:
        raise IRError(f"op {opdef.name!r} is already registered (pass replace=True)")
    for spec in opdef.attrs.values():
        if spec.rstrip("?") not in ATTR_TYPES:
            valid = ", ".join(ATTR_TYPES)
            raise IRError(f"{opdef.name}: unknown attr type {spec!r}; valid: {valid}")
    _OPS[opdef.name] = opdef
    return opdef


def get_op(name):
    """The OpDef called ``name``; IRError with a did-you-mean otherwise."""
    try:
        return _OPS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_OPS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise IRError(f"unknown op {name!r}{hint}") from None


def all_ops():
    """Names of every registered op, in registration order."""
    return list(_OPS)


# ----------------------------------------------------------------------------- shape helpers

def _meta(metas, i):
    m = metas[i]
    if m is None or m.get("shape") is None:
        raise IRError(f"input {i} has no shape")
    return m["shape"], m.get("dtype")


def _same_dtype(metas, op):
    dtypes = [m.get("dtype") for m in metas]
    if len(set(dtypes)) > 1:
        raise IRError(f"dtype mismatch in {op}: {' vs '.join(map(str, dtypes))}")
    return dtypes[0]


def _norm_axis(axis, ndim, op):
    if not -ndim <= axis < max(ndim, 1):
        raise IRError(f"{op}: axis {axis} out of range for rank {ndim}")
    return axis % ndim if ndim else 0


def _axes_tuple(axes, ndim, op):
    if axes is None:
        return tuple(range(ndim))
    axes = (axes,) if _is_int(axes) else tuple(axes)
    return tuple(sorted({_norm_axis(a, ndim, op) for a in axes}))


def unary_rule(metas, attrs):
    """Same shape and dtype as the input."""
    return _meta(metas, 0)


def _elementwise_rule(op):
    def rule(metas, attrs):
        shapes = [_meta(metas, i)[0] for i in range(len(metas))]
        if len(set(shapes)) > 1:
            raise IRError(f"shape mismatch in {op}: {' vs '.join(map(str, shapes))}")
        return shapes[0], _same_dtype(metas, op)
    return rule


def _broadcast_dims(a, b, op):
    out = []
    for x, y in zip(reversed(a), reversed(b)):
        if x != y and 1 not in (x, y):
            raise IRError(f"{op}: cannot broadcast {a} with {b}")
        out.append(y if x == 1 else x)
    longer = a if len(a) > len(b) else b
    return tuple(longer[: len(longer) - len(out)]) + tuple(reversed(out))


def matmul_rule(metas, attrs):
    """(..., m, k) @ (..., k, n) -> (..., m, n); leading dims broadcast."""
    (a, dt), (b, _) = _meta(metas, 0), _meta(metas, 1)
    _same_dtype(metas, "matmul")
    if len(a) < 2 or len(b) < 2:
        raise IRError(f"matmul needs rank >= 2 inputs, got {a} and {b}")
    if a[-1] != b[-2]:
        raise IRError(f"matmul: inner dims differ: {a} @ {b}")
    out_dtype = "int32" if dt in ("int8", "uint8", "int32") else dt
    return _broadcast_dims(a[:-2], b[:-2], "matmul") + (a[-2], b[-1]), out_dtype


def transpose_rule(metas, attrs):
    """Course semantics: swap two axes (the last two when ``axes`` is None)."""
    shape, dt = _meta(metas, 0)
    axes = attrs.get("axes")
    i, j = (-2, -1) if axes is None else tuple(axes)
    out = list(shape)
    i, j = _norm_axis(i, len(shape), "transpose"), _norm_axis(j, len(shape), "transpose")
    out[i], out[j] = out[j], out[i]
    return tuple(out), dt


def reshape_rule(metas, attrs):
    """Target shape; one ``-1`` is inferred; element counts must agree (symbolically)."""
    shape, dt = _meta(metas, 0)
    target = list(attrs["shape"])
    size_k, size_p = shape_size(shape)
    if target.count(-1) > 1:
        raise IRError(f"reshape: at most one -1 in {tuple(target)}")
    known = [d for d in target if d != -1]
    k, p = shape_size(known)
    if -1 in target:
        if k == 0 or size_k % k or size_p < p:
            raise IRError(f"reshape: cannot infer -1 reshaping {shape} to {tuple(target)}")
        target[target.index(-1)] = make_dim(size_k // k, size_p - p)
        k, p = size_k, size_p
    if (k, p) != (size_k, size_p):
        raise IRError(f"reshape: {shape} and {tuple(target)} have different sizes")
    return normalize_shape(target), dt


def broadcast_to_rule(metas, attrs):
    """numpy broadcasting of the input to ``shape``."""
    shape, dt = _meta(metas, 0)
    target = normalize_shape(attrs["shape"])
    if len(shape) > len(target):
        raise IRError(f"broadcast_to: cannot broadcast {shape} to {target}")
    for x, y in zip(reversed(shape), reversed(target)):
        if x not in (1, y):
            raise IRError(f"broadcast_to: cannot broadcast {shape} to {target}")
    return target, dt


def _reduce_rule(op, keepdims_attr=False):
    def rule(metas, attrs):
        shape, dt = _meta(metas, 0)
        axes = _axes_tuple(attrs.get("axes"), len(shape), op)
        if keepdims_attr and attrs.get("keepdims"):
            return tuple(1 if i in axes else d for i, d in enumerate(shape)), dt
        out_dtype = "int32" if op == "summation" and dt in ("int8", "uint8") else dt
        return tuple(d for i, d in enumerate(shape) if i not in axes), out_dtype
    return rule


def stack_rule(metas, attrs):
    """Inputs of one shape -> new axis of length len(inputs)."""
    shape, _ = _elementwise_rule("stack")(metas, attrs)
    dt = _same_dtype(metas, "stack")
    axis = _norm_axis(attrs["axis"], len(shape) + 1, "stack")
    return shape[:axis] + (len(metas),) + shape[axis:], dt


def split_rule(metas, attrs):
    """One input -> tuple of slices along ``axis`` (the axis is removed)."""
    shape, dt = _meta(metas, 0)
    axis = _norm_axis(attrs["axis"], len(shape), "split")
    if not _is_int(shape[axis]):
        raise IRError(f"split: axis {axis} of {shape} is the batch dim; cannot unroll it")
    part = shape[:axis] + shape[axis + 1:]
    return [(part, dt)] * shape[axis]


def make_tuple_rule(metas, attrs):
    """Inputs -> one tuple value."""
    return [_meta(metas, i) for i in range(len(metas))]


def tuple_get_item_rule(metas, attrs):
    """Element ``index`` of a tuple value."""
    shapes, dtypes = _meta(metas, 0)
    if not isinstance(dtypes, tuple):
        raise IRError("tuple_get_item: input is not a tuple value")
    index = attrs["index"]
    if not -len(shapes) <= index < len(shapes):
        raise IRError(f"tuple_get_item: index {index} out of range for {len(shapes)} items")
    return shapes[index], dtypes[index]


def dilate_rule(metas, attrs):
    """Each axis in ``axes`` grows by a factor ``dilation + 1``."""
    shape, dt = _meta(metas, 0)
    out = list(shape)
    for a in _axes_tuple(attrs["axes"], len(shape), "dilate"):
        k, p = dim_parts(out[a])
        out[a] = make_dim(k * (attrs["dilation"] + 1), p)
    return tuple(out), dt


def undilate_rule(metas, attrs):
    """Inverse of dilate: every (dilation+1)-th element along ``axes``."""
    shape, dt = _meta(metas, 0)
    out = list(shape)
    step = attrs["dilation"] + 1
    for a in _axes_tuple(attrs["axes"], len(shape), "undilate"):
        k, p = dim_parts(out[a])
        if p and k % step:
            raise IRError(f"undilate: symbolic dim {out[a]} not divisible by {step}")
        out[a] = make_dim(k // step if p else -(-k // step), p)
    return tuple(out), dt


def _conv_out(size, k, stride, padding, op):
    if not _is_int(size):
        raise IRError(f"{op}: spatial dim {size!r} must be concrete")
    out = (size + 2 * padding - k) // stride + 1
    if out <= 0:
        raise IRError(f"{op}: kernel {k} larger than padded input {size}+2*{padding}")
    return out


def conv_rule(metas, attrs):
    """NHWC x, (K,K,Cin,Cout) w -> NHWC output (Needle's Conv primitive)."""
    (x, dt), (w, _) = _meta(metas, 0), _meta(metas, 1)
    if len(x) != 4 or len(w) != 4 or x[3] != w[2] or w[0] != w[1]:
        raise IRError(f"conv: bad shapes x{x} w{w}; want NHWC and (K,K,{x[-1]},Cout)")
    s, p = attrs["stride"], attrs["padding"]
    h, wd = (_conv_out(x[i], w[0], s, p, "conv") for i in (1, 2))
    return (x[0], h, wd, w[3]), dt


def conv2d_rule(metas, attrs):
    """NCHW x, (K,K,Cin,Cout) w, optional (Cout,) bias -> NCHW output."""
    (x, dt), (w, _) = _meta(metas, 0), _meta(metas, 1)
    if len(x) != 4 or len(w) != 4 or x[1] != w[2] or w[0] != w[1]:
        raise IRError(f"conv2d: bad shapes x{x} w{w}; want NCHW and (K,K,{x[1]},Cout)")
    _check_bias(metas, w[3], "conv2d")
    s, p = attrs["stride"], attrs["padding"]
    h, wd = (_conv_out(x[i], w[0], s, p, "conv2d") for i in (2, 3))
    return (x[0], w[3], h, wd), dt


def _check_bias(metas, out_features, op):
    if len(metas) < 3:
        return
    b, _ = _meta(metas, 2)
    if shape_size(b) != (out_features, 0) or (b and b[-1] != out_features):
        raise IRError(f"{op}: bias shape {b} does not match {out_features} outputs")


def linear_rule(metas, attrs):
    """x (..., in) @ w (in, out) + b (out,) or (1, out) -> (..., out)."""
    (x, dt), (w, _) = _meta(metas, 0), _meta(metas, 1)
    if len(w) != 2 or not x or x[-1] != w[0]:
        raise IRError(f"linear: x{x} does not match weight{w} (in, out)")
    _check_bias(metas, w[1], "linear")
    return x[:-1] + (w[1],), dt


def batch_norm_rule(metas, attrs):
    """Normalizes over channels: dims=1 (N, C) or dims=2 (N, C, H, W)."""
    x, dt = _meta(metas, 0)
    if attrs["dims"] not in (1, 2) or len(x) != {1: 2, 2: 4}[attrs["dims"]]:
        raise IRError(f"batch_norm(dims={attrs['dims']}): bad input shape {x}")
    for i in range(1, 5):
        if shape_size(_meta(metas, i)[0]) != (x[1], 0):
            raise IRError(f"batch_norm: input {i} shape {metas[i]['shape']} != ({x[1]},)")
    return x, dt


def layer_norm_rule(metas, attrs):
    """Normalizes each row over the last dim."""
    x, dt = _meta(metas, 0)
    for i in (1, 2):
        if shape_size(_meta(metas, i)[0]) != (x[-1], 0):
            raise IRError(f"layer_norm: input {i} shape {metas[i]['shape']} != ({x[-1]},)")
    return x, dt


def embedding_rule(metas, attrs):
    """Integer ids (any shape) -> ids.shape + (embedding_dim,)."""
    (x, _), (w, dt) = _meta(metas, 0), _meta(metas, 1)
    if len(w) != 2:
        raise IRError(f"embedding: weight must be (num, dim), got {w}")
    return x + (w[1],), dt


def attention_rule(metas, attrs):
    """q (B,H,Tq,D), k and v (B,H,Tk,D) -> (result (B,H,Tq,D), probs (B,H,Tq,Tk))."""
    (q, dt), (k, _), (v, _) = (_meta(metas, i) for i in range(3))
    if len(q) != 4 or k != v or k[:2] != q[:2] or k[3] != q[3]:
        raise IRError(f"multi_head_attention: bad shapes q{q} k{k} v{v}")
    return [(q, dt), (q[:3] + (k[2],), dt)]


def full_rule(metas, attrs):
    """A tensor of one value; its shape may contain N."""
    return normalize_shape(attrs["shape"]), attrs["dtype"]


def astype_rule(metas, attrs):
    """Same shape, dtype ``attrs['dtype']``."""
    return _meta(metas, 0)[0], attrs["dtype"]


def fused_add_scalars_rule(metas, attrs):
    """x -> (x + c0, x + c1)."""
    return [_meta(metas, 0)] * 2


def getitem_rule(metas, attrs):
    """Basic indexing: per leading dim an int (drops the dim) or ``[start, stop, step]``."""
    shape, dt = _meta(metas, 0)
    index = attrs["index"]
    if len(index) > len(shape):
        raise IRError(f"getitem: {len(index)} indices for rank {len(shape)}")
    out = []
    for d, idx in zip(shape, index):
        if _is_int(idx):
            continue
        if list(idx) in ([None, None, None], [0, None, 1], [None, None, 1]):
            out.append(d)
            continue
        if not _is_int(d):
            raise IRError(f"getitem: slice {idx} of the batch dim {d} needs concrete bounds")
        out.append(len(range(*slice(*idx).indices(d))))
    return tuple(out) + tuple(shape[len(index):]), dt


def permute_rule(metas, attrs):
    """Reorder all axes (numpy.transpose)."""
    shape, dt = _meta(metas, 0)
    axes = tuple(attrs["axes"])
    if sorted(axes) != list(range(len(shape))):
        raise IRError(f"permute: {axes} is not a permutation of rank {len(shape)}")
    return tuple(shape[a] for a in axes), dt


# ----------------------------------------------------------------------------- evaluation

def _needle():
    # Imported lazily so the IR works (build, print, lint) without a Needle install.
    import needle

    return needle


def _as_tuple(value):
    return tuple(value) if isinstance(value, list) else value


def needle_op(class_name, *attr_names):
    """Evaluate by calling ``needle.ops.<class_name>(**attrs)`` on the inputs (bit-exact)."""
    def evaluate(inputs, attrs, ctx):
        cls = getattr(_needle().ops, class_name)
        return cls(**{a: _as_tuple(attrs[a]) for a in attr_names})(*inputs)
    evaluate.needle_class = class_name
    return evaluate


def _make_module(class_name, **fields):
    # A module built without its constructor: no RNG draws, no parameter allocation.
    nn = _needle().nn
    cls = getattr(nn, class_name)
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    module.__dict__.update(fields)
    module.eval()
    return module


def _eval_linear(inputs, attrs, ctx):
    x, w, *b = inputs
    linear = _make_module("Linear", in_features=w.shape[0], out_features=w.shape[1],
                          weight=w, bias=b[0] if b else None)
    return linear(x)


def _eval_conv2d(inputs, attrs, ctx):
    x, w, *b = inputs
    k, stride, padding = w.shape[0], attrs["stride"], attrs["padding"]
    if padding == k // 2:
        conv = _make_module("Conv", in_channels=w.shape[2], out_channels=w.shape[3],
                            kernel_size=k, stride=stride, padding=padding, weight=w,
                            bias=b[0] if b else None)
        return conv(x)
    return _conv2d_by_primitives(x, w, b[0] if b else None, stride, padding)


def _conv2d_by_primitives(x, w, b, stride, padding):
    ops = _needle().ops
    nhwc = ops.transpose(ops.transpose(x, (1, 2)), (2, 3))
    out = ops.conv(nhwc, w, stride=stride, padding=padding)
    if b is not None:
        out = out + ops.broadcast_to(ops.reshape(b, (1, 1, 1, w.shape[3])), out.shape)
    return ops.transpose(ops.transpose(out, (2, 3)), (1, 2))


def _eval_batch_norm(inputs, attrs, ctx):
    x, weight, bias, mean, var = inputs
    cls = "BatchNorm1d" if attrs["dims"] == 1 else "BatchNorm2d"
    bn = _make_module(cls, dim=weight.shape[-1], eps=attrs["eps"], momentum=0.1,
                      weight=weight, bias=bias, running_mean=mean, running_var=var,
                      device=x.device, dtype=x.dtype)
    return bn(x)


def _eval_layer_norm(inputs, attrs, ctx):
    x, weight, bias = inputs
    ln = _make_module("LayerNorm1d", dim=weight.shape[-1], eps=attrs["eps"], weight=weight,
                      bias=bias, device=x.device, dtype=x.dtype)
    return ln(x)


def _eval_embedding(inputs, attrs, ctx):
    x, weight = inputs
    emb = _make_module("Embedding", num_embeddings=weight.shape[0],
                       embedding_dim=weight.shape[1], weight=weight, device=x.device,
                       dtype=weight.dtype)
    return emb(x)


def _eval_attention(inputs, attrs, ctx):
    q = inputs[0]
    dropout = _make_module("Dropout", p=0.0)
    attn = _make_module("MultiHeadAttention", causal=attrs["causal"], dropout=dropout,
                        device=q.device, dtype=q.dtype)
    result, probs = attn(*inputs)
    return _needle().ops.make_tuple(result, probs)


def _eval_reshape(inputs, attrs, ctx):
    (x,) = inputs
    shape = list(attrs["shape"])
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = math.prod(x.shape) // known if known else 0
    return _needle().ops.reshape(x, tuple(shape))


def _eval_full(inputs, attrs, ctx):
    return _needle().init.constant(*attrs["shape"], c=attrs["value"], device=ctx.device,
                                   dtype=attrs["dtype"], requires_grad=False)


def _eval_stack(inputs, attrs, ctx):
    return _needle().ops.stack(list(inputs), attrs["axis"])


def _eval_make_tuple(inputs, attrs, ctx):
    return _needle().ops.make_tuple(*inputs)


def _eval_param(inputs, attrs, ctx):
    return ctx.param(attrs["tensor"])


def index_from_attr(index):
    """The Python index (ints and slices) that a getitem ``index`` attr stands for."""
    return tuple(i if _is_int(i) else slice(*i) for i in index)


def index_to_attr(index):
    """A getitem ``index`` attr (plain data) from ints and slices."""
    index = index if isinstance(index, tuple) else (index,)
    return tuple(i if _is_int(i) else [i.start, i.stop, i.step] for i in index)


def _eval_getitem(inputs, attrs, ctx):
    return _needle().ops.GetItem(index_from_attr(attrs["index"]))(inputs[0])


# ----------------------------------------------------------------------------- the rows

def _row(name, num_inputs, attrs, rule, doc, evaluate=None, **defaults):
    register_op(OpDef(name, num_inputs, dict(attrs), rule, doc, evaluate, defaults))


# Graph structure
_row("placeholder", 0, {}, None, "A graph input; its meta gives shape and dtype.")
_row("param", 0, {"tensor": "str"}, None,
     "A module-owned tensor (weight, bias, running stats) from Graph.tensors.", _eval_param)
_row("constant", 0, {"tensor": "str"}, None,
     "A tensor created inside forward, stored in Graph.tensors.", _eval_param)
_row("full", 0, {"shape": "shape", "value": "float", "dtype": "str"}, full_rule,
     "A tensor filled with one value whose shape may contain N (e.g. zero hidden state).",
     _eval_full)
_row("output", "variadic", {"structure": "any"}, None,
     "The graph's results; ``structure`` nests input indices as the model returned them.")

# High-level ops (what passes reason about)
_row("linear", (2, 3), {}, linear_rule, "x @ w + b (Needle nn.Linear).", _eval_linear)
_row("conv2d", (2, 3), {"stride": "int", "padding": "int"}, conv2d_rule,
     "NCHW convolution with (K,K,Cin,Cout) weight and (Cout,) bias (Needle nn.Conv).",
     _eval_conv2d, stride=1, padding=0)
_row("batch_norm", 5, {"eps": "float", "dims": "int"}, batch_norm_rule,
     "Eval-mode batch norm (x, weight, bias, running_mean, running_var); dims 1 or 2.",
     _eval_batch_norm, eps=1e-5, dims=2)
_row("layer_norm", 3, {"eps": "float"}, layer_norm_rule,
     "Layer norm over the last dim (x, weight, bias) (Needle nn.LayerNorm1d).",
     _eval_layer_norm, eps=1e-5)
_row("embedding", 2, {}, embedding_rule, "Row lookup of ids in a (num, dim) table.",
     _eval_embedding)
_row("multi_head_attention", 3, {"causal": "bool"}, attention_rule,
     "softmax(q k^T / sqrt(D) [+ causal mask]) v -> (result, probs) (Needle MultiHeadAttention).",
     _eval_attention, causal=False)
_row("reshape", 1, {"shape": "shape"}, reshape_rule,
     "Reshape; shape may hold N, k*N and one -1.", _eval_reshape)

# Needle primitives, one per Needle op class
_UNARY = [("negate", "Negate"), ("log", "Log"), ("exp", "Exp"), ("relu", "ReLU"),
          ("tanh", "Tanh"), ("sigmoid", "Sigmoid"), ("logsoftmax", "LogSoftmax")]
for _name, _cls in _UNARY:
    _row(_name, 1, {}, unary_rule, f"Elementwise {_name} (needle.ops.{_cls}).",
         needle_op(_cls))

_BINARY = [("add", "EWiseAdd"), ("mul", "EWiseMul"), ("div", "EWiseDiv"), ("pow", "EWisePow"),
           ("maximum", "Maximum")]
for _name, _cls in _BINARY:
    _row(_name, 2, {}, _elementwise_rule(_name),
         f"Elementwise {_name} of two equal-shape tensors (needle.ops.{_cls}).", needle_op(_cls))

_SCALAR = [("add_scalar", "AddScalar"), ("mul_scalar", "MulScalar"),
           ("div_scalar", "DivScalar"), ("power_scalar", "PowerScalar")]
for _name, _cls in _SCALAR:
    _row(_name, 1, {"scalar": "number"}, unary_rule,
         f"Elementwise {_name.replace('_', ' ')} (needle.ops.{_cls}).",
         needle_op(_cls, "scalar"))

_row("matmul", 2, {}, matmul_rule, "Matrix product, leading dims broadcast (needle.ops.MatMul).",
     needle_op("MatMul"))
_row("transpose", 1, {"axes": "ints?"}, transpose_rule,
     "Swap two axes, the last two if axes is None (course Transpose).",
     needle_op("Transpose", "axes"), axes=None)
_row("broadcast_to", 1, {"shape": "shape"}, broadcast_to_rule,
     "numpy broadcast to shape (needle.ops.BroadcastTo).", needle_op("BroadcastTo", "shape"))
_row("summation", 1, {"axes": "axes"}, _reduce_rule("summation"),
     "Sum over axes (all if None), reduced dims dropped.", needle_op("Summation", "axes"),
     axes=None)
_row("logsumexp", 1, {"axes": "axes"}, _reduce_rule("logsumexp"),
     "Stable log-sum-exp over axes, reduced dims dropped.", needle_op("LogSumExp", "axes"),
     axes=None)
_row("max", 1, {"axes": "axes", "keepdims": "bool"}, _reduce_rule("max", keepdims_attr=True),
     "Maximum over axes.", needle_op("Max", "axes", "keepdims"), axes=None, keepdims=False)
_row("stack", "variadic", {"axis": "int"}, stack_rule,
     "Stack equal-shape inputs along a new axis.", _eval_stack, axis=0)
_row("split", 1, {"axis": "int"}, split_rule,
     "Split along an axis into a tuple (axis removed).", needle_op("Split", "axis"))
_row("make_tuple", "variadic", {}, make_tuple_rule, "Group inputs into one tuple value.",
     _eval_make_tuple)
_row("tuple_get_item", 1, {"index": "int"}, tuple_get_item_rule, "Element of a tuple value.",
     needle_op("TupleGetItem", "index"))
_row("fused_add_scalars", 1, {"c0": "number", "c1": "number"}, fused_add_scalars_rule,
     "x -> (x + c0, x + c1).", needle_op("FusedAddScalars", "c0", "c1"))
_row("flip", 1, {"axes": "ints?"}, unary_rule, "Reverse along axes.", needle_op("Flip", "axes"))
_row("dilate", 1, {"axes": "ints", "dilation": "int"}, dilate_rule,
     "Insert `dilation` zeros after each element along axes.",
     needle_op("Dilate", "axes", "dilation"))
_row("undilate", 1, {"axes": "ints", "dilation": "int"}, undilate_rule,
     "Keep every (dilation+1)-th element along axes.",
     needle_op("UnDilate", "axes", "dilation"))
_row("conv", 2, {"stride": "int", "padding": "int"}, conv_rule,
     "NHWC convolution primitive with (K,K,Cin,Cout) weight (needle.ops.Conv).",
     needle_op("Conv", "stride", "padding"), stride=1, padding=0)
_row("getitem", 1, {"index": "any"}, getitem_rule,
     "Basic indexing: an int (drops the dim) or [start, stop, step] per leading dim.",
     _eval_getitem)
_row("permute", 1, {"axes": "ints"}, permute_rule, "Reorder all axes (numpy.transpose).",
     needle_op("Permute", "axes"))
_row("astype", 1, {"dtype": "str"}, astype_rule, "Cast to dtype.",
     needle_op("AsType", "dtype"))
