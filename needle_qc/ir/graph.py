"""The IR: Node (one value-producing op) and Graph (ordered, always topological, self-contained).

Opcodes (the full list with arity, attrs and shape rules is :mod:`needle_qc.opset`):

- ``placeholder``: a graph input; ``meta`` holds its shape (batch dim ``"N"``) and dtype.
- ``param`` / ``constant``: a tensor stored in ``Graph.tensors[attrs["tensor"]]``.
- ``full``: a filled tensor whose shape may contain ``N`` (e.g. a zero initial hidden state).
- ``output``: the last node; its inputs are the results, ``attrs["structure"]`` their nesting.
- everything else computes a value from its inputs: high-level ops (``linear``, ``conv2d``,
  ``batch_norm``...), Needle primitives (``add``, ``matmul``...), and ops registered later
  (``quantize``, ``qlinear``...).

Example
-------
>>> g = Graph()
>>> x = g.placeholder("x", ("N", 4), "float32")
>>> w = g.param("fc.weight", np.ones((4, 2), np.float32))
>>> y = g.call("relu", [g.call("linear", [x, w], name="fc")])
>>> _ = g.output(y)
>>> print(g)
%x = placeholder() : f32[N,4]
%fc.weight = param() {tensor="fc.weight"} : f32[4,2]
%fc = linear(%x, %fc.weight) : f32[N,2]
%relu = relu(%fc) : f32[N,2]
return %relu
"""

import contextlib
import copy
import difflib
import re

import numpy as np

from needle_qc import opset
from needle_qc.errors import IRError

_NAME_OK = re.compile(r"^[A-Za-z0-9_.]+$")
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.]")

NUMPY_TO_DTYPE = {"uint16": "bfloat16"}
"""numpy storage dtype names that differ from the Needle dtype they hold (bf16 is raw bits)."""


def dtype_of_array(array):
    """The Needle dtype name for a numpy array (uint16 storage means bfloat16)."""
    name = np.asarray(array).dtype.name
    return NUMPY_TO_DTYPE.get(name, name)


def plain(value):
    """``value`` with numpy scalars/arrays turned into Python data; IRError if not plain."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if not opset.is_plain(value):
        raise IRError(f"attr value {value!r} ({type(value).__name__}) is not plain data")
    return value


class Node:
    """One value-producing op in a :class:`Graph`.

    Attributes
    ----------
    name : str
        Unique within the graph, without the ``%`` (``conv1``, ``layer2.0.conv``, ``relu_1``).
    op : str
        A name from the op table (:mod:`needle_qc.opset`).
    inputs : tuple[Node, ...]
        Assigning a new tuple updates the ``users`` of old and new inputs.
    attrs : dict
        Plain JSON-able data (int, float, str, bool, None, tuples, lists), typed by the op table.
    meta : dict
        ``shape`` (tuple; batch dim ``"N"``), ``dtype`` (str), optional ``qparams`` (dict),
        ``module_path`` (str) and ``source`` (``"file:line"``).
    users : list[Node]
        Nodes that use this one as an input, in the order they started using it.
    graph : Graph
        The owning graph (None once erased).
    """

    def __init__(self, graph, name, op, inputs=(), attrs=None, meta=None):
        self.graph = graph
        self.name = name
        self.op = op
        self.attrs = dict(attrs or {})
        self.meta = dict(meta or {})
        self._users = {}  # an insertion-ordered set
        self._inputs = ()
        self.inputs = inputs

    @property
    def inputs(self):
        return self._inputs

    @inputs.setter
    def inputs(self, new_inputs):
        new_inputs = tuple(new_inputs)
        for node in new_inputs:
            if not isinstance(node, Node):
                raise IRError(f"%{self.name}: input {node!r} is not a Node")
        for old in set(self._inputs) - set(new_inputs):
            old._users.pop(self, None)
        self._inputs = new_inputs
        for node in new_inputs:
            node._users.setdefault(self, None)
        if self.graph is not None:
            self.graph._version += 1

    @property
    def users(self):
        return list(self._users)

    @property
    def opdef(self):
        """This node's row of the op table."""
        return opset.get_op(self.op)

    def replace_input(self, old, new):
        """Use ``new`` wherever ``old`` is an input of this node."""
        self.inputs = tuple(new if node is old else node for node in self._inputs)

    def replace_all_uses_with(self, new, *, except_for=()):
        """Make every user of this node use ``new`` instead; returns the changed users."""
        if new is self:
            return []
        skip = set(except_for)
        changed = [user for user in self.users if user not in skip and user is not new]
        for user in changed:
            user.replace_input(self, new)
        return changed

    def format(self):
        """This node's line of the text form."""
        from needle_qc.ir.printer import format_node

        return format_node(self)

    def __repr__(self):
        return f"%{self.name}"


