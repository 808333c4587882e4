"""Quantization-aware training: ``prepare_qat(graph, cfg)`` -> a trainable Needle module.

The module runs the float graph (batch norm folded, as ``quantize_pass`` does) with Needle's
own ops, every float param a ``Parameter``. The weight of each layer the config quantizes to
integers passes through a fake-quant op: forward ``dequantize(round(w))`` with exactly the
rounding ``convert`` will apply (round-to-nearest on the config's grid: dtype, granularity,
group size, ``weight_bits``), backward the straight-through estimator (Bengio et al. 2013,
arXiv 1308.3432): the gradient passes unchanged, since min/max scales clip nothing.

Static activations (W8A8, W4A8): the graph also carries the observers ``insert-observers``
places, and each one becomes an activation fake-quant (:mod:`needle_qc.quantize.fake_quant`:
the op table's quantize->dequantize, clipped STE). Its scale and zero point start from a
calibration pass over ``calibration`` batches (the config's observer, as ``calibrate`` does);
with ``learn_scales=True`` each scale is a Parameter trained by LSQ (Esser et al. 2020, arXiv
1902.08153), else it stays frozen. Weight scales are not learned (they follow the weights'
min/max, as ``convert`` computes them).

Train it with the course optimizers; :meth:`QATModule.convert` gives what ``compile()``
takes: for static activations the QDQ graph with the trained params and the trained
activation qparams (no recalibration), otherwise ``quantize_pass(trained graph, cfg)``.
"""

import numpy as np

from needle_qc.opset import traits
from needle_qc.quantize.annotate import is_weight_layer, mode_of, node_config
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

    class QATInterpreter(Interpreter):
        """Params from the module's Parameters; integer-quantized weights fake-quantized."""

        def __init__(self, module):
            super().__init__(module.graph, module.device)
            self.module = module

        def param(self, key):
            p = self.module.params.get(key)
            return p if p is not None else super().param(key)

        def call_op(self, node, inputs):
            if node.op == "observer":  # where convert will quantize: fake-quant the activation
                return self.module.fake_quant_activation(node.name, inputs[0])
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

        def __init__(self, graph, cfg, device=None, learn_scales=False):
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
            self.learn_scales = learn_scales
            self.activation_scales = {}  # observer name -> scale: a Parameter when learned
            self._activation_ops = {}  # observer name -> FakeQuantize (zero point, dtype)
            for obs in graph.find("observer"):
                self._init_activation(obs, ndl)

        def _init_activation(self, obs, ndl):
            """The observer's calibrated (s, z) as the fake-quant's starting point."""
            from needle_qc.quantize.fake_quant import activation_fake_quant_op, lsq_grad_scale
            from needle_qc.quantize.passes.convert import observer_qparams

            if obs.attrs.get("reduce_range"):  # the fake-quant clamps to the full dtype range
                raise ValueError(f"prepare_qat: %{obs.name} has reduce_range activations, "
                                 "which activation QAT does not model; drop reduce_range")
            scale, zp = observer_qparams(self.graph, obs)
            dtype = obs.attrs["dtype"]
            s = ndl.Tensor(np.array([scale], np.float32), device=self.device, dtype="float32",
                           requires_grad=self.learn_scales)
            self.activation_scales[obs.name] = ndl.nn.Parameter(s) if self.learn_scales else s
            features = int(np.prod([d for d in obs.meta["shape"] if isinstance(d, int)]))
            self._activation_ops[obs.name] = activation_fake_quant_op(ndl)(
                zp, dtype, lsq_grad_scale(features, dtype), self.device)

        def fake_quant(self, cfg, red_axis, device):
            return self._op_class(cfg, red_axis, device)

        def fake_quant_activation(self, name, x):
            return self._activation_ops[name](x, self.activation_scales[name])

        def trained_activation_qparams(self):
            """Observer name -> ``(scale, zero point)`` as trained (fp32 scale, int)."""
            return {name: (float(np.float32(s.numpy().reshape(-1)[0])),
                           self._activation_ops[name].z)
                    for name, s in self.activation_scales.items()}

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
            """What ``compile()`` takes: with static activations the QDQ graph holding the
            trained params and activation qparams (nothing to calibrate), else
            ``quantize_pass(trained graph, cfg)``."""
            from needle_qc import passes
            from needle_qc.quantize.api import quantize_pass

            prepared = quantize_pass(self.trained_graph(), self.cfg, float_pipeline=False)
            if not self.activation_scales:
                return prepared
            for name, (scale, zp) in self.trained_activation_qparams().items():
                prepared.observers[name] = TrainedQParams(scale, zp)
            passes.run_passes(prepared, ["convert"])
            return prepared

    return QATModule


class TrainedQParams:
    """Stands in for an observer's statistics in ``convert``: the trained ``(s, z)``."""

    def __init__(self, scale, zero_point):
        self.scale, self.zero_point = float(scale), int(zero_point)

    def qparams(self, *args, **kwargs):
        """The trained ``(s, z)``, whatever the observer's arguments (dtype, symmetric...)."""
        return self.scale, self.zero_point


_NOT_WITH_STATIC = ("rounding", "bias_correction", "equalization", "smoothquant")


def _check_static(graph, cfg, calibration):
    """Static layers need calibration batches, and none of the calibrated weight/graph changes
    that ``convert`` would apply after training (the trained qparams would not fit them)."""
    static = [n for n in graph.nodes if mode_of(n) == "static"]
    if not static:
        return False
    for node in static:
        c = node_config(node)
        bad = [f for f in _NOT_WITH_STATIC if getattr(c, f) not in (None, False, "nearest")]
        if bad:
            raise ValueError(f"prepare_qat: %{node.name} has static activations with {bad}; "
                             "QAT of static activations trains round-to-nearest weights and "
                             "the calibrated scales as they are: drop these fields")
    if calibration is None:
        raise ValueError(f"prepare_qat: {len(static)} layers have static activations "
                         f"(first %{static[0].name}); pass calibration=batches to start their "
                         "fake-quant scales from the observers' ranges")
    return True


def prepare_qat(graph, cfg, device=None, *, calibration=None, learn_scales=False):
    """A trainable Needle module for ``graph`` under ``cfg`` (see the module docstring).

    Parameters
    ----------
    calibration : iterable, optional
        Batches (as :func:`~needle_qc.quantize.api.calibrate` takes them) that set the initial
        activation scales; required when ``cfg`` has static activations, else unused.
    learn_scales : bool
        Learn the activation scales with LSQ (each a Parameter of the module); False keeps the
        calibrated ones frozen.

    Raises ValueError if ``cfg`` is not a QConfig, the graph fails the float pipeline, or a
    static config lacks ``calibration`` or asks for GPTQ, bias correction, equalization or
    SmoothQuant.
    """
    from needle_qc import passes
    from needle_qc.quantize.annotate import annotate_qconfig
    from needle_qc.quantize.api import calibrate

    if not isinstance(cfg, QConfig):
        raise ValueError(f"prepare_qat: config must be a QConfig, got {type(cfg).__name__}")
    g = graph.copy()
    passes.run_passes(g, passes.FLOAT_PIPELINE)
    annotate_qconfig(g, cfg)
    if _check_static(g, cfg, calibration):
        passes.run_passes(g, ["insert-observers"])
        calibrate(g, calibration, progress=False)
    return _module_class()(g, cfg, device, learn_scales)
