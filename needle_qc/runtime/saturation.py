"""Saturation counting (debug mode): how many values each ``quantize`` clipped at run time.

Inputs far outside the calibrated range are clamped to the type's ends silently; this counts
them per quantized input. It runs only after ``cm.count_saturation()`` (a separate, slower
loop), so the normal call path does no extra work.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class SaturationCount:
    """Values seen and values clipped (outside ``[qmin, qmax]`` after ``rint(x / s) + z``)."""

    s: float
    z: int
    qmin: int
    qmax: int
    clipped: int = 0
    total: int = 0

    def add(self, x):
        x = np.asarray(x, dtype=np.float32)
        q = np.rint(np.divide(x, np.float32(self.s), dtype=np.float32)) + self.z
        self.clipped += int(np.count_nonzero((q < self.qmin) | (q > self.qmax)))
        self.total += int(x.size)

    def as_dict(self):
        return {"clipped": self.clipped, "total": self.total,
                "fraction": self.clipped / self.total if self.total else 0.0}


def counters(cm):
    """A fresh counter per run-time ``quantize`` step (weights quantized offline excluded)."""
    from needle_qc.quantize.qparams import value_qrange

    out = {}
    for step in cm.program.steps:
        if step.op != "quantize":
            continue
        node = cm.graph.node(step.node)
        if node.inputs[0].op in ("param", "constant"):
            continue
        qp = node.meta["qparams"]
        qmin, qmax = value_qrange(node.meta["dtype"], qp)  # reduce_range: 7 bits
        out[step.node] = SaturationCount(float(qp["s"]), int(qp["z"]), qmin, qmax)
    return out


def run_counting(cm, env):
    """The runtime loop of :meth:`CompiledModel.run_arrays`, counting before each quantize."""
    program = cm.program
    for step, frees in zip(program.steps, cm._frees):
        impl = step.active
        args = [env[name] for name in impl.inputs]
        counter = cm.saturation.get(step.node)
        if counter is not None:
            counter.add(args[0])
        env[step.output] = impl.fn(*args)
        for name in frees:
            del env[name]
    return [env[name] for name in program.outputs]