class Graph:
    """An ordered, always topological list of Nodes plus the tensors its params refer to.

    Build graphs with :meth:`placeholder`, :meth:`param`, :meth:`constant`, :meth:`call` and
    :meth:`output`, or get one from :func:`needle_qc.trace`. ``str(graph)`` is the text form
    (:mod:`needle_qc.ir.printer`), ``graph(x)`` runs the interpreter, ``graph.lint()`` checks every
    invariant. See the module docstring for a worked example.
    """

    def __init__(self):
        self._nodes = []
        self._by_name = {}
        self._name_counters = {}
        self._insert_before = None  # None: append (before the output node if there is one)
        self._version = 0
        self._param_cache = {}  # the interpreter's Tensors for self.tensors, per device
        self.tensors: dict[str, np.ndarray] = {}
        self.observers: dict = {}
        """Observer node name -> its statistics (an object with ``to_dict()``), filled by
        insert-observers and calibration; copied by :meth:`copy`, written by ``save``."""
        self.qconfig = None
        """The QConfig ``quantize_pass`` prepared this graph with (None for a float graph)."""

    # ------------------------------------------------------------------ access

    @property
    def nodes(self):
        """The nodes in order (a snapshot: safe to mutate the graph while iterating)."""
        return tuple(self._nodes)

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self._nodes)

    @property
    def placeholders(self):
        return [n for n in self._nodes if n.op == "placeholder"]

    @property
    def output_node(self):
        return next((n for n in reversed(self._nodes) if n.op == "output"), None)

    def find(self, op=None):
        """Nodes whose op is ``op`` (a name or a collection of names), in order."""
        ops = {op} if isinstance(op, str) else set(op or ())
        return [n for n in self._nodes if op is None or n.op in ops]

    def node(self, name):
        """The node called ``name`` (with or without ``%``); IRError with a did-you-mean."""
        name = name[1:] if name.startswith("%") else name
        if name in self._by_name:
            return self._by_name[name]
        close = difflib.get_close_matches(name, list(self._by_name), n=3)
        hint = f"; did you mean {', '.join('%' + c for c in close)}?" if close else ""
        raise IRError(f"no node %{name} in the graph{hint}")

    # ------------------------------------------------------------------ building

    def _unique_name(self, base):
        base = _NAME_BAD_CHARS.sub("_", str(base)) or "v"
        if base not in self._by_name and base != "output":  # "output" names the output node
            return base
        i = self._name_counters.get(base, 1)
        while f"{base}_{i}" in self._by_name:
            i += 1
        self._name_counters[base] = i + 1
        return f"{base}_{i}"

    def _insert(self, node):
        before = self._insert_before
        if before is None:
            out = self.output_node
            before = out if out is not None and node.op != "output" else None
        if before is None:
            self._nodes.append(node)
        else:
            self._nodes.insert(self._nodes.index(before), node)
        self._by_name[node.name] = node
        self._version += 1
        return node

    def _check_inputs(self, inputs, op):
        for node in inputs:
            if not isinstance(node, Node) or node.graph is not self:
                raise IRError(f"{op}: input {node!r} is not a node of this graph")

    def call(self, op, inputs, attrs=None, *, name=None, meta=None):
        """Insert a node computing ``op(*inputs)`` at the insertion point and return it.

        Missing attrs take the op's defaults; without ``meta`` the shape and dtype come from
        the op's shape rule (IRError right away if the inputs don't fit the op).
        """
        opdef = opset.get_op(op)
        inputs = tuple(inputs)
        self._check_inputs(inputs, op)
        error = opdef.arity_error(len(inputs))
        if error:
            raise IRError(error)
        attrs = {**opdef.defaults, **plain(dict(attrs or {}))}
        node = Node(None, self._unique_name(name or op), op, inputs, attrs, _normalized(meta))
        node.graph = self
        if meta is None and opdef.shape_rule is not None:
            self._infer_meta(node)
        return self._insert(node)

    def _infer_meta(self, node):
        metas = [n.meta for n in node.inputs]
        if any(m.get("shape") is None for m in metas):
            return
        try:
            node.meta.update(meta_from_rule(node.opdef.shape_rule(metas, node.attrs)))
        except IRError as e:
            node.inputs = ()
            raise IRError(f"%{node.name} = {node.op}(...): {e}") from None

    def placeholder(self, name, shape, dtype="float32"):
        """A graph input of ``shape`` (``"N"`` marks the batch dim) and ``dtype``."""
        meta = {"shape": opset.normalize_shape(shape), "dtype": str(dtype)}
        return self.call("placeholder", (), name=name, meta=meta)

    def param(self, name, value, *, module_path=None):
        """A module-owned tensor; ``value`` (numpy or Needle Tensor) goes to ``self.tensors``."""
        return self._tensor_node("param", name, value, module_path)

    def constant(self, value, name=None):
        """A tensor created inside forward; ``value`` goes to ``self.tensors``."""
        return self._tensor_node("constant", name or "const", value, None)

    def _tensor_node(self, op, name, value, module_path):
        array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        node_name = self._unique_name(name)
        self.tensors[node_name] = array
        meta = {"shape": tuple(array.shape), "dtype": dtype_of_array(array)}
        if module_path is not None:
            meta["module_path"] = module_path
        return self.call(op, (), {"tensor": node_name}, name=node_name, meta=meta)

    def output(self, nodes):
        """The graph's results: a Node or a (nested) tuple/list of Nodes; must come last."""
        if self.output_node is not None:
            raise IRError("the graph already has an output node")
        flat = []
        structure = _flatten_structure(nodes, flat)
        self._check_inputs(flat, "output")
        node = Node(None, "output", "output", flat, {"structure": structure})
        node.graph = self
        self._nodes.append(node)
        self._by_name["output"] = node
        self._version += 1
        return node

    @contextlib.contextmanager
    def inserting_before(self, node):
        """New nodes go right before ``node`` (in call order) inside the ``with`` block."""
        if node.graph is not self:
            raise IRError(f"inserting_before: %{node.name} is not in this graph")
        saved, self._insert_before = self._insert_before, node
        try:
            yield
        finally:
            self._insert_before = saved

    @contextlib.contextmanager
    def inserting_after(self, node):
        """New nodes go right after ``node`` (in call order) inside the ``with`` block."""
        if node.graph is not self or node.op == "output":
            raise IRError(f"inserting_after: %{node.name} is not a node of this graph that "
                          "new nodes can follow")
        index = self._nodes.index(node)
        after = self._nodes[index + 1] if index + 1 < len(self._nodes) else None
        if after is None:
            saved, self._insert_before = self._insert_before, None
            try:
                yield
            finally:
                self._insert_before = saved
            return
        with self.inserting_before(after):
            yield

    def erase(self, node):
        """Remove ``node``; IRError if anything still uses it."""
        if node.graph is not self:
            raise IRError(f"erase: %{node.name} is not in this graph")
        if node._users:
            users = ", ".join(f"%{u.name}" for u in node.users)
            raise IRError(f"erase: %{node.name} is still used by {users}")
        node.inputs = ()
        self._nodes.remove(node)
        del self._by_name[node.name]
        node.graph = None
        self._version += 1
        key = node.attrs.get("tensor") if node.op in ("param", "constant") else None
        if key is not None and not any(n.attrs.get("tensor") == key for n in self._tensor_nodes()):
            self.tensors.pop(key, None)

    def _tensor_nodes(self):
        return [n for n in self._nodes if n.op in ("param", "constant")]

    def eliminate_dead_code(self):
        """Erase nodes whose value nobody uses (placeholders stay); True if any were erased."""
        changed = False
        for node in reversed(self.nodes):
            if node.op not in ("output", "placeholder") and not node._users:
                self.erase(node)
                changed = True
        return changed

    def rename(self, node, name):
        """Give ``node`` the free name ``name`` (IRError if taken)."""
        if node.graph is not self:
            raise IRError(f"rename: %{node.name} belongs to another graph")
        if name in self._by_name:
            raise IRError(f"rename: %{name} already exists")
        del self._by_name[node.name]
        node.name = name
        self._by_name[name] = node

    def copy(self):
        """A deep copy of the nodes, observers and qconfig; tensor arrays are shared (never
        mutate them in place)."""
        new = Graph()
        new.tensors = dict(self.tensors)
        mapping = {}
        for node in self._nodes:
            copied = Node(new, node.name, node.op, [mapping[i] for i in node.inputs],
                          _deep_copy(node.attrs), _deep_copy(node.meta))
            mapping[node] = copied
            new._nodes.append(copied)
            new._by_name[node.name] = copied
        new._name_counters = dict(self._name_counters)
        # each copy calibrates on its own: observers are deep-copied, for the nodes it has
        new.observers = {k: copy.deepcopy(v) for k, v in self.observers.items()
                         if k in new._by_name}
        new.qconfig = copy.deepcopy(self.qconfig)
        return new

    # ------------------------------------------------------------------ checks and views

    def lint(self):
        """Check every invariant; raise IRError listing all violations (returns self if fine)."""
        problems = graph_violations(self)
        if problems:
            raise IRError("graph lint failed:\n  " + "\n  ".join(problems))
        return self

    def propagate_shapes(self, *example_inputs):
        """Recompute every node's shape/dtype meta with the op table's shape rules.

        With ``example_inputs`` the placeholders first take their shapes and dtypes (a dim
        that is ``"N"`` in the placeholder stays symbolic). Returns self.
        """
        for node, value in zip(self.placeholders, example_inputs):
            _placeholder_meta_from(node, value)
        for node in self._nodes:
            rule = opset.get_op(node.op).shape_rule
            if rule is not None and node.inputs is not None:
                self._infer_meta(node)
        return self

    def to_networkx(self):
        """This graph as a ``networkx.DiGraph`` (see :func:`needle_qc.tools.viz.to_networkx`)."""
        from needle_qc.tools.viz import to_networkx

        return to_networkx(self)

    def to_dot(self, compare=None, node_colors=None):
        """A ``graphviz.Digraph`` of this graph (see :func:`needle_qc.tools.viz.draw`)."""
        from needle_qc.tools.viz import to_dot

        return to_dot(self, compare, node_colors)

    def __str__(self):
        from needle_qc.ir.printer import format_graph

        return format_graph(self)

    def __repr__(self):
        return f"<Graph with {len(self._nodes)} nodes>"

    @classmethod
    def parse(cls, text, tensors=None):
        """Build a graph from its text form; ``tensors`` supplies param/constant values."""
        from needle_qc.ir.printer import parse_graph

        return parse_graph(text, tensors)

    def __call__(self, *inputs, device=None):
        """Run the graph with the reference interpreter (Needle ops); returns Tensors."""
        from needle_qc.ir.interpreter import Interpreter

        return Interpreter(self, device=device, param_cache=self._param_cache).run(*inputs)


