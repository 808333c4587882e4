"""The graph walk behind lower(): one Step per node, NCHW/NHWC layouts, constant folding."""

import numpy as np

from . import opset
from .errors import IRError
from .lowering_kernels import BUILDERS
from .lowering_program import Impl, Program, Step

LAYOUT_FREE = {"relu", "requantize", "quantize", "qadd", "add", "mul", "maximum", "negate",
               "add_scalar", "mul_scalar", "div_scalar", "tanh", "sigmoid", "exp"}
"""Elementwise ops: they run in whatever layout their inputs share (NHWC stays NHWC)."""


# ----------------------------------------------------------------------------- the walk

class _Lowering:
    """Walks the graph once, building steps; tracks constants and each value's layout."""

    def __init__(self, graph, target):
        self.graph = graph
        self.target = target
        self.steps = []
        self.layout = {}  # value name -> "logical" | "nhwc"
        self.folded = {}  # node name -> array computed at lowering time
        self.converted = {}  # (value, layout) -> converted value name
        self.sizes = {}
        self.used_constants = {}
        self.state = {"batch": None}  # the Program's run state: steps read the batch size
        self._interp = None

    def run(self):
        inputs, outputs, structure = [], [], None
        for node in self.graph.nodes:
            if node.op == "placeholder":
                inputs.append((node.name, node.meta.get("dtype", "float32"),
                               tuple(node.meta.get("shape") or ())))
                self.layout[node.name] = "logical"
                self._size(node.name, node.meta)
            elif node.op in ("param", "constant"):
                continue
            elif node.op == "output":
                outputs = [self.value(i, "logical") for i in node.inputs]
                structure = node.attrs.get("structure", tuple(range(len(outputs))))
            elif self._foldable(node):
                self.folded[node.name] = self._evaluate_now(node)
            else:
                self._lower_node(node)
        return Program(self.graph, self.target, self.steps, inputs, outputs, structure,
                       self.used_constants, self.sizes, self.state)

    # -- values

    def const(self, node):
        """The array of a param/constant/folded node, else None."""
        if node.op in ("param", "constant"):
            key = node.attrs.get("tensor")
            if key not in self.graph.tensors:
                raise IRError(f"%{node.name}: tensor {key!r} missing from graph.tensors")
            return self.graph.tensors[key]
        return self.folded.get(node.name)

    def value(self, node, layout):
        """The env name holding ``node``'s value in ``layout`` (a copy step if needed)."""
        array = self.const(node)
        if array is not None:
            self.used_constants[node.name] = array
            return node.name
        have = self.layout[node.name]
        if have == layout or layout == "any":
            return node.name
        key = (node.name, layout)
        if key not in self.converted:
            name = f"{node.name}@{layout}"
            fn = _to_nhwc if layout == "nhwc" else _to_nchw
            impl = Impl(f"transpose {have}->{layout}", "layout boundary", fn, [node.name],
                        layout, kind="layout")
            self.steps.append(Step(node.name, "layout", name, impl))
            self.sizes[name] = self.sizes.get(node.name, (0, 0))
            self.layout[name] = layout
            self.converted[key] = name
        return self.converted[key]

    def _size(self, name, meta):
        shape, dtype = meta.get("shape"), meta.get("dtype")
        if shape is None or not isinstance(dtype, str):
            self.sizes[name] = (0, 0)
            return
        k, p = opset.shape_size(shape)
        item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        self.sizes[name] = (k * item, 0) if p else (0, k * item)

    # -- nodes

    def _foldable(self, node):
        """Computable once, here: only constant inputs and no batch-sized output."""
        if node.op in ("observer", "placeholder", "full") or not node.inputs:
            return False
        shape = node.meta.get("shape")
        if shape is None or isinstance(node.meta.get("dtype"), tuple) or \
                any(opset.is_symbolic(d) for d in shape):
            return False
        return all(self.const(i) is not None for i in node.inputs)

    def _evaluate_now(self, node):
        fn = self._needle_eval(node).fn
        return fn(*[self.const(i) for i in node.inputs])

    def _lower_node(self, node):
        builder = None if self.target == "reference" else BUILDERS.get(node.op)
        impl = alternative = None
        if builder is not None:
            result = builder(self, node)
            if result is not None:
                impl, alternative = result if isinstance(result, tuple) else (result, None)
        if impl is None:
            impl = self._needle_eval(node)
        self.steps.append(Step(node.name, node.op, node.name, impl, alternative))
        self.layout[node.name] = impl.out_layout
        self._size(node.name, node.meta)

    def _needle_eval(self, node):
        """The op table's evaluation of ``node`` (Needle Tensors in, numpy out)."""
        import needle

        from .interpreter import Interpreter

        if self._interp is None:
            cpu = needle.cpu()
            self._interp = Interpreter(self.graph, cpu if cpu.enabled() else needle.cpu_numpy())
        interp, state = self._interp, self.state
        opdef = node.opdef
        if opdef.evaluate is None:
            raise IRError(f"%{node.name}: op {node.op} has no evaluation rule")
        dtypes = [i.meta.get("dtype") for i in node.inputs]

        def run(*arrays):
            interp.node, interp.batch_size = node, state["batch"]
            tensors = [_as_tensor(a, d, interp) for a, d in zip(arrays, dtypes)]
            out = opdef.evaluate(tensors, interp._resolved_attrs(node, opdef), interp)
            return out if isinstance(node.meta.get("dtype"), tuple) else out.numpy()

        inputs = [self.value(i, "logical") for i in node.inputs]
        if self.target == "reference":
            return Impl(f"op-table eval ({node.op})", "reference target: interpreter numbers",
                        run, inputs, kind="reference")
        return Impl(f"op-table eval ({node.op})", "no native kernel: interpreter semantics",
                    run, inputs, kind="eval")


def _as_tensor(array, dtype, interp):
    import needle

    if not isinstance(array, np.ndarray):
        return array  # a tuple value or a Tensor from an earlier op-table step
    return needle.Tensor(array, device=interp.device, dtype=dtype or array.dtype.name,
                         requires_grad=False)


def _to_nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _to_nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
