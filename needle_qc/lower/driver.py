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

Target ``"cuda"``: the same builders call the kernel module of the target (``ctx.kernels``:
:mod:`needle_qc._quant_cuda`, found by :func:`~needle_qc.lower.common.cuda_kernels`), which
has the CPU module's API, so weights are packed once, here, onto the GPU. ``qlinear``,
``qconv2d``, ``quantize``, ``dequantize``, ``linear_dynamic``, ``conv2d_dynamic`` and the
float16 / bfloat16 / int4 weight-only layers run CUDA kernels; their integer outputs equal the
CPU's bit for bit (numerics contract §2.10), the weight-only fp32 sums are the GPU's order. What
the CUDA module has no kernel for (``requantize``, ``qadd``, ``qmatmul`` in NumPy, int8 / uint8
weight-only GEMMs, fp32 layers, layout copies, op-table evaluations, the float versions offered
to :func:`tune`) runs on the CPU as for target ``"cpu"``, and ``explain()`` says so per node
(kernel ``cuda: ...`` vs ``cpu: ...`` with ``cpu fallback: <reason>`` in its why). Known
limitation, chosen for now: every CUDA call copies its numpy input to the device and its output
back (the kernels' per-call host round trip); activations are not kept on the device between
consecutive CUDA kernels. :func:`tune` therefore times each CUDA kernel with its copies
against the CPU's float version, so "never silently slower" holds for what actually runs.

Conv activations stay NHWC between consecutive NHWC kernels; NCHW<->NHWC copies happen only
where a value crosses to an op that needs the IR's logical (NCHW) layout. The u8s8 fast path is
enabled per layer only when ``a_max * max_pair_abs <= 32767`` is proven from the layer's
weights and its input's range; a layer whose int32 accumulator could overflow is refused with
an error naming it. On request only (``compile(..., autotune=True)``; the default compile is
deterministic), :func:`tune` times each quantized node against its float version and keeps
the float one when it is faster (unless ``force_int8``).

This module is the driver (:func:`lower`, :func:`tune`, :func:`measure`, :func:`bind_inputs`).
The pieces live beside it: :mod:`~needle_qc.lower.program` (Program, Step, Impl records and
the liveness plan), :mod:`~needle_qc.lower.walk` (the graph walk, layouts, folding),
:mod:`~needle_qc.lower.builders` (op -> builder table) with the builders in
:mod:`~needle_qc.lower.int8`, :mod:`~needle_qc.lower.quant_ops`,
:mod:`~needle_qc.lower.weight_only` and :mod:`~needle_qc.lower.float_ops`.
"""

import time

import numpy as np

from needle_qc import opset
from needle_qc.lower import common as lowering_common
from needle_qc.lower.recurrent import with_layers
from needle_qc.lower.walk import _Lowering

TARGETS = ("cpu", "cuda", "reference")
TIMING_REPS = 5


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
    ctx = _Lowering(with_layers(graph), target)  # LSTM steps -> one call per layer
    program = ctx.run()
    for step in program.steps:
        wanted = (choices or {}).get(step.node)
        if wanted == "alternative" and step.alternative is not None:
            step.choice, step.note = "alternative", "kept float: recorded autotune choice"
    return program


def _require_cuda():
    """Refuse target "cuda" without the CUDA kernels or without a visible GPU."""
    module = lowering_common.cuda_kernels()
    if module is None:
        raise ValueError("lower: target='cuda' needs the CUDA int8 kernels "
                         "(needle_qc._quant_cuda), which are not built in this install; "
                         "use target='cpu' or 'reference'")
    if module.device_count() == 0:
        raise ValueError("lower: target='cuda' but no CUDA GPU is visible "
                         "(needle_qc._quant_cuda.device_count() == 0); use target='cpu'")


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
            release = getattr(step.alternative.fn, "release", None)
            if step.choice == "primary" and release is not None:
                release()  # a lazily dequantized fp32 weight is not kept beside the kernel
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
    env = dict(program.constants)
    env.update(zip([name for name, _, _ in program.inputs], checked_inputs(program, inputs)))
    return env


def checked_inputs(program, inputs):
    """``inputs`` checked against the program's (count, rank, fixed dims, one batch size) and
    converted to the storage dtypes; sets ``program.state["batch"]``."""
    specs = program.state.get("input_specs")
    if specs is None:  # parsed once: the dim specs do not change after lowering
        specs = program.state["input_specs"] = [
            (name, _storage(dtype), shape, [opset.dim_parts(d) for d in shape])
            for name, dtype, shape in program.inputs]
    if len(inputs) != len(specs):
        names = ", ".join(f"%{n}" for n, _, _, _ in specs)
        raise ValueError(f"the model takes {len(specs)} inputs ({names}), got {len(inputs)}")
    arrays = []
    batch = None
    for (name, dtype, shape, parts), value in zip(specs, inputs):
        array = np.ascontiguousarray(value, dtype=dtype)
        batch = _check_input(name, shape, parts, array.shape, batch)
        arrays.append(array)
    program.state["batch"] = batch
    return arrays


def _storage(dtype):
    return np.uint16 if dtype == "bfloat16" else np.dtype(dtype)


def _check_input(name, want, parts, got, batch):
    if len(want) != len(got):
        raise ValueError(f"input %{name}: shape {tuple(got)} has rank {len(got)}; expected "
                         f"{len(want)} dims {tuple(want)}")
    for dim, (k, p), size in zip(want, parts, got):
        if not p:
            if size != k:
                raise ValueError(f"input %{name}: shape {tuple(got)}; expected {tuple(want)} "
                                 f"(dim {size} should be {k})")
        elif size % k or (batch is not None and size // k != batch):
            raise ValueError(f"input %{name}: shape {tuple(got)}; batch dim {size} does "
                             f"not fit {dim} with batch {batch}")
        else:
            batch = size // k
    return batch
