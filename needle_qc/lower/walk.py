"""The graph walk behind lower(): one Step per node, NCHW/NHWC layouts, constant folding."""

import numpy as np

from needle_qc import opset
from needle_qc.errors import IRError
from needle_qc.frontend import using
from needle_qc.lower import common as lowering_common
from needle_qc.lower.builders import BUILDERS
from needle_qc.lower.program import Impl, Program, Step, WeightRecord

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
        self.shared = {}  # (what, weight tensor keys) -> packed weight built once
        self._interp = None
        # the builders call ``kernels``: the target's module (CUDA for "cuda"); ``cpu_kernels``
        # is the CPU's, for the nodes the CUDA module has no kernel for
        self.kernels = lowering_common.kernels_for(target)
        self.cpu_kernels = lowering_common._kernels()

    @property
    def on_cuda(self):
        """True when ``kernels`` is the CUDA module (target "cuda")."""
        return self.target == "cuda"

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
        record_weights_once(self.graph, self.steps, set(self.folded))
        if self.on_cuda:
            label_devices(self.steps)
        return Program(self.graph, self.target, self.steps, inputs, outputs, structure,
                       self.used_constants, self.sizes, self.state)

    def packed_once(self, what, node, make, params=None):
        """``make()`` once per (``what``, the tensor keys of ``params``, by default all of
        ``node``'s param inputs): layers sharing their weight params (an unrolled LSTM cell)
        share one packed weight."""
        key = (what, weight_keys(node) if params is None else
               tuple(p.attrs.get("tensor", p.name) for p in params))
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]

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
            fn, how = _layout_copy(layout)
            impl = Impl(f"transpose {have}->{layout}{how}", "layout boundary", fn, [node.name],
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
        from needle_qc.frontend.compute import compute_framework
        from needle_qc.ir.interpreter import Interpreter

        if self._interp is None:
            fw = compute_framework(self.graph)
            self._interp = Interpreter(self.graph, fw.default_device(), framework=fw)
        interp, state = self._interp, self.state
        opdef = node.opdef
        if opdef.evaluate is None:
            raise IRError(f"%{node.name}: op {node.op} has no evaluation rule")
        dtypes = [i.meta.get("dtype") for i in node.inputs]

        def run(*arrays):
            interp.node, interp.batch_size = node, state["batch"]
            tensors = [_as_tensor(a, d, interp) for a, d in zip(arrays, dtypes)]
            with using(interp.framework):
                out = opdef.evaluate(tensors, interp._resolved_attrs(node, opdef), interp)
            return out if isinstance(node.meta.get("dtype"), tuple) else out.numpy()

        inputs = [self.value(i, "logical") for i in node.inputs]
        if self.target == "reference":
            return Impl(f"op-table eval ({node.op})", "reference target: interpreter numbers",
                        run, inputs, kind="reference")
        return Impl(f"op-table eval ({node.op})", "no native kernel: interpreter semantics",
                    run, inputs, kind="eval")


# ----------------------------------------------------------------------------- devices

def label_devices(steps):
    """Target "cuda": say in each kernel name where it runs, and why a CPU one does.

    ``explain()`` then shows ``cuda: gemm_u8s8_requant`` for a CUDA kernel and
    ``cpu: ...`` with ``cpu fallback: <reason>`` leading its why for everything else.
    """
    for step in steps:
        _label(step.impl, step.op, alternative=False)
        if step.alternative is not None:
            _label(step.alternative, step.op, alternative=True)


def _label(impl, op, alternative):
    if impl.device == "cuda":
        impl.kernel = f"cuda: {impl.kernel}"
        return
    impl.kernel = f"cpu: {impl.kernel}"
    impl.why = f"cpu fallback: {impl.fallback or _fallback_reason(impl, op, alternative)}; " \
               f"{impl.why}"


def _fallback_reason(impl, op, alternative):
    if alternative:
        return "the float version runs on the CPU"
    return {"float": f"{op} runs on the host (no CUDA fp32 kernels in this lowering)",
            "layout": "layout copy on the host",
            "eval": f"no CUDA kernel for {op} (op-table evaluation)"}.get(
                impl.kind, f"no CUDA kernel for {op}")


# ----------------------------------------------------------------------------- weight records



def _accounts_own_params(op):
    # quantized ops' builders account for their own params (scales, biases go to qparam bytes)
    t = opset.traits(op)
    return t.integer or t.kind == "quant"


def _is_param(node):
    return node.op == "param"  # constants are made in forward, not module weights


def weight_keys(node):
    """The ``graph.tensors`` keys of ``node``'s param inputs, in input order."""
    return tuple(i.attrs.get("tensor", i.name) for i in node.inputs if _is_param(i))


def record_weights_once(graph, steps, folded=()):
    """Make each weight param appear once in the records, and every float-held param appear.

    A builder's record covers its node's weight (input 1); a layer reached again through a
    shared param (same tensor key and record dtype) drops its duplicate record. A float op with
    no builder record (a matmul by a param, an embedding) gets one float record for the first
    matrix param it holds that no earlier record covers, also through values folded at lowering
    time (``folded``: node names; e.g. a reshaped bias). Vector params (biases, norm scales and
    shifts) and further params go to the node's record's qparam bytes, as a quantized layer's
    bias does: at most one record per node, as ``report.memory_of`` expects.
    """
    seen = set()
    by_name = {n.name: n for n in graph.nodes}
    for step in steps:
        node = by_name.get(step.node) if step.op != "layout" else None
        if node is None:
            continue
        for impl in (step.impl, step.alternative):
            if impl is not None:
                impl.weights = _new_records(graph, node, impl.weights, seen, folded)


def _held_params(node, folded):
    """The params ``node`` reads directly or through inputs folded at lowering time."""
    out, todo = [], list(node.inputs)
    while todo:
        value = todo.pop(0)
        if _is_param(value):
            out.append(value)
        elif value.name in folded:
            todo.extend(value.inputs)
    return out


def _new_records(graph, node, records, seen, folded):
    weight = node.inputs[1] if len(node.inputs) > 1 and _is_param(node.inputs[1]) else None
    keep = []
    for rec in records:
        key = (weight.attrs["tensor"] if weight is not None else node.name, rec.dtype)
        if key not in seen:
            seen.add(key)
            keep.append(rec)
    if _accounts_own_params(node.op) or (records and not keep):
        return keep  # quantized ops count their own params; a dropped copy's params are counted
    for param in _held_params(node, folded):
        array = graph.tensors.get(param.attrs["tensor"])
        key = (param.attrs["tensor"], None if array is None else _dtype_name(array))
        if array is None or not np.issubdtype(array.dtype, np.floating) or key in seen:
            continue
        seen.add(key)
        vector = array.size == max(array.shape, default=1)  # a bias / norm scale or shift
        if vector and not keep:
            keep.append(WeightRecord(node.name, key[1], 0, 0.0, 0, 0))
        if vector or keep:
            keep[0].qparam_bytes += int(array.nbytes)
        else:
            keep.append(WeightRecord(node.name, key[1], int(array.size), float(array.nbytes),
                                     int(array.nbytes), 0))
    return keep


def _dtype_name(array):
    return array.dtype.name


def _as_tensor(array, dtype, interp):
    if not isinstance(array, np.ndarray):
        return array  # a tuple value or a Tensor from an earlier op-table step
    return interp.framework.tensor(array, interp.device, dtype or array.dtype.name)


def _to_nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _to_nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _layout_copy(layout):
    """(fn, kernel note) converting a 4-D array to ``layout`` ("nhwc" or "logical" = NCHW).

    NCHW -> NHWC of 1-4 channels (an image batch entering the first conv) takes the C++ copy
    when built: numpy's strided transpose walks the source H*W elements apart per element
    (resnet9's 64x3x32x32 uint8 input: 327 vs 54 us here); for more channels, and NHWC -> NCHW,
    numpy's copy was measured as fast or faster. Both move the same bytes.
    """
    q = lowering_common._kernels()
    if layout != "nhwc" or q is None or not hasattr(q, "nchw_to_nhwc"):
        return (_to_nhwc if layout == "nhwc" else _to_nchw), ""
    kernel = q.nchw_to_nhwc

    def run(x):
        if x.shape[1] > 4:
            return _to_nhwc(x)
        return kernel(x if x.flags.c_contiguous else np.ascontiguousarray(x))
    return run, " (C++ copy for <= 4 channels)"
