r"""Reference execution of a Graph with Needle ops: what a graph means, bit for bit.

Example
-------
>>> import numpy as np, needle
>>> from needle_qc.ir.graph import Graph
>>> g = Graph.parse("%x = placeholder() : f32[N,2]\n%y = relu(%x) : f32[N,2]\nreturn %y")
>>> Interpreter(g, device=needle.cpu_numpy()).run(np.array([[-1.0, 2.0]], np.float32))
needle.Tensor([[0. 2.]])

A traced graph equals the model exactly on the same device: ``trace(model, x)(x2)`` gives the
same bits as ``model(x2)``, at any batch size.
"""

import numpy as np

from needle_qc import frontend, opset
from needle_qc.errors import IRError


class Interpreter:
    """Evaluates a graph node by node; subclass and override a method to observe or change it.

    Parameters
    ----------
    graph : Graph
        The graph to run (it is linted lightly: ops must be known and evaluable).
    device : needle device, optional
        Where params and numpy inputs go. Default: the device of the first Tensor input,
        else the framework's ``cpu()`` when its backend is built, else ``cpu_numpy()``.
    framework : module or Framework, optional
        The Needle whose ops evaluate the graph. Default: ``graph.framework`` (set by the
        tracer to the model's own Needle), else :func:`needle_qc.frontend.default`.

    Attributes
    ----------
    node : Node
        The node being evaluated (for op evaluators and error messages).
    batch_size : int or None
        The value of ``N`` for this run, read from the placeholders' batch dims.
    """

    def __init__(self, graph, device=None, *, param_cache=None, framework=None):
        self.graph = graph
        self.device = device
        self.module_fallbacks = set()  # nodes whose user layer class could not be rebuilt
        bound = framework if framework is not None else getattr(graph, "framework", None)
        self.framework = frontend.from_module(bound) if bound is not None else \
            frontend.default()
        self.node = None
        self.batch_size = None
        # (framework, device, key) -> (array, Tensor): reused while graph.tensors[key] is
        # the same array
        self._params = {} if param_cache is None else param_cache

    # ------------------------------------------------------------------ public

    def run(self, *inputs):
        """Evaluate the graph on ``inputs`` (Needle Tensors or numpy arrays); returns Tensors
        nested as the model returned them."""
        placeholders = self.graph.placeholders
        if len(inputs) != len(placeholders):
            names = ", ".join(f"%{p.name}" for p in placeholders)
            raise IRError(f"graph takes {len(placeholders)} inputs ({names}), got {len(inputs)}")
        inputs = [x if self.framework.is_tensor(x) else _as_array(x) for x in inputs]
        self._choose_device(inputs)
        self.batch_size = self._bind_batch_size(placeholders, inputs)
        env = {}
        bound = dict(zip(placeholders, inputs))
        result = None
        with frontend.using(self.framework):
            for node in self.graph.nodes:
                self.node = node
                if node.op == "placeholder":
                    env[node] = self.placeholder(node, bound[node])
                elif node.op == "output":
                    result = self.output(node, [env[i] for i in node.inputs])
                else:
                    env[node] = self.call_op(node, [env[i] for i in node.inputs])
        self.node = None
        return result

    def param(self, key):
        """The Tensor for ``graph.tensors[key]`` on this device (made once, then cached)."""
        if key not in self.graph.tensors:
            raise IRError(f"%{self.node.name}: tensor {key!r} missing from graph.tensors")
        array = self.graph.tensors[key]
        # two frameworks may name their devices alike ("cpu()"): their Tensors never mix
        slot = (self.framework.name, repr(self.device), key)
        cached = self._params.get(slot)
        if cached is None or cached[0] is not array:
            cached = (array, self._to_tensor(array, _dtype_name(array)))
            self._params[slot] = cached
        return cached[1]

    # ------------------------------------------------------------------ per node kind

    def placeholder(self, node, value):
        """Convert an input to a Tensor of the placeholder's dtype on this device."""
        dtype = node.meta.get("dtype", "float32")
        if self.framework.is_tensor(value):
            if value.device == self.device and value.dtype == dtype:
                return value
            value = value.numpy()
        return self._to_tensor(np.asarray(value), dtype)

    def call_op(self, node, inputs):
        """Evaluate one op with the op table's ``evaluate`` (symbolic dims resolved)."""
        opdef = opset.get_op(node.op)
        if opdef.evaluate is None:
            raise IRError(f"%{node.name}: op {node.op} has no evaluation rule")
        attrs = self._resolved_attrs(node, opdef)
        fw = self.framework
        # ops standing for a layer class are evaluated by rebuilding the framework's own class
        if opdef.traits.module_class is None or fw.bundled or fw.is_own:
            return opdef.evaluate(inputs, attrs, self)
        try:
            # the user's own layer class, rebuilt from the course field names: same bits
            return opdef.evaluate(inputs, attrs, self)
        except Exception:  # noqa: BLE001 (their class wants fields the course does not name)
            self.module_fallbacks.add(node.name)
            return self._evaluate_own(opdef, inputs, attrs)

    def _evaluate_own(self, opdef, inputs, attrs):
        """``opdef`` on needle_qc's NumPy arrays, the result back in this framework."""
        own_inputs = [frontend.own.Tensor(np.array(x.numpy(), copy=True)) for x in inputs]
        with frontend.using(frontend.OWN):
            out = opdef.evaluate(own_inputs, attrs, self)
        if isinstance(out, tuple):
            return self.framework.module.ops.make_tuple(
                *[self._to_tensor(o.numpy(), o.dtype) for o in out])
        return self._to_tensor(out.numpy(), out.dtype)

    def output(self, node, values):
        """Nest the results as ``attrs["structure"]`` says."""
        structure = node.attrs.get("structure", tuple(range(len(values))))
        return _unflatten(structure, values)

    # ------------------------------------------------------------------ helpers

    def _resolved_attrs(self, node, opdef):
        attrs = dict(node.attrs)
        for key, spec in opdef.attrs.items():
            if spec.rstrip("?") == "shape" and attrs.get(key) is not None:
                attrs[key] = tuple(d if d == -1 else opset.resolve_dim(d, self.batch_size)
                                   for d in attrs[key])
        return attrs

    def _choose_device(self, inputs):
        if self.device is not None:
            return
        tensors = [x for x in inputs if self.framework.is_tensor(x)]
        self.device = tensors[0].device if tensors else self.framework.default_device()

    def _bind_batch_size(self, placeholders, inputs):
        batch = None
        for node, value in zip(placeholders, inputs):
            shape = tuple(value.shape)
            want = node.meta.get("shape")
            if want is None:
                continue
            if len(shape) != len(want):
                raise IRError(_input_error(node, shape, "rank differs"))
            for got, dim in zip(shape, want):
                k, p = opset.dim_parts(dim)
                if not p and got != k:
                    raise IRError(_input_error(node, shape, f"dim {got} should be {k}"))
                if p and (got % k or (batch is not None and got // k != batch)):
                    raise IRError(_input_error(node, shape, f"batch dim {got} disagrees"))
                if p:
                    batch = got // k
        return batch

    def _to_tensor(self, array, dtype):
        if dtype == "bfloat16" and np.asarray(array).dtype == np.uint16:
            # graph.tensors keeps bfloat16 as raw bits; Tensor() takes values (exact in bf16).
            from needle_qc.quantize.lowbit import bf16_to_float32

            array = bf16_to_float32(array)
        return self.framework.tensor(array, self.device, dtype)


def _input_error(node, shape, why):
    from needle_qc.ir.printer import format_type

    return f"input %{node.name} has shape {shape}; expected {format_type(node.meta)} ({why})"


def _dtype_name(array):
    from needle_qc.ir.graph import dtype_of_array

    return dtype_of_array(array)


def _unflatten(structure, values):
    if isinstance(structure, int):
        return values[structure]
    return tuple(_unflatten(s, values) for s in structure)


def _as_array(value):
    # a Tensor of another framework (e.g. the user's, run on needle_qc's arrays) -> numpy
    return value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) \
        else np.asarray(value)
