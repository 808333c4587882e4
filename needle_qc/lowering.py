"""Lowering: a Graph (any stage) -> a Program of kernel calls, weights packed once.

``lower(graph, target)`` picks one implementation per node:

- integer nodes (``qlinear``, ``qconv2d``, ``quantize``, ``dequantize``, ``linear_dynamic``,
  weight-only ops) -> the C++ kernels of :mod:`needle_qc._quant_cpu`, weights packed and
  requantization multipliers computed here, once; for ``qlinear`` the activation zero point
  times the weight column sums is folded into the int32 bias;
- float ``linear`` / ``conv2d`` / ``matmul`` -> fp32 GEMM of the C++ NDArray backend
  (``needle.cpu()``), other float ops -> NumPy;
- anything else, and every node of the ``reference`` target -> the op table's evaluation (the
  interpreter's numbers: :mod:`needle_qc.quantize.reference` for the integer ops).

Conv activations stay NHWC between consecutive NHWC kernels; NCHW<->NHWC copies happen only
where a value crosses to an op that needs the IR's logical (NCHW) layout. The u8s8 fast path is
enabled per layer only when ``a_max * max_pair_abs <= 32767`` is proven from the layer's
weights and its input's range; a layer whose int32 accumulator could overflow is refused with
an error naming it. Never silently slower: :func:`tune` times each quantized node against its
float version and keeps the float one when it is faster (unless ``force_int8``).
"""

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import opset
from .errors import IRError
from .quantize import qops  # noqa: F401  (registers the quantization ops)
from .quantize.lowbit import bf16_to_float32, unpack_int4
from .quantize.qparams import CONTAINER, qrange
from .quantize.reference import (
    dequantize_linear,
    exact_int_matmul,
    quantize_linear,
    requant_multiplier,
    requantize,
)

TARGETS = ("cpu", "cuda", "reference")
INT32_MAX = 2**31 - 1
PAIR_LIMIT = 32767  # vpmaddubsw saturates each u8*s8 pair sum to int16
TIMING_REPS = 5
LAYOUT_FREE = {"relu", "requantize", "quantize", "qadd", "add", "mul", "maximum", "negate",
               "add_scalar", "mul_scalar", "div_scalar", "tanh", "sigmoid", "exp"}
"""Elementwise ops: they run in whatever layout their inputs share (NHWC stays NHWC)."""


# ----------------------------------------------------------------------------- records

@dataclass
class WeightRecord:
    """One layer's stored weight: what it would take in theory vs what was allocated."""

    node: str
    dtype: str  # logical weight dtype: int8, int4, float16, bfloat16, float32 ...
    count: int  # number of weights
    theoretical_bytes: float
    measured_bytes: int  # the packed buffer as allocated (or the fp32 array kept)
    qparam_bytes: int = 0  # scales, zero points, biases and requant multipliers beside it


@dataclass
class Impl:
    """One way to compute a node: the kernel, why it was chosen, and the callable."""

    kernel: str
    why: str
    fn: Callable
    inputs: list
    out_layout: str = "logical"
    weights: list = field(default_factory=list)
    kind: str = "float"  # "int8" (quantized kernel), "float", "layout", "eval" or "reference"


@dataclass
class Step:
    """A scheduled call: ``env[output] = impl.fn(*[env[i] for i in impl.inputs])``."""

    node: str
    op: str
    output: str
    impl: Impl
    alternative: Impl = None  # the float version of a quantized node, for tuning
    choice: str = "primary"  # or "alternative"
    times: dict = field(default_factory=dict)  # {"int8": s, "float": s}
    note: str = ""

    @property
    def active(self):
        return self.alternative if self.choice == "alternative" else self.impl


@dataclass
class Program:
    """What :func:`lower` returns: steps in order, inputs, outputs and the buffer plan."""

    graph: object
    target: str
    steps: list
    inputs: list  # [(value name, dtype, shape)]
    outputs: list  # value names, in the output node's order
    structure: object
    constants: dict  # value name -> array used directly by steps
    sizes: dict  # value name -> (bytes per batch item, fixed bytes)
    state: dict = field(default_factory=lambda: {"batch": None})

    def frees(self):
        """For each step, the values whose last use it is (freed right after it runs)."""
        last = {}
        for index, step in enumerate(self.steps):
            for name in step.active.inputs:
                last[name] = index
        keep = set(self.outputs) | set(self.constants)
        out = [[] for _ in self.steps]
        for name, index in last.items():
            if name not in keep:
                out[index].append(name)
        return out

    def peak_activation_bytes(self, batch):
        """Peak bytes of live activations at ``batch`` under the liveness plan."""
        live = {name: self._bytes(name, batch) for name, _, _ in self.inputs}
        peak = sum(live.values())
        for step, frees in zip(self.steps, self.frees()):
            live[step.output] = self._bytes(step.output, batch)
            peak = max(peak, sum(live.values()))
            for name in frees:
                live.pop(name, None)
        return peak

    def _bytes(self, name, batch):
        per_item, fixed = self.sizes.get(name, (0, 0))
        return per_item * batch + fixed


