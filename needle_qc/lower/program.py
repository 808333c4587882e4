"""The records a lowering produces: Program (with its liveness plan), Step, Impl, WeightRecord."""

from dataclasses import dataclass, field
from typing import Callable

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
    resident: str = ""  # dtype of the allocated buffer when not ``dtype`` (W4A8: int4 as int8)


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
    device: str = "cpu"  # where ``fn`` computes: "cpu" or "cuda" (a CUDA kernel behind it)
    fallback: str = ""  # target "cuda", device "cpu": why no CUDA kernel runs it


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