def meta_from_rule(result):
    """``{"shape", "dtype"}`` from a shape rule's ``(shape, dtype)`` or list of pairs."""
    if isinstance(result, list):
        return {"shape": tuple(opset.normalize_shape(s) for s, _ in result),
                "dtype": tuple(d for _, d in result)}
    shape, dtype = result
    return {"shape": opset.normalize_shape(shape), "dtype": dtype}


def _normalized(meta):
    """A copy of ``meta`` whose shape is a tuple of canonical dims (tuple of them for tuples)."""
    if meta is None or meta.get("shape") is None:
        return meta
    meta = dict(meta)
    if isinstance(meta.get("dtype"), (tuple, list)):
        meta["shape"] = tuple(opset.normalize_shape(s) for s in meta["shape"])
        meta["dtype"] = tuple(meta["dtype"])
    else:
        meta["shape"] = opset.normalize_shape(meta["shape"])
    return meta


def _placeholder_meta_from(node, value):
    array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    old = node.meta.get("shape") or ()
    shape = tuple(old[i] if i < len(old) and opset.is_symbolic(old[i]) else d
                  for i, d in enumerate(array.shape))
    node.meta["shape"] = shape
    node.meta["dtype"] = getattr(value, "dtype", None) or dtype_of_array(array)
    if not isinstance(node.meta["dtype"], str):
        node.meta["dtype"] = dtype_of_array(array)