# ----------------------------------------------------------------------------- entry point

def lower(graph, target="cpu", *, choices=None):
    """Lower ``graph`` for ``target``: one :class:`Step` per computing node.

    Parameters
    ----------
    graph : Graph
        Any stage (float, observed, QDQ, integer, weight-only, dynamic).
    target : {"cpu", "cuda", "reference"}
    choices : dict, optional
        ``{node name: "primary" | "alternative"}`` from an earlier :func:`tune` (a loaded
        model reuses them instead of timing again).

    Raises
    ------
    ValueError
        Unknown target, no CUDA kernels, or a layer whose int32 accumulator could overflow
        (the message names the layer).
    """
    if target not in TARGETS:
        raise ValueError(f"lower: target={target!r}; valid: {list(TARGETS)}")
    if target == "cuda":
        _require_cuda()
    ctx = _Lowering(graph, target)
    program = ctx.run()
    for step in program.steps:
        wanted = (choices or {}).get(step.node)
        if wanted == "alternative" and step.alternative is not None:
            step.choice = "alternative"
    return program


def _require_cuda():
    try:
        from . import _quant_cuda  # noqa: F401
    except ImportError:
        raise ValueError("lower: target='cuda' needs the CUDA int8 kernels "
                         "(needle_qc._quant_cuda), which are not built in this install; "
                         "use target='cpu' or 'reference'") from None
    import needle

    if not needle.cuda().enabled():
        raise ValueError("lower: target='cuda' but no CUDA GPU is visible")
    raise ValueError("lower: target='cuda' is not implemented by this lowering yet")


