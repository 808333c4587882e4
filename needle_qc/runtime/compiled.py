"""CompiledModel: runs a lowered Program (no autograd), explains it, reports its memory.

Example
-------
>>> cm = needle_qc.pipeline(prepared, target="cpu", calibration=batches)
>>> y = cm(x)                    # numpy in -> numpy out; Needle Tensor in -> Tensor out
>>> print(cm.explain())          # kernel per node, why, measured times
>>> print(cm.memory_report())    # weight bytes by dtype (theoretical vs allocated), peak
"""

from dataclasses import dataclass, field

import numpy as np

from needle_qc.lower.driver import bind_inputs, checked_inputs
from needle_qc.runtime.codegen import straight_line
from needle_qc.runtime.memory import MemoryReport, runtime_report  # noqa: F401  (API)


class CompiledModel:
    """A graph lowered to kernel calls, callable like the model.

    Parameters
    ----------
    program : lowering.Program
        From :func:`needle_qc.lower.driver.lower` (and :func:`~needle_qc.lower.driver.tune`).
    stage : str
        Which stage of the pipeline the lowered graph is ("float", "observed", "qdq", "int8").
    example_batch : int, optional
        The batch size the kernels were timed on (and the default of ``memory_report``).
    config : dict, optional
        JSON-able settings kept with the model (force_int8, the QConfig...).
    tuning : TuningRecord, optional
        What ``compile(..., autotune=True)`` measured (not saved with the model).
    """

    def __init__(self, program, stage, example_batch=None, config=None, tuning=None):
        self.program = program
        self.stage = stage
        self.example_batch = example_batch
        self.config = dict(config or {})
        self.tuning = tuning
        self.saturation = None  # {node: SaturationCount} while counting is enabled
        self._frees = program.frees()
        # the loop's work per step, resolved once (choices are fixed once compiled), then
        # unrolled into one generated function: no per-step interpreter work at run time
        self._plan = [(step.active.fn, tuple(step.active.inputs), step.output, tuple(frees))
                      for step, frees in zip(program.steps, self._frees)]
        self._run = straight_line(self._plan, [name for name, _, _ in program.inputs],
                                  program.constants, program.outputs)

    @property
    def graph(self):
        """The graph that was lowered (the stage graph)."""
        return self.program.graph

    @property
    def code(self):
        """The Python source of the generated run function (what ``cm(x)`` executes)."""
        return self._run.source

    @property
    def target(self):
        return self.program.target

    # ------------------------------------------------------------------ running

    def __call__(self, *inputs):
        """Run on Needle Tensors or numpy arrays (any batch size); returns the same kind,
        nested as the model returned its outputs."""
        if all(type(x) is np.ndarray for x in inputs):  # the common case: no Tensor to unwrap
            return _unflatten(self.program.structure, self.run_arrays(*inputs))
        from needle_qc.frontend import framework_of_value

        frameworks = [framework_of_value(x) for x in inputs]
        arrays = [x if fw is None else np.array(x.numpy(), copy=True)
                  for x, fw in zip(inputs, frameworks)]
        flat = self.run_arrays(*arrays)
        found = [(x, fw) for x, fw in zip(inputs, frameworks) if fw is not None]
        if found:
            tensor, fw = found[0]
            flat = [_to_tensor(a, tensor.device, fw) for a in flat]
        return _unflatten(self.program.structure, flat)

    def run_arrays(self, *arrays):
        """The outputs as a flat list of numpy arrays (the generated straight-line run)."""
        if self.saturation is not None:  # debug mode only: the fast path below is unchanged
            from needle_qc.runtime.saturation import run_counting

            return run_counting(self, bind_inputs(self.program, arrays))
        return self._run(*checked_inputs(self.program, arrays))

    def run_loop(self, *arrays):
        """The same as :meth:`run_arrays` through the interpreter loop over the step list (the
        debug path the generated function unrolls; tests check both agree bit for bit)."""
        program = self.program
        env = bind_inputs(program, arrays)
        for fn, inputs, output, frees in self._plan:
            env[output] = fn(*[env[name] for name in inputs])
            for name in frees:
                del env[name]
        return [env[name] for name in program.outputs]

    def node_values(self, *arrays):
        """Every computed value by node name, in the IR's logical (NCHW) layout (for tests
        and debugging: nothing is freed)."""
        program = self.program
        env = bind_inputs(program, arrays)
        values = {}
        for step in program.steps:
            impl = step.active
            env[step.output] = impl.fn(*[env[name] for name in impl.inputs])
            if step.op != "layout":
                out = env[step.output]
                nhwc = impl.out_layout == "nhwc" and getattr(out, "ndim", 0) == 4
                values[step.node] = out.transpose(0, 3, 1, 2) if nhwc else out
        return values

    def profile(self, *arrays, reps=5):
        """Time every step on ``arrays`` (best of ``reps``); ``explain()`` then shows the
        times in its ``run us`` column. Returns the explanation."""
        from needle_qc.lower.driver import measure_each

        measure_each(self.program, arrays, reps)
        return self.explain()

    def choices(self):
        """``{node: "primary" | "alternative"}`` for every step that had a float version."""
        return {s.node: s.choice for s in self.program.steps if s.alternative is not None}

    def float_layers(self):
        """``{node: why}``: layers the configuration asked to quantize that run in float
        (kept by autotune, or that cannot be quantized, e.g. a per-token dynamic conv)."""
        out = {}
        for step in self.program.steps:
            if step.choice == "alternative":
                out[step.node] = step.note or "kept float by autotune"
            elif "float_reason" in self.graph.node(step.node).meta:
                out[step.node] = self.graph.node(step.node).meta["float_reason"]
        return out

    def count_saturation(self, enable=True):
        """Debug mode: count, per quantized input, the values clipped by ``quantize``
        (outside the calibrated range). Off by default, so the normal call path has no
        extra work; :meth:`saturation_report` and ``explain()`` show the counts."""
        from needle_qc.runtime.saturation import counters

        self.saturation = counters(self) if enable else None
        return self

    def saturation_report(self):
        """``{node: {"clipped": n, "total": n, "fraction": f}}`` since counting was enabled."""
        if self.saturation is None:
            raise ValueError("saturation_report: counting is off; call "
                             "count_saturation() first, then run the model")
        return {n: c.as_dict() for n, c in self.saturation.items()}

    # ------------------------------------------------------------------ reports

    def explain(self):
        """A :class:`Explanation`: per node the kernel, why, and the measured times."""
        rows = [_explain_row(step) for step in self.program.steps]
        if self.saturation is not None:
            for row in rows:
                counter = self.saturation.get(row["node"])
                if counter is not None:
                    row["why"] += f"; saturated {counter.clipped}/{counter.total} values"
        from needle_qc.runtime.explain_text import plain_summary

        return Explanation(self.target, self.stage, self.example_batch, rows,
                           plain_summary(self, rows))

    def memory_report(self, batch_size=None):
        """A :class:`~needle_qc.runtime.memory.MemoryReport` of weights (by dtype) and the
        peak activation bytes."""
        batch = batch_size or self.example_batch or 1
        return runtime_report(self.program, batch, self.float_layers())

    def save(self, path):
        """Write this model to one file (see :mod:`needle_qc.runtime.serialize`)."""
        from needle_qc.runtime.serialize import save

        save(self, path)

    def __repr__(self):
        return f"<CompiledModel target={self.target} stage={self.stage} " \
               f"steps={len(self.program.steps)}>"