def _flatten_structure(value, flat):
    if isinstance(value, Node):
        flat.append(value)
        return len(flat) - 1
    if isinstance(value, (tuple, list)):
        return tuple(_flatten_structure(v, flat) for v in value)
    raise IRError(f"output: {value!r} is not a Node or a tuple of Nodes")


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_deep_copy(v) for v in value)
    return value


# ----------------------------------------------------------------------------- lint

def graph_violations(graph):
    """Every invariant the graph breaks, one message per problem (empty list: all fine)."""
    problems = []
    position = {}
    for index, node in enumerate(graph._nodes):
        problems += [f"%{node.name}: {p}" for p in _node_violations(graph, node, position)]
        position[node] = index
    problems += _graph_level_violations(graph)
    return problems


def _node_violations(graph, node, earlier):
    if node.graph is not graph:
        yield "node belongs to another graph"
    if not _NAME_OK.match(node.name) or graph._by_name.get(node.name) is not node:
        yield f"name {node.name!r} is invalid or not unique"
    try:
        opdef = opset.get_op(node.op)
    except IRError as e:
        yield str(e)
        return
    for i, inp in enumerate(node.inputs):
        if inp not in earlier:
            yield f"input {i} %{inp.name} is not defined before its use"
        if node not in inp._users:
            yield f"missing from the users of its input %{inp.name}"
    for user in node._users:
        if node not in user.inputs:
            yield f"lists %{user.name} as a user, but %{user.name} does not use it"
    arity = opdef.arity_error(len(node.inputs))
    if arity:
        yield arity
    yield from _attr_violations(node, opdef)
    yield from _meta_violations(graph, node, opdef)


