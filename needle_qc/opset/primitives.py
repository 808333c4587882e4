"""IR op rows for the Needle primitives, one per ``needle.ops`` class, with their rules."""

from needle_qc.errors import IRError
from needle_qc.opset.table import (
    Traits,
    _axes_tuple,
    _broadcast_dims,
    _conv_out,
    _elementwise_rule,
    _is_int,
    _meta,
    _needle,
    _norm_axis,
    _row,
    _same_dtype,
    dim_parts,
    make_dim,
    normalize_shape,
    unary_rule,
)

# ----------------------------------------------------------------------------- shape rules

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


def conv_rule(metas, attrs):
    """NHWC x, (K,K,Cin,Cout) w -> NHWC output (Needle's Conv primitive)."""
    (x, dt), (w, _) = _meta(metas, 0), _meta(metas, 1)
    if len(x) != 4 or len(w) != 4 or x[3] != w[2] or w[0] != w[1]:
        raise IRError(f"conv: bad shapes x{x} w{w}; want NHWC and (K,K,{x[-1]},Cout)")
    s, p = attrs["stride"], attrs["padding"]
    h, wd = (_conv_out(x[i], w[0], s, p, "conv") for i in (1, 2))
    return (x[0], h, wd, w[3]), dt


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

def _as_tuple(value):
    return tuple(value) if isinstance(value, list) else value


def needle_op(class_name, *attr_names):
    """Evaluate by calling ``needle.ops.<class_name>(**attrs)`` on the inputs (bit-exact)."""
    def evaluate(inputs, attrs, ctx):
        cls = getattr(_needle().ops, class_name)
        return cls(**{a: _as_tuple(attrs[a]) for a in attr_names})(*inputs)
    evaluate.needle_class = class_name
    return evaluate


def _eval_stack(inputs, attrs, ctx):
    return _needle().ops.stack(list(inputs), attrs["axis"])


def _eval_make_tuple(inputs, attrs, ctx):
    return _needle().ops.make_tuple(*inputs)


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

# Needle primitives, one per Needle op class
_UNARY = [("negate", "Negate"), ("log", "Log"), ("exp", "Exp"), ("relu", "ReLU"),
          ("tanh", "Tanh"), ("sigmoid", "Sigmoid"), ("logsoftmax", "LogSoftmax")]
_LAYOUT_FREE = ("negate", "exp", "relu", "tanh", "sigmoid", "add", "mul", "maximum",
                "add_scalar", "mul_scalar", "div_scalar")
# ^ the elementwise primitives the lowering has NHWC-agnostic code for (log, logsoftmax, div,
#   pow and power_scalar run through the op table in the IR's layout)
for _name, _cls in _UNARY:
    _row(_name, 1, {}, unary_rule, f"Elementwise {_name} (needle.ops.{_cls}).",
         needle_op(_cls), traits=Traits(layout_free=_name in _LAYOUT_FREE, needle_class=_cls))

_BINARY = [("add", "EWiseAdd"), ("mul", "EWiseMul"), ("div", "EWiseDiv"), ("pow", "EWisePow"),
           ("maximum", "Maximum")]
for _name, _cls in _BINARY:
    _row(_name, 2, {}, _elementwise_rule(_name),
         f"Elementwise {_name} of two equal-shape tensors (needle.ops.{_cls}).", needle_op(_cls),
         traits=Traits(layout_free=_name in _LAYOUT_FREE, needle_class=_cls,
                       quantizable="activations" if _name == "add" else None,
                       module_type="add" if _name == "add" else None,
                       shares_qparams=_name == "maximum"))

_SCALAR = [("add_scalar", "AddScalar"), ("mul_scalar", "MulScalar"),
           ("div_scalar", "DivScalar"), ("power_scalar", "PowerScalar")]
for _name, _cls in _SCALAR:
    _row(_name, 1, {"scalar": "number"}, unary_rule,
         f"Elementwise {_name.replace('_', ' ')} (needle.ops.{_cls}).",
         needle_op(_cls, "scalar"),
         traits=Traits(layout_free=_name in _LAYOUT_FREE, needle_class=_cls))

_row("matmul", 2, {}, matmul_rule, "Matrix product, leading dims broadcast (needle.ops.MatMul).",
     needle_op("MatMul"),
     traits=Traits(quantizable="activations", module_type="matmul", needle_class="MatMul"))
_row("transpose", 1, {"axes": "ints?"}, transpose_rule,
     "Swap two axes, the last two if axes is None (course Transpose).",
     needle_op("Transpose", "axes"), axes=None,
     traits=Traits(shares_qparams=True, needle_class="Transpose"))
_row("broadcast_to", 1, {"shape": "shape"}, broadcast_to_rule,
     "numpy broadcast to shape (needle.ops.BroadcastTo).", needle_op("BroadcastTo", "shape"))
_row("summation", 1, {"axes": "axes"}, _reduce_rule("summation"),
     "Sum over axes (all if None), reduced dims dropped.", needle_op("Summation", "axes"),
     axes=None)
_row("logsumexp", 1, {"axes": "axes"}, _reduce_rule("logsumexp"),
     "Stable log-sum-exp over axes, reduced dims dropped.", needle_op("LogSumExp", "axes"),
     axes=None)
_row("max", 1, {"axes": "axes", "keepdims": "bool"}, _reduce_rule("max", keepdims_attr=True),
     "Maximum over axes.", needle_op("Max", "axes", "keepdims"), axes=None, keepdims=False,
     traits=Traits(shares_qparams=True, needle_class="Max"))
_row("stack", "variadic", {"axis": "int"}, stack_rule,
     "Stack equal-shape inputs along a new axis.", _eval_stack, axis=0,
     traits=Traits(needle_class="Stack"))
_row("split", 1, {"axis": "int"}, split_rule,
     "Split along an axis into a tuple (axis removed).", needle_op("Split", "axis"))
_row("make_tuple", "variadic", {}, make_tuple_rule, "Group inputs into one tuple value.",
     _eval_make_tuple, traits=Traits(needle_class="MakeTensorTuple"))
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
     _eval_getitem, traits=Traits(needle_class="GetItem"))
_row("permute", 1, {"axes": "ints"}, permute_rule, "Reorder all axes (numpy.transpose).",
     needle_op("Permute", "axes"), traits=Traits(shares_qparams=True, needle_class="Permute"))
_row("astype", 1, {"dtype": "str"}, astype_rule, "Cast to dtype.",
     needle_op("AsType", "dtype"))