def _to_tensor(array, device, fw):
    """A Tensor of the caller's framework (``fw``); a dtype it cannot hold (a course NDArray
    is float32 only) comes back as float32, as the course carries integer ids."""
    if not isinstance(array, np.ndarray):
        return array
    dtype = array.dtype.name if array.dtype.name != "float64" else "float32"
    if not fw.bundled and dtype not in fw.caps.get("dtypes", ()):
        dtype = "float32"
    return fw.tensor(array.astype(dtype, copy=False), device, dtype)


def _unflatten(structure, values):
    if isinstance(structure, int):
        return values[structure]
    return tuple(_unflatten(s, values) for s in structure)


def _explain_row(step):
    impl = step.active
    if step.alternative is None:
        status = {"int8": "quantized", "reference": "reference", "layout": "layout copy",
                  "eval": "op-table (no kernel)"}.get(impl.kind, "float")
    elif step.choice == "alternative":
        status = "kept float (int8 slower)"
    elif "forced" in step.note:
        status = "int8 (forced, slower)"
    else:
        status = "int8"  # timed or not (autotune is off by default), int8 was asked for
    why = impl.why + (f"; {step.note}" if step.note else "")
    return {"node": step.node, "op": step.op, "kernel": impl.kernel, "status": status,
            "why": why, "int8_us": _us(step.times.get("int8")),
            "float_us": _us(step.times.get("float")), "run_us": _us(step.times.get("run"))}


def _us(seconds):
    return None if seconds is None else seconds * 1e6


@dataclass
class Explanation:
    """The ``explain()`` table: ``rows`` (dicts) and a printable form."""

    target: str
    stage: str
    example_batch: int
    rows: list = field(default_factory=list)
    summary: list = field(default_factory=list)  # plain-words lines, printed first

    def row(self, node):
        """The row of ``node`` (KeyError if it has none)."""
        for r in self.rows:
            if r["node"] == node:
                return r
        raise KeyError(f"explain: no row for node %{node}")

    def __str__(self):
        head = f"CompiledModel target={self.target} stage={self.stage} " \
               f"timed at batch {self.example_batch}"
        lines = self.summary + (["", "Details:"] if self.summary else [])
        lines += [head, f"{'node':<22} {'op':<18} {'status':<26} {'int8 us':>9} "
                       f"{'float us':>9} {'run us':>9}  kernel -- why"]
        for r in self.rows:
            lines.append(f"{r['node'][:22]:<22} {r['op'][:18]:<18} {r['status']:<26} "
                         f"{_fmt(r['int8_us']):>9} {_fmt(r['float_us']):>9} "
                         f"{_fmt(r['run_us']):>9}  "
                         f"{r['kernel']} -- {r['why']}")
        return "\n".join(lines)


def _fmt(value):
    return "-" if value is None else f"{value:.1f}"


@dataclass
class TuningRecord:
    """What autotune measured, kept apart from the model (``save`` stores no times).

    ``choices`` replays the decisions: ``compile(graph, choices=record.choices)``.
    """

    example_batch: int
    choices: dict  # node -> "primary" | "alternative"
    times: dict  # node -> {"int8": seconds, "float": seconds}

    @classmethod
    def of(cls, program, batch):
        timed = [s for s in program.steps if s.alternative is not None and s.times]
        return cls(batch, {s.node: s.choice for s in timed},
                   {s.node: dict(s.times) for s in timed})

    def to_dict(self):
        return {"example_batch": self.example_batch, "choices": dict(self.choices),
                "times": {k: dict(v) for k, v in self.times.items()}}