def _attr_violations(node, opdef):
    for key, value in node.attrs.items():
        if key not in opdef.attrs:
            yield f"unknown attr {key!r} for {node.op} (known: {', '.join(opdef.attrs) or 'none'})"
        elif not opset.check_attr(opdef.attrs[key], value):
            yield f"attr {key}={value!r} is not of type {opdef.attrs[key]}"
    for key, spec in opdef.attrs.items():
        if key not in node.attrs and not spec.endswith("?"):  # "?" attrs may be left out
            yield f"missing attr {key!r}"


def _meta_violations(graph, node, opdef):
    if node.op in ("param", "constant"):
        yield from _tensor_violations(graph, node)
    if opdef.shape_rule is None or node.op == "output":
        return
    if any(i.meta.get("shape") is None for i in node.inputs):
        return
    try:
        want = meta_from_rule(opdef.shape_rule([i.meta for i in node.inputs], node.attrs))
    except (IRError, KeyError, TypeError, ValueError, IndexError) as e:
        yield f"shape rule of {node.op} rejects its inputs: {e}"
        return
    got = {"shape": node.meta.get("shape"), "dtype": node.meta.get("dtype")}
    if got != want:
        from needle_qc.ir.printer import format_type

        yield f"meta says {format_type(got)} but the shape rule gives {format_type(want)}"


def _tensor_violations(graph, node):
    key = node.attrs.get("tensor")
    if key not in graph.tensors:
        yield f"tensor {key!r} missing from graph.tensors"
        return
    array = graph.tensors[key]
    if tuple(array.shape) != node.meta.get("shape"):
        yield f"tensor {key!r} has shape {array.shape}, meta says {node.meta.get('shape')}"
    if dtype_of_array(array) != node.meta.get("dtype"):
        yield f"tensor {key!r} has dtype {dtype_of_array(array)}, meta says " \
              f"{node.meta.get('dtype')}"


def _graph_level_violations(graph):
    outputs = [n for n in graph._nodes if n.op == "output"]
    if len(outputs) != 1:
        yield f"graph has {len(outputs)} output nodes; expected exactly 1"
    elif graph._nodes[-1] is not outputs[0]:
        yield "the output node is not the last node"
    for out in outputs:
        leaves = []
        _structure_leaves(out.attrs.get("structure"), leaves)
        if leaves != list(range(len(out.inputs))):
            yield f"%{out.name}: structure {out.attrs.get('structure')!r} does not number " \
                  f"its {len(out.inputs)} inputs in order"
    for name, node in graph._by_name.items():
        if node not in graph._nodes or node.name != name:
            yield f"name table entry {name!r} is stale"


def _structure_leaves(structure, leaves):
    if isinstance(structure, int) and not isinstance(structure, bool):
        leaves.append(structure)
    elif isinstance(structure, (tuple, list)):
        for item in structure:
            _structure_leaves(item, leaves)
    else:
        leaves.append(None)
