"""Needle module + example inputs -> Graph, by running the model eagerly while recording.

Only the course API is used, so any course-compatible Needle works: ``Module.__call__`` is
wrapped (to know the module path and to record known modules as high-level ops) and
``Tensor.make_from_op`` / ``TensorTuple.make_from_op`` are wrapped (every op goes through them,
including ``TupleGetItem``, which overrides ``__call__``). Both patches are class-level and are
undone in ``finally``.

The batch dim is made symbolic by *provenance*, not by guessing from values: the model is traced
twice, at the example batch ``B`` and at ``B + 1`` (the example rows reused), and every shape,
``reshape``/``broadcast_to`` attr and constant that changes between the two runs is a multiple
of the batch, ``k*N``. Constants created inside forward whose shape follows the batch (the zero
initial state of an RNN) become ``full`` nodes, or a constant broadcast along N.
"""

import inspect
import os
import sys

import numpy as np

from needle_qc import frontend, opset
from needle_qc.capture import guards
from needle_qc.errors import IRError, TraceError
from needle_qc.frontend.user_op import USER_OP, user_op_attrs
from needle_qc.ir.graph import Graph, dtype_of_array, plain
from needle_qc.opset.primitives import index_to_attr

__all__ = ["trace", "DEFAULT_LEAF_MODULES"]


# ----------------------------------------------------------------------------- leaf recorders

def _record_linear(tr, module, path, args, result):
    inputs = [tr.value_node(args[0]), tr.param_node(module.weight, path, "weight")]
    if getattr(module, "bias", None) is not None:
        inputs.append(tr.param_node(module.bias, path, "bias"))
    tr.bind(result, tr.emit("linear", inputs, {}, result, name=path))


