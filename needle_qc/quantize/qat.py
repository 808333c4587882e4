"""Quantization-aware training: ``prepare_qat(graph, cfg)`` -> a trainable Needle module.

The module runs the float graph (batch norm folded, as ``quantize_pass`` does) with Needle's
own ops, every float param a ``Parameter``. The weight of each layer the config quantizes to
integers passes through a fake-quant op: forward ``dequantize(round(w))`` with exactly the
rounding ``convert`` will apply (round-to-nearest on the config's grid: dtype, granularity,
group size, ``weight_bits``), backward the straight-through estimator (Bengio et al. 2013,
arXiv 1308.3432): the gradient passes unchanged, since min/max scales clip nothing. Train it
with the course optimizers; :meth:`QATModule.convert` writes the trained params into the graph
and returns ``quantize_pass(graph, cfg)`` for ``compile()`` (calibrate it first for static
activations). Activations are not fake-quantized during training (the kernels we have for
4-bit and narrower grids are weight-only).
"""

import numpy as np

from needle_qc.opset import traits
from needle_qc.quantize.annotate import is_weight_layer
from needle_qc.quantize.qconfig import QConfig


def _needle():
    import needle

    return needle


def fake_quant_weight(w, cfg, red_axis):
    """``dequantize(round(w))`` as ``convert`` rounds this layer's weight (RTN, float32)."""
    from needle_qc.quantize.rounding import round_weight

    gran = cfg.resolved_weight_granularity
    axis = red_axis if gran == "per_group" else None
    return round_weight(np.asarray(w, np.float32), cfg.replace(rounding="nearest"), gran,
                        axis).dequantize()


def _fake_quant_op(ndl):
    class FakeQuantSTE(ndl.autograd.TensorOp):
        """Forward: the rounded weight; backward: straight through."""

        def __init__(self, cfg, red_axis, device):
            self.cfg, self.red_axis, self.device = cfg, red_axis, device

        def compute(self, a):
            arr = a.numpy() if hasattr(a, "numpy") else np.asarray(a)
            out = fake_quant_weight(arr, self.cfg, self.red_axis)
            return ndl.Tensor._array_from_numpy(out, device=self.device, dtype="float32")

        def gradient(self, out_grad, node):
            return out_grad

    return FakeQuantSTE


def _interpreter_class():
    from needle_qc.ir.interpreter import Interpreter
    from needle_qc.quantize.annotate import node_config

    class QATInterpreter(Interpreter):
        """Params from the module's Parameters; integer-quantized weights fake-quantized."""

        def __init__(self, module):
            super().__init__(module.graph, module.device)
            self.module = module

        def param(self, key):
            p = self.module.params.get(key)
            return p if p is not None else super().param(key)

        def call_op(self, node, inputs):
            cfg = node_config(node) if is_weight_layer(node) else None
            if cfg is not None and cfg.weight not in (None, "fp16", "bf16"):
                op = self.module.fake_quant(cfg, traits(node.op).reduction_axis, inputs[1].device)
                inputs = [inputs[0], op(inputs[1]), *inputs[2:]]
            return super().call_op(node, inputs)

    return QATInterpreter


def _module_class():
    ndl = _needle()

    class QATModule(ndl.nn.Module):
        """The float graph as a trainable Needle module with fake-quantized weights."""

        def __init__(self, graph, cfg, device=None):
            super().__init__()
            self.graph, self.cfg, self.device = graph, cfg, device or ndl.cpu()
            self.params = {}
            for node in graph.find("param"):
                array = graph.tensors[node.attrs["tensor"]]
                if array.dtype == np.float32:
                    self.params[node.attrs["tensor"]] = ndl.nn.Parameter(
                        ndl.Tensor(array, device=self.device, dtype="float32"))
            self._op_class = _fake_quant_op(ndl)
            self._interpreter = _interpreter_class()

        def fake_quant(self, cfg, red_axis, device):
            return self._op_class(cfg, red_axis, device)

        def forward(self, *inputs):
            return self._interpreter(self).run(*inputs)

        def trained_graph(self):
            """A copy of the float graph holding the trained params."""
            g = self.graph.copy()
            g.tensors = dict(g.tensors)
            for key, p in self.params.items():
                g.tensors[key] = np.ascontiguousarray(p.numpy(), np.float32)
            return g

        def convert(self):
            """``quantize_pass(trained graph, cfg)``: what ``compile()`` takes (calibrate it
            first when the config has static activations)."""
            from needle_qc.quantize.api import quantize_pass

            return quantize_pass(self.trained_graph(), self.cfg, float_pipeline=False)

    return QATModule


def prepare_qat(graph, cfg, device=None):
    """A trainable Needle module for ``graph`` under ``cfg`` (see the module docstring).

    Raises ValueError if ``cfg`` is not a QConfig or the graph fails the float pipeline.
    """
    from needle_qc import passes
    from needle_qc.quantize.annotate import annotate_qconfig

    if not isinstance(cfg, QConfig):
        raise ValueError(f"prepare_qat: config must be a QConfig, got {type(cfg).__name__}")
    g = graph.copy()
    passes.run_passes(g, passes.FLOAT_PIPELINE)
    annotate_qconfig(g, cfg)
    return _module_class()(g, cfg, device)
