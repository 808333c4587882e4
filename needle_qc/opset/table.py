"""The IR op vocabulary: one table of OpDef rows (arity, attrs, shape rule, doc, evaluation).

Every op a Graph may contain is a row here. Passes and the quantizer add their own ops with
:func:`register_op`. Evaluation uses Needle's own ops and modules, so the interpreter gives the
same bits as eager Needle on the same device.

Shapes are tuples of dims; a dim is an ``int``, the batch symbol ``"N"`` or a multiple ``"k*N"``
(the LanguageModel's ``(T*N, vocab)`` logits). Tuple-valued nodes (``split``, ``make_tuple``)
carry a tuple of shapes and a tuple of dtypes.

This module is the table itself and its helpers; the rows live beside it (see
:mod:`needle_qc.opset`, which registers them).
"""

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from needle_qc.errors import IRError

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

KINDS = ("compute", "structure", "tensor", "layer", "qlayer", "quant")
"""``Traits.kind`` values: ``structure`` (placeholder, output), ``tensor`` (param, constant),
``layer`` (a float op with a weight input), ``qlayer`` (a quantized layer or product),
``quant`` (a change of representation: observer, quantize, dequantize, requantize),
``compute`` (everything else)."""
QUANTIZABLE = (None, "weight", "activations", "fused")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
"""Dtypes of float values (an activation is quantizable only when it has one of these)."""


@dataclass(frozen=True)
class Traits:
    """What passes, the lowering and the tools ask about an op: the facts live in its row.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    quantizable : {None, "weight", "activations"}
        ``"weight"``: a layer a QConfig quantizes through its weight param (static, dynamic or
        weight-only); ``"activations"``: an op of two activations, quantized in static mode only;
        ``"fused"``: a fused op its own pass quantizes (``lstm_cell``: ``quantize-lstm``).
    integer : bool
        An op of the integer stage (``compile`` tells the stage by it).
    shares_qparams : bool
        Runs on raw integers keeping its input's qparams (``maximum``: equal qparams only).
    layout_free : bool
        Elementwise: the lowering runs it in whatever layout its inputs share (NHWC stays NHWC).
    weight_input : int or None
        Index of the weight input of a layer.
    out_axis, reduction_axis : int or None
        Axes of that weight: output channels (per-channel scales) and the summed one.
    module_type : str or None
        The ``QConfig.module_types`` key a node of this op is configured by.
    needle_class : str or None
        The Needle op class a traced call of this op comes from (``EWiseAdd``).
    module_class : str or None
        The Needle ``nn`` layer class a high-level op stands for (``Linear``): the interpreter
        rebuilds it on a user's framework so their own layer code computes it.
    """

    kind: str = "compute"
    quantizable: Any = None
    integer: bool = False
    shares_qparams: bool = False
    layout_free: bool = False
    weight_input: Any = None
    out_axis: Any = None
    reduction_axis: Any = None
    module_type: Any = None
    needle_class: Any = None
    module_class: Any = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise IRError(f"Traits: kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.quantizable not in QUANTIZABLE:
            raise IRError(f"Traits: quantizable {self.quantizable!r}; valid: {QUANTIZABLE}")


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
    traits : Traits
        What passes, the lowering and the tools ask about the op.
    """

    name: str
    num_inputs: Any
    attrs: dict
    shape_rule: Callable | None
    doc: str
    evaluate: Callable | None = None
    defaults: dict = field(default_factory=dict)
    traits: Traits = field(default_factory=Traits)

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


def unregister_op(name):
    """Remove op ``name`` from the table (for tests and notebooks that add throwaway ops)."""
    get_op(name)
    del _OPS[name]


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


def traits(name):
    """The :class:`Traits` of op ``name`` (IRError for an unknown op)."""
    return get_op(name).traits


def ops_where(predicate):
    """Names of the registered ops whose traits satisfy ``predicate(traits)``, in table order."""
    return [name for name, op in _OPS.items() if predicate(op.traits)]


def _row(name, num_inputs, attrs, rule, doc, evaluate=None, traits=None, **defaults):
    traits = traits or Traits()
    cls = getattr(evaluate, "needle_class", None)  # set by primitives.needle_op
    if traits.needle_class is None and cls is not None:
        traits = dataclasses.replace(traits, needle_class=cls)
    register_op(OpDef(name, num_inputs, dict(attrs), rule, doc, evaluate, defaults, traits))


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


def _conv_out(size, k, stride, padding, op):
    if not _is_int(size):
        raise IRError(f"{op}: spatial dim {size!r} must be concrete")
    out = (size + 2 * padding - k) // stride + 1
    if out <= 0:
        raise IRError(f"{op}: kernel {k} larger than padded input {size}+2*{padding}")
    return out


# ----------------------------------------------------------------------------- evaluation

def _needle():
    # The framework bound by the running Interpreter (the model's own Needle, the bundled
    # one, or needle_qc's own arrays in compiled programs); see needle_qc.frontend.
    from needle_qc.frontend import current

    return current().module


# ----------------------------------------------------------------------------- the rows