def _record_conv(tr, module, path, args, result):
    inputs = [tr.value_node(args[0]), tr.param_node(module.weight, path, "weight")]
    if getattr(module, "bias", None) is not None:
        inputs.append(tr.param_node(module.bias, path, "bias"))
    k = module.weight.shape[0]
    attrs = {"stride": int(module.stride), "padding": int(getattr(module, "padding", k // 2))}
    tr.bind(result, tr.emit("conv2d", inputs, attrs, result, name=path))


def _record_batch_norm(tr, module, path, args, result):
    names = ("weight", "bias", "running_mean", "running_var")
    inputs = [tr.value_node(args[0])]
    inputs += [tr.param_node(getattr(module, n), path, n) for n in names]
    dims = 2 if type(module).__name__ == "BatchNorm2d" else 1
    attrs = {"eps": float(module.eps), "dims": dims}
    tr.bind(result, tr.emit("batch_norm", inputs, attrs, result, name=path))


def _record_layer_norm(tr, module, path, args, result):
    inputs = [tr.value_node(args[0]), tr.param_node(module.weight, path, "weight"),
              tr.param_node(module.bias, path, "bias")]
    attrs = {"eps": float(module.eps)}
    tr.bind(result, tr.emit("layer_norm", inputs, attrs, result, name=path))


def _record_embedding(tr, module, path, args, result):
    inputs = [tr.value_node(args[0]), tr.param_node(module.weight, path, "weight")]
    tr.bind(result, tr.emit("embedding", inputs, {}, result, name=path))


def _unary(op):
    def record(tr, module, path, args, result):
        tr.bind(result, tr.emit(op, [tr.value_node(args[0])], {}, result, name=path))
    return record


def _record_identity(tr, module, path, args, result):
    # Dropout in eval mode and Identity return their input: nothing to record.
    if result is not args[0]:
        tr.bind(result, tr.value_node(args[0]))


def _record_flatten(tr, module, path, args, result):
    attrs = {"shape": tuple(result.shape)}
    tr.bind(result, tr.emit("reshape", [tr.value_node(args[0])], attrs, result, name=path))


def _record_attention(tr, module, path, args, result):
    inputs = [tr.value_node(a) for a in args[:3]]
    attrs = {"causal": bool(getattr(module, "causal", False))}
    node = tr.emit("multi_head_attention", inputs, attrs, list(result), name=path)
    for i, part in enumerate(result):
        tr.bind(part, tr.emit("tuple_get_item", [node], {"index": i}, part))


DEFAULT_LEAF_MODULES = {
    "Linear": _record_linear,
    "Conv": _record_conv,
    "BatchNorm1d": _record_batch_norm,
    "BatchNorm2d": _record_batch_norm,
    "LayerNorm1d": _record_layer_norm,
    "Embedding": _record_embedding,
    "ReLU": _unary("relu"),
    "Tanh": _unary("tanh"),
    "Flatten": _record_flatten,
    "Dropout": _record_identity,
    "Identity": _record_identity,
    "MultiHeadAttention": _record_attention,
}
"""Module class name -> recorder. Needle's nn.Sigmoid is not here on purpose: it is built from
course ops (1/(1+exp(-x))) whose bits differ from ``ops.sigmoid``; tracing through it keeps
the graph exact. MultiHeadAttention is a leaf because its softmax shifts by a max computed on
realized data, which a trace cannot follow."""


# ----------------------------------------------------------------------------- op classes

def _op_attrs_from_table():
    """Needle op class name -> (our op, its attr names), from the rows' ``traits.needle_class``."""
    table = {}
    for name in opset.all_ops():
        row = opset.get_op(name)
        if row.traits.needle_class is not None:
            table[row.traits.needle_class] = (name, tuple(row.attrs))
    return table


def _op_attr(op, name):
    value = getattr(op, name)
    if name == "index" and type(op).__name__ == "GetItem":
        return index_to_attr(value)
    return plain(value)


# ----------------------------------------------------------------------------- locations

_QC_DIR = os.path.dirname(os.path.abspath(__file__))


def _framework_dir(fw):
    return os.path.dirname(os.path.abspath(fw.module.__file__))


def _frame_location(skip_dirs):
    """``file:line`` of the innermost caller outside ``skip_dirs`` (folders or files)."""
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not any(path == d or path.startswith(d + os.sep) for d in skip_dirs):
            return f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>:0"


# ----------------------------------------------------------------------------- the recorder

class _Recorder:
    """One eager run of the model with the hooks installed; builds a concrete Graph."""

    def __init__(self, model, leaves, fw):
        self.fw = fw
        self.ndl = fw.module
        self.graph = Graph()
        self.leaves = leaves
        self.op_table = _op_attrs_from_table()
        self.nodes = {}  # id(value) -> Node
        self.keep = []  # traced values stay alive so their ids stay unique
        self.module_paths, self.tensor_paths = _walk_model(model, self.ndl)
        self.path_stack = []
        self.leaf_depth = 0
        nd = _framework_dir(fw)
        # errors point at the first frame outside needle_qc: the user's model or, for their
        # own Needle, their framework code (only the bundled Needle's frames are skipped)
        self.user_skip = (_QC_DIR, nd) if fw.bundled else (_QC_DIR,)
        self.meta_skip = (_QC_DIR, os.path.join(nd, "ops"), os.path.join(nd, "ops.py"),
                          os.path.join(nd, "backend_ndarray"), os.path.join(nd, "autograd.py"))

    # ---------------------------------------------------------------- locations and errors

    @property
    def module_path(self):
        return self.path_stack[-1] if self.path_stack else ""

    def error(self, message):
        path = self.module_path or "<root>"
        where = _frame_location(self.user_skip)
        return TraceError(f"{message} (in module '{path}', at {where})")

    # ---------------------------------------------------------------- nodes

    def bind(self, value, node):
        self.nodes[id(value)] = node
        self.keep.append(value)

    def emit(self, op, inputs, attrs, result, name=None):
        meta = _meta_of(result)
        meta["module_path"] = self.module_path
        meta["source"] = _frame_location(self.meta_skip)
        try:
            return self.graph.call(op, inputs, attrs, name=name or op, meta=meta)
        except IRError as e:
            raise self.error(f"cannot record {op}: {e}") from None

    def value_node(self, value):
        """The node of a traced value; params and forward-created tensors get nodes here."""
        if not isinstance(value, self.ndl.autograd.Value):
            raise self.error(f"a module got a {type(value).__name__} where a Tensor was expected")
        node = self.nodes.get(id(value))
        if node is not None:
            return node
        path = self.tensor_paths.get(id(value))
        if path is not None:
            owner, _, attr = path.rpartition(".")
            return self.param_node(value, owner, attr)
        return self.constant_node(value)

    def param_node(self, tensor, owner, attr):
        node = self.nodes.get(id(tensor))
        if node is None:
            path = f"{owner}.{attr}" if owner else attr
            node = self.graph.param(path, _array_of(tensor), module_path=owner)
            self.bind(tensor, node)
        return node

    def constant_node(self, value):
        if not isinstance(value, self.ndl.Tensor):
            raise self.error(f"cannot record an untraced {type(value).__name__}")
        node = self.graph.constant(_array_of(value), name="const")
        node.meta["module_path"] = self.module_path
        node.meta["source"] = _frame_location(self.meta_skip)
        self.bind(value, node)
        return node

    # ---------------------------------------------------------------- hooks

    def on_module_call(self, original, module, args, kwargs):
        if self.leaf_depth:
            return original(module, *args, **kwargs)
        path = self.module_paths.get(id(module))
        if path is None:
            path = _join(self.module_path, type(module).__name__.lower())
        self.path_stack.append(path)
        try:
            recorder = self.leaves.get(type(module).__name__)
            if recorder is not None and not leaf_fits(module, self.fw):
                recorder = None  # course name, other fields (e.g. `weights`): trace through
            if recorder is None:
                return original(module, *args, **kwargs)
            self.leaf_depth += 1
            try:
                result = original(module, *args, **kwargs)
            finally:
                self.leaf_depth -= 1
            inputs = args + tuple(kwargs.values())
            recorder(self, module, path or type(module).__name__.lower(), inputs, result)
            return result
        finally:
            self.path_stack.pop()

    def on_op(self, op, inputs, result):
        if self.leaf_depth:
            return
        cls = type(op).__name__
        if cls not in self.op_table:
            if self.record_user_op(op, inputs, result):
                return
            known = ", ".join(sorted(self.op_table))
            raise self.error(f"unknown op class {cls}: no IR op records it (known: {known})")
        name, attr_names = self.op_table[cls]
        mismatch = op_mismatch(op, name, attr_names, inputs, strict=not self.fw.bundled)
        if mismatch is not None:
            if self.record_user_op(op, inputs, result):
                return
            raise self.error(
                f"op class {cls} of {self.fw.name} is not needle_qc's {name!r} ({mismatch}): "
                "it is this framework's own op, and its fields are not plain data, so it "
                "cannot be recorded; compute it with course ops or give the class another "
                "name")
        nodes = [self.value_node(x) for x in inputs]
        if name == "stack" and len(nodes) == 1 and nodes[0].op == "make_tuple":
            nodes = list(nodes[0].inputs)
        attrs = {a: _op_attr(op, a) for a in attr_names}
        self.bind(result, self.emit(name, nodes, attrs, result))

    def record_user_op(self, op, inputs, result):
        """Record a call of the user's own op class (``user_op``: interpreted by their
        Needle, kept float when compiled); False when it cannot be recorded faithfully (the
        bundled Needle, a class not in ``needle.ops``, fields that are not plain data)."""
        cls = type(op)
        if self.fw.bundled or getattr(self.ndl.ops, cls.__name__, None) is not cls:
            return False
        attrs = user_op_attrs(self.fw, op, _meta_of(result))
        if attrs is None:
            return False
        nodes = [self.value_node(x) for x in inputs]
        self.bind(result, self.emit(USER_OP, nodes, attrs, result, name=cls.__name__.lower()))
        return True

    def on_detach(self, tensor, result):
        """``x.detach()`` / ``make_const(x)`` of a traced value is that value (eval mode)."""
        if self.leaf_depth or id(tensor) not in self.nodes or result is tensor:
            return
        self.bind(result, self.nodes[id(tensor)])

    def on_value_read(self, tensor, what):
        if self.leaf_depth or id(tensor) not in self.nodes:
            return
        if self.nodes[id(tensor)].op in ("param", "constant"):
            return
        raise self.error(f"value-dependent Python code: {what} on a traced tensor; the graph "
                         "cannot depend on data (make it a leaf module or compute it with ops)")


_LEAF_FIELDS = {
    "Linear": (("weight", 2),),
    "Conv": (("weight", 4), ("stride", None)),
    "BatchNorm1d": (("weight", 1), ("bias", 1), ("running_mean", 1), ("running_var", 1),
                    ("eps", None)),
    "BatchNorm2d": (("weight", 1), ("bias", 1), ("running_mean", 1), ("running_var", 1),
                    ("eps", None)),
    "LayerNorm1d": (("weight", 1), ("bias", 1), ("eps", None)),
    "Embedding": (("weight", 2),),
}
"""Fields (and tensor ranks) a leaf recorder reads, by course class name."""


def op_mismatch(op, name, attr_names, inputs, strict=False):
    """Why a call of ``op`` is not our op ``name`` (input count, missing attrs and, when
    ``strict``, fields we do not know: a user's ``LogSoftmax(axis=0)`` is not ours), or None."""
    arity = opset.get_op(name).num_inputs
    count = len(inputs)
    if name == "stack":
        arity = "variadic"  # the course passes one make_tuple value; some students the list
    low, high = arity if isinstance(arity, tuple) else (arity, arity)
    missing = [a for a in attr_names if not hasattr(op, a)]
    extra = sorted(set(vars(op)) - set(attr_names)) if strict else []
    if (arity == "variadic" or low <= count <= high) and not missing and not extra:
        return None
    return f"called with {count} input(s)" + \
        (f", no attribute {', '.join(missing)}" if missing else "") + \
        (f", fields {', '.join(extra)} we have no meaning for" if extra else "") + \
        f"; {name} takes {arity} input(s) and attrs {list(attr_names) or 'none'}"


def leaf_fits(module, fw):
    """True when ``module`` has the course fields its recorder reads (a student's class
    with other field names is traced through instead). On a user's Needle the class must be
    that framework's own ``nn.<Name>`` (the interpreter rebuilds that class): a model's own
    class that happens to be called ``Linear`` is traced through."""
    ndl = fw.module
    if not fw.bundled and getattr(ndl.nn, type(module).__name__, None) is not type(module):
        return False
    for name, rank in _LEAF_FIELDS.get(type(module).__name__, ()):
        value = getattr(module, name, None)
        if value is None:
            return False
        if rank is not None and (not isinstance(value, ndl.Tensor) or
                                 len(value.shape) != rank):
            return False
    return True


def _join(prefix, key):
    return f"{prefix}.{key}" if prefix else key


def _walk_model(model, ndl):
    """(id(module) -> path, id(tensor) -> path) following attribute names and list indices."""
    modules, tensors = {}, {}

    def visit(obj, path):
        if isinstance(obj, ndl.nn.Module):
            if id(obj) in modules:
                return
            modules[id(obj)] = path
            for key, value in vars(obj).items():
                visit(value, _join(path, key))
        elif isinstance(obj, ndl.Tensor):
            tensors.setdefault(id(obj), path)
        elif isinstance(obj, (list, tuple)):
            for i, item in enumerate(obj):
                visit(item, _join(path, str(i)))
        elif isinstance(obj, dict):
            for key, item in obj.items():
                visit(item, _join(path, str(key)))

    visit(model, "")
    return modules, tensors


def _array_of(tensor):
    return np.array(tensor.numpy(), copy=True)


def _meta_of(result):
    if isinstance(result, (list, tuple)):
        metas = [_meta_of(r) for r in result]
        return {"shape": tuple(m["shape"] for m in metas),
                "dtype": tuple(m["dtype"] for m in metas)}
    data = result.realize_cached_data()
    if isinstance(data, tuple):
        return {"shape": tuple(tuple(d.shape) for d in data),
                "dtype": tuple(_dtype_str(d) for d in data)}
    return {"shape": tuple(result.shape), "dtype": _dtype_str(result)}


def _dtype_str(array):
    # a numpy-backend Tensor reports a numpy dtype, an NDArray one a string
    dt = array.dtype
    return dt if isinstance(dt, str) else np.dtype(dt).name


# ----------------------------------------------------------------------------- hooks

_MISSING = object()


class _Hooks:
    """Class-level patches of Module.__call__, make_from_op, numpy() and bool(); undone on exit."""

    def __init__(self, rec):
        ndl = rec.ndl
        self.rec = rec
        # bool() is hooked where a tensor's truth could depend on its data: a Tensor class
        # defining __bool__/__len__, and the bundled one (its tests refuse `if x:`); a course
        # Tensor without them is always truthy, so `h or init.zeros(...)` is a None check
        self.hook_bool = rec.fw.bundled or any(
            "__bool__" in vars(c) or "__len__" in vars(c)
            for c in ndl.Tensor.__mro__ if c is not object)
        self.targets = [(ndl.nn.Module, "__call__"), (ndl.Tensor, "make_from_op"),
                        (ndl.autograd.TensorTuple, "make_from_op"), (ndl.Tensor, "numpy"),
                        (ndl.Tensor, "detach"), (ndl.Tensor, "make_const")]
        if self.hook_bool:
            self.targets.append((ndl.Tensor, "__bool__"))
        self.saved = {}

    def __enter__(self):
        ndl, rec = self.rec.ndl, self.rec
        self.saved = {t: t[0].__dict__.get(t[1], _MISSING) for t in self.targets}
        module_call = ndl.nn.Module.__call__
        make_tensor = ndl.Tensor.make_from_op
        make_tuple = ndl.autograd.TensorTuple.make_from_op
        to_numpy = ndl.Tensor.numpy
        detach = ndl.Tensor.detach
        make_const = ndl.Tensor.make_const
        truth = getattr(ndl.Tensor, "__bool__", None)

        def call(module, *args, **kwargs):
            return rec.on_module_call(module_call, module, args, kwargs)

        def make_from_op_tensor(op, inputs):
            result = make_tensor(op, inputs)
            rec.on_op(op, inputs, result)
            return result

        def make_from_op_tuple(op, inputs):
            result = make_tuple(op, inputs)
            rec.on_op(op, inputs, result)
            return result

        def numpy(tensor):
            rec.on_value_read(tensor, ".numpy()")
            return to_numpy(tensor)

        def boolean(tensor):
            rec.on_value_read(tensor, "bool() (an `if`/`while` on a tensor)")
            return truth(tensor) if truth else True

        def detach_traced(tensor):
            result = detach(tensor)
            rec.on_detach(tensor, result)
            return result

        def make_const_traced(data, *args, **kwargs):
            result = make_const(data, *args, **kwargs)
            if isinstance(data, ndl.autograd.Value):
                rec.on_detach(data, result)
            return result

        ndl.nn.Module.__call__ = call
        ndl.Tensor.make_from_op = staticmethod(make_from_op_tensor)
        ndl.autograd.TensorTuple.make_from_op = staticmethod(make_from_op_tuple)
        ndl.Tensor.numpy = numpy
        ndl.Tensor.detach = detach_traced
        ndl.Tensor.make_const = staticmethod(make_const_traced)
        if self.hook_bool:
            ndl.Tensor.__bool__ = boolean
        return self

    def __exit__(self, *exc):
        for (cls, name), original in self.saved.items():
            if original is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        return False


# ----------------------------------------------------------------------------- inputs

def _input_names(model, count):
    try:
        params = inspect.signature(model.forward).parameters.values()
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    names = names[:count]
    return names + [f"input_{i}" for i in range(len(names), count)]


def _to_tensor(value, index, name, fw, device):
    ndl = fw.module
    if isinstance(value, ndl.Tensor):
        return value
    if isinstance(value, np.ndarray):
        dtype = value.dtype.name if value.dtype.name in ("float16", "int8", "uint8", "int32") \
            else "float32"
        if not fw.bundled and dtype not in fw.caps.get("dtypes", ()):
            dtype = "float32"  # a course NDArray holds float32 only (ids too)
        return ndl.Tensor(value.astype(dtype), device=device, dtype=dtype,
                          requires_grad=False)
    raise TraceError(f"example input {index} ({name}) is a {type(value).__name__}; expected a "
                     f"needle.Tensor or numpy.ndarray (at {_frame_location((_QC_DIR,))})")


def _batch_dims(batch_dims, inputs, names):
    dims = list(batch_dims) if isinstance(batch_dims, (list, tuple)) else \
        [batch_dims] * len(inputs)
    if len(dims) != len(inputs):
        raise TraceError(f"batch_dims has {len(dims)} entries for {len(inputs)} example inputs")
    for dim, x, name in zip(dims, inputs, names):
        if dim is not None and not -len(x.shape) <= dim < len(x.shape):
            raise TraceError(f"example input {name} of shape {tuple(x.shape)} has no batch dim "
                             f"{dim}; pass batch_dims=None for inputs without one")
    dims = [None if d is None else d % len(x.shape) for d, x in zip(dims, inputs)]
    sizes = {x.shape[d] for d, x in zip(dims, inputs) if d is not None}
    if len(sizes) > 1:
        raise TraceError(f"example inputs disagree on the batch size: {sorted(sizes)}")
    return dims, (sizes.pop() if sizes else None)


def _rebatch(x, dim, new_size, ndl):
    """x with ``new_size`` rows along ``dim``: the example rows reversed, then repeated."""
    old = x.shape[dim]
    rows = [(old - 1 - i) % old for i in range(new_size)]
    array = np.take(x.numpy(), rows, axis=dim)
    return ndl.Tensor(array, device=x.device, dtype=x.dtype, requires_grad=False)


def _model_device(model, ndl):
    for value in vars(model).values():
        if isinstance(value, ndl.Tensor):
            return value.device
    params = model.parameters() if hasattr(model, "parameters") else []
    return params[0].device if params else None


# ----------------------------------------------------------------------------- one run

def _record(model, inputs, names, leaves, fw):
    rec = guards.this_thread_only(_Recorder(model, leaves, fw))  # other threads pass through
    for name, x in zip(names, inputs):
        rec.bind(x, rec.graph.placeholder(name, tuple(x.shape), _dtype_str(x)))
    with _Hooks(rec):
        result = model(*inputs)
    rec.graph.output(_result_nodes(rec, result, "output"))
    return rec.graph


def _result_nodes(rec, value, where):
    if isinstance(value, rec.ndl.autograd.Value):
        return rec.value_node(value)
    if isinstance(value, (tuple, list)):
        return tuple(_result_nodes(rec, v, f"{where}[{i}]") for i, v in enumerate(value))
    raise rec.error(f"the model returned a {type(value).__name__} at {where}; expected "
                    "Tensors or (nested) tuples of Tensors")


# ----------------------------------------------------------------------------- symbolic batch

class _Symbolizer:
    """Merges the traces at batch b1 and b2: values that change are k*N."""

    def __init__(self, g1, g2, b1, b2):
        self.g1, self.g2, self.b1, self.b2 = g1, g2, b1, b2

    def run(self):
        n1, n2 = self.g1.nodes, self.g2.nodes
        for a, b in zip(n1, n2):
            if _signature(a) != _signature(b):
                raise TraceError(f"the model's structure depends on the batch size: "
                                 f"{_where(a)} differs between batch {self.b1} and {self.b2}")
        if len(n1) != len(n2):
            raise TraceError("the model records a different number of ops at batch "
                             f"{self.b1} and {self.b2}")
        for a, b in zip(n1, n2):
            self.node(a, b)

    def node(self, a, b):
        specs = opset.get_op(a.op).attrs
        for key, value in a.attrs.items():
            allow = specs.get(key, "").rstrip("?") == "shape"
            a.attrs[key] = self.value(value, b.attrs[key], a, f"attr {key}", allow)
        if a.meta.get("shape") is not None:
            a.meta["shape"] = self.value(a.meta["shape"], b.meta["shape"], a, "shape", True)
        if a.op == "constant":
            self.constant(a, b)

    def value(self, v1, v2, node, what, allow):
        if v1 == v2 or (isinstance(v1, float) and isinstance(v2, float) and v1 != v1 and v2 != v2):
            return v1  # equal, or both NaN
        if isinstance(v1, (tuple, list)) and isinstance(v2, type(v1)) and len(v1) == len(v2):
            return type(v1)(self.value(x, y, node, what, allow) for x, y in zip(v1, v2))
        step = self.b2 - self.b1
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (v1, v2))
        if ints and allow and (v2 - v1) % step == 0 and v1 == (v2 - v1) // step * self.b1:
            return opset.make_dim((v2 - v1) // step, 1)
        raise TraceError(f"{what} of {_where(node)} depends on the batch size in a way the "
                         f"graph cannot express ({v1!r} at batch {self.b1}, {v2!r} at "
                         f"batch {self.b2})")

    def constant(self, a, b):
        key = a.attrs["tensor"]
        t1, t2 = self.g1.tensors[key], self.g2.tensors[key]
        shape = a.meta["shape"]
        axes = tuple(i for i, d in enumerate(shape) if opset.is_symbolic(d))
        r1, r2 = _first_along(t1, axes), _first_along(t2, axes)
        same = np.array_equal(r1, r2, equal_nan=True)
        if not (same and _repeats(t1, r1) and _repeats(t2, r2)):
            raise TraceError(f"{_where(a)}: a tensor created inside forward depends on the "
                             "input values (it differs between two traces); compute it with "
                             "ops or make its module a leaf")
        if not axes:
            return
        if r1.size and np.all(r1 == r1.flat[0]):
            self._to_full(a, key, shape, r1)
        else:
            self._to_broadcast(a, key, shape, r1)

    def _to_full(self, node, key, shape, r1):
        node.op = "full"
        node.attrs = {"shape": shape, "value": plain(r1.flat[0]) * 1.0,
                      "dtype": dtype_of_array(r1)}
        del self.g1.tensors[key]

    def _to_broadcast(self, node, key, shape, r1):
        self.g1.tensors[key] = r1
        meta = dict(node.meta)
        node.meta["shape"] = tuple(r1.shape)
        with self.g1.inserting_after(node):
            wide = self.g1.call("broadcast_to", [node], {"shape": shape},
                                name=f"{node.name}_bcast", meta=meta)
        node.replace_all_uses_with(wide, except_for=(wide,))


def _signature(node):
    return node.name, node.op, tuple(i.name for i in node.inputs)


def _where(node):
    path = node.meta.get("module_path") or "<root>"
    return f"%{node.name} (module '{path}', {node.meta.get('source', '?')})"


def _first_along(array, axes):
    index = tuple(slice(0, 1) if i in axes else slice(None) for i in range(array.ndim))
    return array[index]


def _repeats(array, first):
    return np.array_equal(np.broadcast_to(first, array.shape), array, equal_nan=True)


# ----------------------------------------------------------------------------- entry point

@guards.guarded  # one trace at a time; deep nesting -> TraceError
def trace(model, *example_inputs, leaf_modules=None, batch_dims=0, framework=None):
    """Trace a Needle module into a :class:`~needle_qc.ir.graph.Graph`.

    The model runs eagerly in eval mode (its training flags are restored afterwards) while
    every module call and op is recorded. Known modules become high-level ops (Linear ->
    ``linear``, Conv -> ``conv2d``, BatchNorm1d/2d -> ``batch_norm``, LayerNorm1d ->
    ``layer_norm``, Embedding -> ``embedding``, ReLU/Tanh, Flatten -> ``reshape``,
    MultiHeadAttention -> ``multi_head_attention``; Dropout and Identity vanish); other
    modules are traced through to Needle's primitive ops. Time loops are unrolled.

    Parameters
    ----------
    model : needle.nn.Module
    *example_inputs : needle.Tensor or numpy.ndarray
        One per positional argument of ``model.forward``.
    leaf_modules : iterable of str, optional
        Class names recorded as high-level ops (default: all of
        :data:`DEFAULT_LEAF_MODULES`); the others are traced through.
    batch_dims : int, None or sequence
        The batch dim of each input (default 0; ``LanguageModel`` takes ``(T, bs)`` ids, so 1).
        It becomes the symbol ``N``: the graph runs at any batch size.
    framework : module, optional
        The Needle the model is built with (default: the package its class comes from, see
        :func:`needle_qc.frontend.framework_of`); kept as ``graph.framework``.

    Returns
    -------
    Graph
        Linted; ``graph(x)`` equals ``model(x)`` bit for bit on the same device.

    Raises
    ------
    TraceError
        Value-dependent Python (``.numpy()``/``bool()`` on a traced tensor), an unknown op
        class, a non-Tensor output or a bad example input; the message names the module path
        and the user's ``file:line``.

    Examples
    --------
    >>> g = trace(needle.models.SmallCNN(), np.zeros((8, 1, 28, 28), np.float32))
    >>> print(g)  # doctest: +SKIP
    %x = placeholder() : f32[N,1,28,28]
    %layers.modules.0.conv.weight = param() {tensor="layers.modules.0.conv.weight"} : f32[3,3,1,16]
    %layers.modules.0.conv.bias = param() {tensor="layers.modules.0.conv.bias"} : f32[16]
    %layers.modules.0.conv = conv2d(%x, %layers.modules.0.conv.weight, %layers.modules.0.conv.bias) {stride=2, padding=1} : f32[N,16,14,14]
    %layers.modules.0.bn.weight = param() {tensor="layers.modules.0.bn.weight"} : f32[16]
    %layers.modules.0.bn.bias = param() {tensor="layers.modules.0.bn.bias"} : f32[16]
    %layers.modules.0.bn.running_mean = param() {tensor="layers.modules.0.bn.running_mean"} : f32[16]
    %layers.modules.0.bn.running_var = param() {tensor="layers.modules.0.bn.running_var"} : f32[16]
    %layers.modules.0.bn = batch_norm(%layers.modules.0.conv, %layers.modules.0.bn.weight, %layers.modules.0.bn.bias, %layers.modules.0.bn.running_mean, %layers.modules.0.bn.running_var) {eps=1e-05, dims=2} : f32[N,16,14,14]
    %layers.modules.0.relu = relu(%layers.modules.0.bn) : f32[N,16,14,14]
    %layers.modules.1.conv.weight = param() {tensor="layers.modules.1.conv.weight"} : f32[3,3,16,32]
    %layers.modules.1.conv.bias = param() {tensor="layers.modules.1.conv.bias"} : f32[32]
    %layers.modules.1.conv = conv2d(%layers.modules.0.relu, %layers.modules.1.conv.weight, %layers.modules.1.conv.bias) {stride=2, padding=1} : f32[N,32,7,7]
    %layers.modules.1.bn.weight = param() {tensor="layers.modules.1.bn.weight"} : f32[32]
    %layers.modules.1.bn.bias = param() {tensor="layers.modules.1.bn.bias"} : f32[32]
    %layers.modules.1.bn.running_mean = param() {tensor="layers.modules.1.bn.running_mean"} : f32[32]
    %layers.modules.1.bn.running_var = param() {tensor="layers.modules.1.bn.running_var"} : f32[32]
    %layers.modules.1.bn = batch_norm(%layers.modules.1.conv, %layers.modules.1.bn.weight, %layers.modules.1.bn.bias, %layers.modules.1.bn.running_mean, %layers.modules.1.bn.running_var) {eps=1e-05, dims=2} : f32[N,32,7,7]
    %layers.modules.1.relu = relu(%layers.modules.1.bn) : f32[N,32,7,7]
    %layers.modules.2 = reshape(%layers.modules.1.relu) {shape=(N, 1568)} : f32[N,1568]
    %layers.modules.3.weight = param() {tensor="layers.modules.3.weight"} : f32[1568,10]
    %layers.modules.3.bias = param() {tensor="layers.modules.3.bias"} : f32[1,10]
    %layers.modules.3 = linear(%layers.modules.2, %layers.modules.3.weight, %layers.modules.3.bias) : f32[N,10]
    return %layers.modules.3
    """  # noqa: E501
    try:
        fw = frontend.framework.require_tracing_api(frontend.framework_of(model, framework))
    except frontend.FrameworkError as e:
        raise TraceError(f"trace: {e}") from None
    ndl = fw.module
    leaves = _leaf_table(leaf_modules)
    names = _input_names(model, len(example_inputs))
    device = _model_device(model, ndl)
    inputs = [_to_tensor(x, i, n, fw, device)
              for i, (x, n) in enumerate(zip(example_inputs, names))]
    dims, batch = _batch_dims(batch_dims, inputs, names)
    modes = _training_flags(model, ndl)
    model.eval()
    try:
        graph = _record(model, inputs, names, leaves, fw)
        if batch is not None:
            wider = [x if d is None else _rebatch(x, d, batch + 1, ndl)
                     for x, d in zip(inputs, dims)]
            try:
                _Symbolizer(graph, _record(model, wider, names, leaves, fw), batch,
                            batch + 1).run()
            except TraceError as e:
                raise TraceError(f"{e}{_batch_dim_hint(dims, inputs)}") from None
    finally:
        for module, flag in modes:
            module.training = flag
    graph.eliminate_dead_code()
    graph = _checked(graph)
    graph.framework = fw.module  # the interpreter runs it on the model's own Needle
    if batch is not None:  # a batch-dependent Python branch shows up here
        guards.check_larger_batch(model, graph, inputs, dims, batch, _rebatch)
    return graph


def _batch_dim_hint(dims, inputs):
    """A hint when the batch was taken as dim 0 of a multi-dim input: a language model's
    ``(seq_len, batch)`` token ids vary dim 0 with the sequence, not the batch."""
    if any(d == 0 and len(x.shape) >= 2 for d, x in zip(dims, inputs)):
        return ("; if the batch is not the first dim of an input (a language model takes "
                "(seq_len, batch) ids), pass batch_dims=1 (or one per input; the zoo's "
                "qc.zoo.get(name).input.batch_dim says which)")
    return ""


def _leaf_table(leaf_modules):
    if leaf_modules is None:
        return dict(DEFAULT_LEAF_MODULES)
    names = [m if isinstance(m, str) else m.__name__ for m in leaf_modules]
    unknown = [n for n in names if n not in DEFAULT_LEAF_MODULES]
    if unknown:
        raise TraceError(f"leaf_modules: no recorder for {', '.join(unknown)}; known: "
                         f"{', '.join(DEFAULT_LEAF_MODULES)}")
    return {n: DEFAULT_LEAF_MODULES[n] for n in names}


def _training_flags(model, ndl):
    modules, _ = _walk_model(model, ndl)
    found = []

    def collect(obj):
        if isinstance(obj, ndl.nn.Module) and id(obj) in modules:
            found.append((obj, obj.training))
            modules.pop(id(obj))
            for value in vars(obj).values():
                collect(value)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                collect(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                collect(item)

    collect(model)
    return found


def _checked(graph):
    try:
        return graph.lint()
    except IRError as e:
        raise IRError(f"the traced graph fails lint (a tracer or shape-rule bug): {e}") from None