def measure(kind, fn):
    """Best-of-``TIMING_REPS`` wall time of ``fn()`` in seconds (after one warm-up call).

    ``kind`` ("int8" or "float") says which version is timed; tests replace this function.
    """
    fn()
    best = float("inf")
    for _ in range(TIMING_REPS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def tune(program, example_inputs, force_int8=False):
    """Time every quantized step against its float version on ``example_inputs``.

    Runs the program once in order; at each step with a float alternative both versions are
    timed (``measure``) on that step's actual inputs, and the faster is kept, except that
    ``force_int8`` keeps the quantized kernel. Returns the program (choices set in place).
    """
    env = bind_inputs(program, example_inputs)
    for step in program.steps:
        args = [env[name] for name in step.impl.inputs]
        if step.alternative is not None:
            t_q = measure("int8", _bound(step.impl.fn, args))
            t_f = measure("float", _bound(step.alternative.fn, args))
            step.times = {"int8": t_q, "float": t_f}
            slower = t_q > t_f
            step.choice = "alternative" if slower and not force_int8 else "primary"
            step.note = "forced int8 although slower" if slower and force_int8 else \
                "kept float: int8 was slower" if slower else "int8 faster than float"
        env[step.output] = step.active.fn(*args)
    return program


def measure_each(program, example_inputs, reps=TIMING_REPS):
    """Best-of-``reps`` time of every step (its active version) into ``step.times["run"]``."""
    env = bind_inputs(program, example_inputs)
    for step in program.steps:
        impl = step.active
        args = [env[name] for name in impl.inputs]
        best = float("inf")
        for _ in range(max(1, reps)):
            start = time.perf_counter()
            env[step.output] = impl.fn(*args)
            best = min(best, time.perf_counter() - start)
        step.times["run"] = best
    return program


def _bound(fn, args):
    return lambda: fn(*args)


def bind_inputs(program, inputs):
    """The starting value table: checked, converted inputs plus the batch size in ``state``."""
    if len(inputs) != len(program.inputs):
        names = ", ".join(f"%{n}" for n, _, _ in program.inputs)
        raise ValueError(f"the model takes {len(program.inputs)} inputs ({names}), "
                         f"got {len(inputs)}")
    env = dict(program.constants)
    batch = None
    for (name, dtype, shape), value in zip(program.inputs, inputs):
        array = np.ascontiguousarray(value, dtype=_storage(dtype))
        batch = _check_input(name, shape, array.shape, batch)
        env[name] = array
    program.state["batch"] = batch
    return env


def _storage(dtype):
    return np.uint16 if dtype == "bfloat16" else np.dtype(dtype)


def _check_input(name, want, got, batch):
    if len(want) != len(got):
        raise ValueError(f"input %{name}: shape {tuple(got)} has rank {len(got)}; expected "
                         f"{len(want)} dims {tuple(want)}")
    for dim, size in zip(want, got):
        k, p = opset.dim_parts(dim)
        if not p and size != k:
            raise ValueError(f"input %{name}: shape {tuple(got)}; expected {tuple(want)} "
                             f"(dim {size} should be {k})")
        if p:
            if size % k or (batch is not None and size // k != batch):
                raise ValueError(f"input %{name}: shape {tuple(got)}; batch dim {size} does "
                                 f"not fit {dim} with batch {batch}")
            batch = size // k
    return batch


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


# ----------------------------------------------------------------------------- fp32 helpers

def _ndl_module():
    import needle

    cpu = needle.cpu()
    return cpu.mod if cpu.enabled() else None


class F32Matmul:
    """``a @ w`` with a fixed fp32 weight uploaded once to the C++ NDArray backend."""

    def __init__(self, w2d):
        w2d = np.ascontiguousarray(w2d, np.float32)
        self.k, self.n = w2d.shape
        self.nbytes = w2d.nbytes
        self.mod = _ndl_module()
        if self.mod is None:
            self.w = w2d  # numpy fallback when the C++ backend is not built
            return
        self.w = self.mod.Array(w2d.size)
        self.mod.from_numpy(w2d, self.w)

    def __call__(self, a2d):
        a2d = np.ascontiguousarray(a2d, np.float32)
        m = a2d.shape[0]
        if self.mod is None or m == 0:
            return a2d @ (self.w if self.mod is None else np.zeros((self.k, self.n), np.float32))
        a = self.mod.Array(a2d.size)
        self.mod.from_numpy(a2d, a)
        out = self.mod.Array(m * self.n)
        self.mod.matmul(a, self.w, out, m, self.k, self.n)
        return self.mod.to_numpy(out, (m, self.n), (self.n, 1), 0)


def _linear_f32(mm, bias, relu=False):
    def run(x):
        y = mm(x.reshape(-1, mm.k))
        if bias is not None:
            np.add(y, bias, out=y)
        if relu:
            np.maximum(y, np.float32(0), out=y)
        return y.reshape(x.shape[:-1] + (mm.n,))

    return run


def im2col_nhwc(x, k, stride, padding):
    """Patches of NHWC ``x`` as rows ``[N*OH*OW, k*k*C]`` in (kh, kw, c) order."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    win = win[:, ::stride, ::stride]  # n, oh, ow, c, kh, kw (a view)
    n, oh, ow = win.shape[:3]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, -1), (n, oh, ow)


def _conv_f32_nhwc(w, bias, stride, padding, relu=False):
    k, cout = w.shape[0], w.shape[3]
    mm = F32Matmul(w.reshape(-1, cout))

    def run(x):
        cols, (n, oh, ow) = im2col_nhwc(x, k, stride, padding)
        y = _linear_f32(mm, bias, relu)(cols)
        return y.reshape(n, oh, ow, cout)

    return run, mm


# ----------------------------------------------------------------------------- builders

def _qp(node):
    qp = node.meta.get("qparams")
    if not qp:
        raise IRError(f"%{node.name}: no qparams {{s=..., z=...}} in its type")
    return np.float32(qp["s"]), int(qp["z"])


def _kernels():
    try:
        from . import _quant_cpu
    except ImportError:
        return None
    return _quant_cpu


def _weight_record(node, dtype, count, measured, qparam_bytes):
    bits = {"int4": 4, "uint4": 4, "int8": 8, "uint8": 8, "float16": 16, "bfloat16": 16}
    theoretical = count * bits.get(dtype, 32) / 8
    return WeightRecord(node.name, dtype, int(count), theoretical, int(measured),
                        int(qparam_bytes))


def _as_vector(scale, n):
    s = np.asarray(scale, np.float32).reshape(-1)
    return np.ascontiguousarray(np.broadcast_to(s, (n,)) if s.size == 1 else s)


def _layer_check(node, bound, bias):
    """Refuse a layer whose int32 accumulator (bias included) could overflow."""
    worst = int(bound) + (int(np.abs(bias.astype(np.int64)).max()) if bias is not None
                          and bias.size else 0)
    if worst > INT32_MAX:
        raise ValueError(f"%{node.name} ({node.op}): the int32 accumulator could overflow: "
                         f"|sum| <= {bound} plus |bias| gives {worst} > 2^31-1; quantize this "
                         "layer with fewer input channels per output, a narrower range, or "
                         "keep it float")


def _fast_path(q, x_dtype, pw, a_max):
    """(allow_fast, why): the u8s8 fast path only where no int16 pair sum can saturate."""
    if x_dtype != "uint8":
        return False, "exact path (int8 activations)"
    claim = a_max * pw.max_pair_abs
    if claim <= PAIR_LIMIT:
        return True, f"fast path proven: {a_max} x max_pair_abs {pw.max_pair_abs} = " \
                     f"{claim} <= {PAIR_LIMIT}"
    return False, f"exact path: {a_max} x max_pair_abs {pw.max_pair_abs} = {claim} > " \
                  f"{PAIR_LIMIT} could saturate"


def _output_stage_numpy(acc, mult, z_y, qmin, qmax, out_dtype):
    return requantize(acc, mult, z_y, qmin, qmax).astype(CONTAINER[out_dtype])


def build_qlinear(ctx, node):
    """qlinear -> gemm_{u8,s8}s8_requant / _s32 with the zero point folded into the bias."""
    q = _kernels()
    x_node, w_node, s_node = node.inputs[:3]
    w, s_w = ctx.const(w_node), ctx.const(s_node)
    bias = ctx.const(node.inputs[3]) if len(node.inputs) == 4 else None
    if q is None or w is None or s_w is None or (len(node.inputs) == 4 and bias is None):
        return None
    x_dtype = x_node.meta["dtype"]
    s_x, z_x = _qp(x_node)
    k, n = w.shape
    pw = q.pack_weight_s8(np.ascontiguousarray(w))
    lo, hi = qrange(x_dtype)
    _layer_check(node, q.accumulator_bound(k, (lo - z_x, hi - z_x), pw), bias)
    bias32 = np.zeros(n, np.int64) if bias is None else bias.astype(np.int64)
    folded = bias32 - z_x * np.asarray(pw.colsum, np.int64)
    raw_bound = q.accumulator_bound(k, (lo, hi), pw) + int(np.abs(folded).max(initial=0))
    fold = raw_bound <= INT32_MAX and folded.size and np.abs(folded).max() <= INT32_MAX
    a_zp = 0 if fold else z_x
    bias_used = (folded if fold else bias32).astype(np.int32)
    allow_fast, why = _fast_path(q, x_dtype, pw, hi if x_dtype == "uint8" else 127)
    signed = x_dtype == "int8"
    out_dtype, relu = node.attrs["dtype"], node.attrs["relu"]
    scale_w = _as_vector(s_w, n)
    kw = {"allow_fast": True, "a_max": hi} if allow_fast else {}
    if out_dtype == "float32":
        scale = np.multiply(np.float32(s_x), scale_w, dtype=np.float32)
        gemm = q.gemm_s8s8_s32 if signed else q.gemm_u8s8_s32

        def fn(x):
            acc = gemm(x.reshape(-1, k), a_zp, pw, **kw)
            acc = acc + bias_used  # int32: the true sum fits, proven above
            y = np.multiply(acc.astype(np.float32), scale, dtype=np.float32)
            y = np.maximum(y, np.float32(0)) if relu else y
            return y.reshape(x.shape[:-1] + (n,))
        name = f"{'s8s8' if signed else 'u8s8'} gemm s32 + fp32 scale"
    else:
        s_y, z_y = _qp(node)
        qmin, qmax = qrange(out_dtype)
        qmin = z_y if relu else qmin
        mult = _as_vector(requant_multiplier(s_x, scale_w, s_y), n)
        gemm = q.gemm_s8s8_requant if signed else q.gemm_u8s8_requant

        def fn(x):
            y = gemm(x.reshape(-1, k), a_zp, pw, bias_used, mult, z_y, qmin, qmax, out_dtype,
                     **kw)
            return y.reshape(x.shape[:-1] + (n,))
        name = f"gemm_{'s8s8' if signed else 'u8s8'}_requant"
    why += "; zero point folded into int32 bias" if fold else "; zero point applied in kernel"
    qbytes = scale_w.nbytes + bias_used.nbytes + (mult.nbytes if out_dtype != "float32" else 0)
    weights = [_weight_record(node, "int8", w.size, pw.nbytes, qbytes)]
    impl = Impl(name, why, fn, [ctx.value(x_node, "logical")], weights=weights, kind="int8")
    return impl, _qlinear_float(ctx, node, w, scale_w, bias, s_x, z_x, impl.inputs)


def _dequant_bias(bias, s_x, scale_w):
    if bias is None:
        return None
    return np.multiply(bias.astype(np.float32),
                       np.multiply(np.float32(s_x), scale_w, dtype=np.float32), dtype=np.float32)


def _requant_out(node):
    """fp32 -> the node's output type (the quantize kernel, its qparams), or identity."""
    out_dtype = node.attrs["dtype"]
    if out_dtype == "float32":
        return lambda y: y
    s_y, z_y = _qp(node)
    q = _kernels()
    s_arr, z_arr = np.array([s_y], np.float32), np.array([z_y], np.int32)
    return lambda y: q.quantize_f32(np.ascontiguousarray(y), s_arr, z_arr, 0, out_dtype)


def _dequant_in(s_x, z_x):
    """q -> fp32 with per-tensor qparams (the dequantize kernel)."""
    q = _kernels()
    s_arr, z_arr = np.array([s_x], np.float32), np.array([z_x], np.int32)
    return lambda x: q.dequantize(x, s_arr, z_arr, 0)


def _qlinear_float(ctx, node, w, scale_w, bias, s_x, z_x, inputs):
    """The float version of a qlinear: dequantize, fp32 GEMM, quantize the output."""
    w_f = (w.astype(np.float32) * scale_w).astype(np.float32)
    mm = F32Matmul(w_f)
    lin = _linear_f32(mm, _dequant_bias(bias, s_x, scale_w), node.attrs["relu"])
    out, dq = _requant_out(node), _dequant_in(s_x, z_x)

    def fn(x):
        return out(lin(dq(x)))

    weights = [_weight_record(node, "float32", w.size, mm.nbytes, 0)]
    return Impl("fp32 gemm (ndl.cpu) + dequantize/quantize", "float version", fn, inputs,
                weights=weights, kind="float")


def build_qconv2d(ctx, node):
    """qconv2d -> conv2d_u8s8_requant on NHWC (consecutive convs stay NHWC)."""
    q = _kernels()
    x_node, w_node, s_node = node.inputs[:3]
    w, s_w = ctx.const(w_node), ctx.const(s_node)
    bias = ctx.const(node.inputs[3]) if len(node.inputs) == 4 else None
    if q is None or w is None or s_w is None or (len(node.inputs) == 4 and bias is None):
        return None
    if x_node.meta["dtype"] != "uint8":
        return None  # no s8 conv kernel: the reference evaluation handles it
    s_x, z_x = _qp(x_node)
    kk, _, cin, cout = w.shape
    pcw = q.pack_conv_weight_s8(np.ascontiguousarray(w))
    _layer_check(node, q.accumulator_bound(kk * kk * cin, (-z_x, 255 - z_x),
                                           pcw.gemm_weight), bias)
    stride, pad = node.attrs["stride"], node.attrs["padding"]
    out_dtype, relu = node.attrs["dtype"], node.attrs["relu"]
    scale_w = _as_vector(s_w, cout)
    bias32 = np.zeros(cout, np.int32) if bias is None else bias.astype(np.int32)
    if out_dtype == "float32":
        scale = np.multiply(np.float32(s_x), scale_w, dtype=np.float32)

        def fn(x):
            acc = q.conv2d_u8s8_s32(x, z_x, pcw, stride, pad) + bias32
            y = np.multiply(acc.astype(np.float32), scale, dtype=np.float32)
            return np.maximum(y, np.float32(0)) if relu else y
        name = "conv2d_u8s8_s32 + fp32 scale"
    else:
        s_y, z_y = _qp(node)
        qmin, qmax = qrange(out_dtype)
        qmin = z_y if relu else qmin
        mult = _as_vector(requant_multiplier(s_x, scale_w, s_y), cout)

        def fn(x):
            return q.conv2d_u8s8_requant(x, z_x, pcw, stride, pad, bias32, mult, z_y, qmin,
                                         qmax, out_dtype)
        name = "conv2d_u8s8_requant (NHWC)"
    why = "exact path (conv kernel); zero point applied in kernel (padding holds z_x)"
    weights = [_weight_record(node, "int8", w.size, pcw.nbytes,
                              scale_w.nbytes + bias32.nbytes)]
    impl = Impl(name, why, fn, [ctx.value(x_node, "nhwc")], "nhwc", weights, "int8")
    return impl, _qconv_float(node, w, scale_w, bias, s_x, z_x, impl.inputs)


def _qconv_float(node, w, scale_w, bias, s_x, z_x, inputs):
    w_f = (w.astype(np.float32) * scale_w).astype(np.float32)
    conv, mm = _conv_f32_nhwc(w_f, _dequant_bias(bias, s_x, scale_w), node.attrs["stride"],
                              node.attrs["padding"], node.attrs["relu"])
    out, dq = _requant_out(node), _dequant_in(s_x, z_x)

    def fn(x):
        return out(conv(dq(x)))

    weights = [_weight_record(node, "float32", w.size, mm.nbytes, 0)]
    return Impl("fp32 im2col gemm (ndl.cpu) + dequantize/quantize", "float version", fn,
                inputs, "nhwc", weights, "float")


def build_quantize(ctx, node):
    q = _kernels()
    x_node = node.inputs[0]
    if q is None or x_node.meta.get("dtype") != "float32":
        return None
    s, z = _qp(node)
    s_arr, z_arr = np.array([s], np.float32), np.array([z], np.int32)
    out_dtype = node.attrs["dtype"]
    layout = ctx.layout.get(x_node.name, "logical") if ctx.const(x_node) is None else "logical"

    def fn(x):
        return q.quantize_f32(x, s_arr, z_arr, 0, out_dtype)
    return Impl("quantize_f32", "kernel (ONNX QuantizeLinear)", fn,
                [ctx.value(x_node, layout)], layout, kind="int8")


def build_dequantize(ctx, node):
    q = _kernels()
    x_node = node.inputs[0]
    if q is None or len(node.inputs) != 1 or x_node.meta.get("dtype") not in ("uint8", "int8"):
        return None
    s, z = _qp(x_node)
    s_arr, z_arr = np.array([s], np.float32), np.array([z], np.int32)
    layout = ctx.layout.get(x_node.name, "logical")

    def fn(x):
        return q.dequantize(x, s_arr, z_arr, 0)
    return Impl("dequantize", "kernel (ONNX DequantizeLinear)", fn, [ctx.value(x_node, layout)],
                layout, kind="int8")


def build_requantize(ctx, node):
    x_node = node.inputs[0]
    s_in, z_in = _qp(x_node)
    s_y, z_y = _qp(node)
    out_dtype = node.attrs["dtype"]
    qmin, qmax = qrange(out_dtype)
    qmin = z_y if node.attrs["relu"] else qmin
    mult = requant_multiplier(s_in, np.float32(1), s_y)
    layout = ctx.layout.get(x_node.name, "logical")

    def fn(x):
        acc = x.astype(np.int32) - np.int32(z_in)
        return _output_stage_numpy(acc, mult, z_y, qmin, qmax, out_dtype)
    return Impl("requantize (numpy)", "elementwise, reference formula", fn,
                [ctx.value(x_node, layout)], layout, kind="int8")


def build_qadd(ctx, node):
    a, b = node.inputs
    (s_a, z_a), (s_b, z_b), (s_y, z_y) = _qp(a), _qp(b), _qp(node)
    out_dtype = node.attrs["dtype"]
    za = np.asarray(z_a, CONTAINER[a.meta["dtype"]])
    zb = np.asarray(z_b, CONTAINER[b.meta["dtype"]])
    zy = np.asarray(z_y, CONTAINER[out_dtype])
    relu = node.attrs["relu"]
    layout = _shared_layout(ctx, node)

    def fn(x, y):
        total = dequantize_linear(x, s_a, za) + dequantize_linear(y, s_b, zb)
        out = quantize_linear(total.astype(np.float32), s_y, zy)
        return np.maximum(out, zy) if relu else out
    return Impl("qadd (numpy)", "elementwise, reference formula", fn,
                [ctx.value(a, layout), ctx.value(b, layout)], layout, kind="int8")


def build_qmatmul(ctx, node):
    a, b = node.inputs
    (s_a, z_a), (s_b, z_b) = _qp(a), _qp(b)
    out_dtype = node.attrs["dtype"]
    out = None if out_dtype == "float32" else _qp(node)

    def fn(x, y):
        acc = exact_int_matmul(x.astype(np.int64) - z_a, y.astype(np.int64) - z_b)
        if np.abs(acc).max(initial=0) > INT32_MAX:
            raise OverflowError(f"%{node.name} (qmatmul): int32 accumulator overflow")
        acc = acc.astype(np.int32)
        if out is None:
            return np.multiply(acc.astype(np.float32), np.multiply(s_a, s_b, dtype=np.float32),
                               dtype=np.float32)
        qmin, qmax = qrange(out_dtype)
        return _output_stage_numpy(acc, requant_multiplier(s_a, s_b, out[0]), out[1], qmin,
                                   qmax, out_dtype)
    return Impl("qmatmul (numpy int64)", "activation x activation: no packed weight", fn,
                [ctx.value(a, "logical"), ctx.value(b, "logical")], kind="int8")


def build_linear_dynamic(ctx, node):
    """linear_dynamic -> dynamic_quantize_{u8,rows} + gemm_u8s8_f32, bias added after."""
    q = _kernels()
    x_node, w_node, s_node = node.inputs[:3]
    w, s_w = ctx.const(w_node), ctx.const(s_node)
    bias = ctx.const(node.inputs[3]) if len(node.inputs) == 4 else None
    if q is None or w is None or s_w is None or (len(node.inputs) == 4 and bias is None):
        return None
    k, n = w.shape
    pw = q.pack_weight_s8(np.ascontiguousarray(w))
    _layer_check(node, q.accumulator_bound(k, (-255, 255), pw), None)
    scale_w = _as_vector(s_w, n)
    bias_f = None if bias is None else bias.astype(np.float32)
    per_token = node.attrs["granularity"] == "per_token"

    def fn(x):
        x2 = np.ascontiguousarray(x.reshape(-1, k), np.float32)
        if per_token:
            xq, s_x, z_x = q.dynamic_quantize_rows(x2, "uint8")
            y = q.gemm_u8s8_f32(xq, z_x, pw, scale_w, None, False, s_x)
        else:
            xq, s_x, z_x = q.dynamic_quantize_u8(x2)
            scale = np.multiply(np.float32(s_x), scale_w, dtype=np.float32)
            y = q.gemm_u8s8_f32(xq, int(z_x), pw, scale)
        if bias_f is not None:
            y = np.add(y, bias_f, dtype=np.float32)  # a separate add: no FMA, as specified
        return y.reshape(x.shape[:-1] + (n,))

    weights = [_weight_record(node, "int8", w.size, pw.nbytes, scale_w.nbytes +
                              (0 if bias_f is None else bias_f.nbytes))]
    inputs = [ctx.value(x_node, "logical")]
    impl = Impl("dynamic_quantize + gemm_u8s8_f32", "exact path; activation scale per call",
                fn, inputs, weights=weights, kind="int8")
    w_f = (w.astype(np.float32) * scale_w).astype(np.float32)
    mm = F32Matmul(w_f)
    alt = Impl("fp32 gemm (ndl.cpu)", "float version", _linear_f32(mm, bias_f), inputs,
               weights=[_weight_record(node, "float32", w.size, mm.nbytes, 0)])
    return impl, alt


def _weight_only_arrays(ctx, node):
    arrays = [ctx.const(i) for i in node.inputs[1:]]
    if any(a is None for a in arrays):
        return None, None
    if node.attrs["has_bias"]:
        return arrays[:-1], arrays[-1].astype(np.float32)
    return arrays, None


def dequantized_weight(parts, attrs, k, red_axis):
    """fp32 weight of a weight-only op (same formula as the interpreter)."""
    from .quantize.qeval import dequantize_weight

    return np.asarray(dequantize_weight(parts, attrs, k, red_axis), np.float32)


def build_linear_weight_only(ctx, node):
    """f16/bf16/int4 -> gemm_f32_w* (weights decoded in registers); others -> fp32 GEMM."""
    q = _kernels()
    parts, bias = _weight_only_arrays(ctx, node)
    if parts is None:
        return None
    attrs, wdt = node.attrs, node.attrs["weight_dtype"]
    k = node.inputs[0].meta["shape"][-1]
    w_f = dequantized_weight(parts, attrs, k, 0)
    n = w_f.shape[1]
    inputs = [ctx.value(node.inputs[0], "logical")]
    mm = F32Matmul(w_f)
    alt = Impl("fp32 gemm (ndl.cpu), weight dequantized at load", "float version",
               _linear_f32(mm, bias), inputs,
               weights=[_weight_record(node, "float32", w_f.size, mm.nbytes, 0)])
    packed = _pack_weight_only(q, parts, attrs, k) if q is not None else None
    if packed is None:
        alt.why = f"no kernel for {wdt} ({attrs['granularity']}" \
                  f"{', zero point' if attrs['has_zero_point'] else ''}): fp32 weight kept"
        return alt
    pw, gemm, qbytes = packed

    def fn(x):
        y = gemm(np.ascontiguousarray(x.reshape(-1, k), np.float32), pw, bias)
        return y.reshape(x.shape[:-1] + (n,))

    weights = [_weight_record(node, wdt, k * n, pw.nbytes,
                              qbytes + (0 if bias is None else bias.nbytes))]
    impl = Impl(gemm.__name__, "weight-only kernel: weights converted in registers", fn, inputs,
                weights=weights, kind="int8")
    return impl, alt


def _pack_weight_only(q, parts, attrs, k):
    wdt = attrs["weight_dtype"]
    if wdt == "float16":
        return q.pack_weight_f16(parts[0].astype(np.float32)), q.gemm_f32_wf16, 0
    if wdt == "bfloat16":
        w = parts[0]
        w32 = bf16_to_float32(w) if w.dtype == np.uint16 else w.astype(np.float32)
        return q.pack_weight_bf16(w32), q.gemm_f32_wbf16, 0
    if wdt == "int4" and not attrs["has_zero_point"]:
        wq = unpack_int4(parts[0], k, axis=0, signed=True).astype(np.int8)
        scales = np.ascontiguousarray(parts[1], np.float32)
        pw = q.pack_weight_int4(np.ascontiguousarray(wq), scales, attrs["group_size"])
        return pw, q.gemm_f32_wint4, scales.nbytes
    return None


def build_conv2d_weight_only(ctx, node):
    parts, bias = _weight_only_arrays(ctx, node)
    if parts is None:
        return None
    w_f = dequantized_weight(parts, node.attrs, node.inputs[0].meta["shape"][1], 2)
    conv, mm = _conv_f32_nhwc(w_f, bias, node.attrs["stride"], node.attrs["padding"])
    return Impl("fp32 im2col gemm (ndl.cpu), weight dequantized at load",
                f"no {node.attrs['weight_dtype']} conv kernel: fp32 weight kept", conv,
                [ctx.value(node.inputs[0], "nhwc")], "nhwc",
                [_weight_record(node, "float32", w_f.size, mm.nbytes, 0)])


def build_linear(ctx, node):
    w = ctx.const(node.inputs[1])
    bias = ctx.const(node.inputs[2]) if len(node.inputs) == 3 else None
    if w is None or (len(node.inputs) == 3 and bias is None) or node.meta["dtype"] != "float32" \
            or node.attrs.get("activation") not in (None, "relu"):
        return None
    mm = F32Matmul(w)
    relu = node.attrs.get("activation") == "relu"
    return Impl("fp32 gemm (ndl.cpu)", "float layer", _linear_f32(
        mm, None if bias is None else bias.astype(np.float32), relu),
        [ctx.value(node.inputs[0], "logical")],
        weights=[_weight_record(node, "float32", w.size, mm.nbytes, 0)])


def build_conv2d(ctx, node):
    w = ctx.const(node.inputs[1])
    bias = ctx.const(node.inputs[2]) if len(node.inputs) == 3 else None
    if w is None or (len(node.inputs) == 3 and bias is None) or node.meta["dtype"] != "float32" \
            or node.attrs.get("activation") not in (None, "relu"):
        return None
    conv, mm = _conv_f32_nhwc(w.astype(np.float32), None if bias is None else
                              bias.astype(np.float32), node.attrs["stride"],
                              node.attrs["padding"], node.attrs.get("activation") == "relu")
    return Impl("fp32 im2col gemm (ndl.cpu, NHWC)", "float layer", conv,
                [ctx.value(node.inputs[0], "nhwc")], "nhwc",
                [_weight_record(node, "float32", w.size, mm.nbytes, 0)])


def _shared_layout(ctx, node):
    layouts = {ctx.layout.get(i.name, "logical") for i in node.inputs if ctx.const(i) is None}
    return layouts.pop() if len(layouts) == 1 else "logical"


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


def build_reshape(ctx, node):
    shape = node.attrs["shape"]
    symbolic = [d for d in shape if opset.is_symbolic(d)]
    if len(symbolic) > 1 or (symbolic and -1 in shape):
        return None
    target = tuple(-1 if opset.is_symbolic(d) else d for d in shape)
    return Impl("reshape (view)", "no data movement in logical layout",
                lambda x: x.reshape(target), [ctx.value(node.inputs[0], "logical")])


def build_observer(ctx, node):
    """Observers update ``graph.observers`` through the op table (they must see the data)."""
    return None


BUILDERS = {
    "qlinear": build_qlinear,
    "qconv2d": build_qconv2d,
    "quantize": build_quantize,
    "dequantize": build_dequantize,
    "requantize": build_requantize,
    "qadd": build_qadd,
    "qmatmul": build_qmatmul,
    "linear_dynamic": build_linear_dynamic,
    "linear_weight_only": build_linear_weight_only,
    "conv2d_weight_only": build_conv2d_weight_only,
    "linear": build_linear,
    "conv2d": build_conv2d,
    "reshape": build_reshape,
    "observer": build_observer,
    "relu": _elementwise(_relu, "relu"),
    "add": _elementwise(np.add, "add"),
    "add_relu": _elementwise(lambda a, b: _relu(np.add(a, b)), "add_relu"),
    "mul": _elementwise(np.multiply, "mul"),
    "maximum": _elementwise(np.maximum, "maximum"),
    "tanh": _elementwise(np.tanh, "tanh"),
    "sigmoid": _elementwise(_sigmoid, "sigmoid"),
    "add_scalar": _elementwise(lambda x, c: (x + np.float32(c)).astype(x.dtype), "add_scalar"),
    "mul_scalar": _elementwise(lambda x, c: (x * np.float32(c)).astype(x.dtype), "mul_scalar"),
}
"""op name -> builder(ctx, node) returning an Impl, (Impl, float alternative) or None (=
fall back to the op table's evaluation)."""
