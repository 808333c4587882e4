"""The proposal's quantization API for Needle modules, built on the needle_qc compiler.

Example
-------
>>> from needle import quantization
>>> qm = model.quantize(data_type="int8")                      # weight-only, traced lazily
>>> obs = quantization.insert_observer(model, data_type="int8")  # static activations
>>> for x, _ in loader:
...     obs(x)                                                   # records statistics
>>> qm = quantization.convert(obs)                               # int8 kernels
>>> qm = quantization.quantize(model, data_type="int8", activation="dynamic")

Every object returned here behaves like a Needle module: it is called on Tensors and returns
Tensors (numpy in gives numpy out), has ``eval()``/``train()``/``parameters()``, and exposes
the graph it runs (``.graph``) and ``.memory_report()``. Models are traced on their first call
when no example input is given; the traced graph has a symbolic batch, so later calls may use
any batch size (the other dims must match the first call).
"""
import warnings

from needle_qc.runtime.memory import WeightMemory  # one accounting (runtime, report, here)

__all__ = ["quantize", "insert_observer", "insert_obserserver", "convert", "ObservedModel",
           "QuantizedModel", "Quantizer", "WeightMemory", "DATA_TYPES", "qconfig_for"]

DATA_TYPES = {
    "int8": "int8", "uint8": "uint8", "int4": "int4", "uint4": "uint4",
    "float16": "fp16", "fp16": "fp16", "half": "fp16", "bfloat16": "bf16", "bf16": "bf16",
}
"""Accepted ``data_type`` spellings -> the QConfig weight dtype."""
_ACTIVATIONS = (None, "static", "dynamic")


def qconfig_for(data_type="int8", activation=None, **qconfig_kwargs):
    """The :class:`needle_qc.QConfig` for a seed-API call (errors name the bad argument)."""
    from needle_qc import QConfig

    if data_type not in DATA_TYPES:
        raise ValueError(f"quantization: data_type={data_type!r} is not supported; valid: "
                         f"{sorted(DATA_TYPES)}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"quantization: activation={activation!r}; valid: None (weight-only), "
                         "'dynamic', 'static'")
    for key in ("weight", "activation"):
        if key in qconfig_kwargs:
            raise ValueError(f"quantization: pass data_type=/activation=, not {key}=")
    return QConfig(weight=DATA_TYPES[data_type], activation=activation, **qconfig_kwargs)


def _default_batch_dims(model):
    # A language model takes time-major (T, bs) ids: the batch is dim 1. Recognised by its
    # structure (works for any Needle's LanguageModel): ``forward(x, h=None)``, an embedding.
    return 1 if is_language_model(model) else 0


def is_language_model(model):
    """True for the course's language-model shape: ``forward(x, h=None)`` (ids plus an
    optional recurrent state) and an embedding table among its modules' fields."""
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    if len(params) != 2 or params[1].default is not None:
        return False
    return any(type(v).__name__ == "Embedding" for v in vars(model).values())


def _graph_inputs(args, count):
    """The graph inputs of one call: a ``(x, y)`` batch passed whole gives ``x``."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        batch = tuple(args[0])
        if count is not None and len(batch) < count:
            raise ValueError(f"the model takes {count} inputs, the batch holds {len(batch)}")
        return batch[:count] if count is not None else batch[:1]
    return tuple(args)


def _model_device(model):
    params = model.parameters()
    return params[0].device if params else None


def _on_device(inputs, device):
    """Tensors moved to ``device`` (the model's), so eager tracing never mixes devices."""
    from needle_qc.frontend import framework_of_value

    if device is None:
        return tuple(inputs)
    out = []
    for x in inputs:
        fw = framework_of_value(x)
        if fw is not None and not fw.is_own and x.device != device:
            x = fw.module.Tensor(x.numpy(), device=device, dtype=x.dtype, requires_grad=False)
        out.append(x)
    return tuple(out)


def _as_model_tensors(value, model):
    """Graph outputs as Tensors of the model's own Needle (an observed graph runs on
    needle_qc's arrays when the model is a user's)."""
    from needle_qc.frontend import framework_of
    from needle_qc.frontend.own import Tensor as OwnTensor

    if isinstance(value, (tuple, list)):
        return type(value)(_as_model_tensors(v, model) for v in value)
    if not isinstance(value, OwnTensor):
        return value
    fw = framework_of(model)
    device = _model_device(model)
    array = value.numpy()
    dtype = array.dtype.name if array.dtype.name in fw.caps.get("dtypes", ()) else "float32"
    return fw.tensor(array.astype(dtype, copy=False), device, dtype)


def _trace(model, inputs, batch_dims):
    from needle_qc import trace

    dims = _default_batch_dims(model) if batch_dims is None else batch_dims
    return trace(model, *inputs, batch_dims=dims)


class _ModuleLike:
    """What the wrappers share with ``needle.nn.Module``: modes and the float model."""

    def __init__(self, model):
        self.float_model = model
        self.device = _model_device(model)
        self.training = False

    def eval(self):
        """Inference mode (the only mode these wrappers compute in); returns self."""
        self.training = False
        return self

    def train(self):
        """Sets ``training``; quantized and observed models still compute in inference mode
        (batch norm folded, dropout off), so a warning says so."""
        warnings.warn(f"{type(self).__name__} runs in inference mode; train() has no effect on "
                      "what it computes", stacklevel=2)
        self.training = True
        return self

    def forward(self, *inputs):
        return self(*inputs)


class ObservedModel(_ModuleLike):
    """A model with observers: calling it runs the float graph and records activation ranges.

    Made by :func:`insert_observer`; turned into a :class:`QuantizedModel` by :func:`convert`.
    ``parameters()`` are the float model's.

    Attributes
    ----------
    qconfig : needle_qc.QConfig
    calls : int
        How many calls (calibration batches) the observers have seen.
    """

    def __init__(self, model, qconfig, example_input=None, batch_dims=None):
        super().__init__(model)
        self.qconfig = qconfig
        self.batch_dims = batch_dims
        self.calls = 0
        self._float_graph = self._observed = None
        if example_input is not None:
            inputs = example_input if isinstance(example_input, tuple) else (example_input,)
            self._prepare(inputs)

    def _prepare(self, inputs):
        from needle_qc.quantize.api import quantize_pass

        inputs = _on_device(inputs, self.device)
        self._float_graph = _trace(self.float_model, inputs, self.batch_dims)
        self._observed = quantize_pass(self._float_graph, self.qconfig)

    @property
    def traced(self):
        """True once the model has been traced (first call or ``example_input``)."""
        return self._observed is not None

    @property
    def graph(self):
        """The observed graph (observer nodes after each static activation)."""
        return self._require_graph()

    @property
    def float_graph(self):
        """The traced float32 graph."""
        self._require_graph()
        return self._float_graph

    def _require_graph(self):
        if self._observed is None:
            raise RuntimeError(f"{type(self).__name__}: not traced yet; call it on a batch "
                               "first or pass example_input=")
        return self._observed

    def __call__(self, *args):
        count = len(self._observed.placeholders) if self.traced else None
        inputs = _on_device(_graph_inputs(args, count), self.device)
        if not self.traced:
            self._prepare(inputs)
        out = _as_model_tensors(self._observed(*inputs), self.float_model)
        self.calls += 1
        return out

    def parameters(self):
        return self.float_model.parameters()

    def calibrate(self, batches, progress=False):
        """Run every batch (arrays/Tensors or ``(x, y)`` tuples); returns the
        ``CalibrationReport`` (ranges, drift and qparams per observer)."""
        from needle_qc.quantize.api import calibrate

        batches = list(batches)
        if not self.traced and batches:
            self._prepare(_graph_inputs((batches[0],), None))
        report = calibrate(self._require_graph(), batches, progress=progress)
        self.calls += report.batches
        return report

    def memory_report(self):
        """The float model's weight memory (nothing is quantized until :func:`convert`)."""
        return _graph_memory(self.float_graph)

    def __repr__(self):
        state = f"{self.calls} calibration calls" if self.traced else "not traced yet"
        return f"<ObservedModel {type(self.float_model).__name__} {self.qconfig.weight}/" \
               f"{self.qconfig.activation}: {state}>"


class QuantizedModel(_ModuleLike):
    """A quantized model: calling it runs the compiled kernels (``needle_qc.pipeline``).

    ``parameters()`` is empty (nothing here is trainable). Built by :func:`quantize`,
    :func:`convert` or ``Module.quantize``; without an example input the model is traced,
    quantized and compiled on its first call.

    Attributes
    ----------
    qconfig : needle_qc.QConfig
    compiled : needle_qc.runtime.compiled.CompiledModel or None (before the first call)
    """

    def __init__(self, model, qconfig, *, observed=None, example_input=None, batch_dims=None,
                 target="cpu", force_int8=False, calibration_data=None):
        super().__init__(model)
        self.qconfig = qconfig
        self.target = target
        self.force_int8 = force_int8
        self.batch_dims = batch_dims
        self.compiled = None
        self._float_graph = None
        self._calibration = calibration_data
        if observed is not None:
            self._build(observed.float_graph, observed.graph, None)
        elif example_input is not None:
            inputs = example_input if isinstance(example_input, tuple) else (example_input,)
            self._build_from(inputs)

    def _build_from(self, inputs):
        from needle_qc.quantize.api import quantize_pass

        float_graph = _trace(self.float_model, _on_device(inputs, self.device), self.batch_dims)
        self._build(float_graph, quantize_pass(float_graph, self.qconfig), self._calibration)

    def _build(self, float_graph, observed, calibration):
        from needle_qc.pipeline import compile as qc_compile

        self._float_graph = float_graph
        self.compiled = qc_compile(observed, self.target, force_int8=self.force_int8,
                                   calibration=calibration)
        self._calibration = None

    @property
    def graph(self):
        """The graph the compiled model runs (the integer / weight-only graph)."""
        return self._require().graph

    @property
    def float_graph(self):
        """The traced float32 graph it was quantized from."""
        self._require()
        return self._float_graph

    def _require(self):
        if self.compiled is None:
            raise RuntimeError("QuantizedModel: not built yet; call it on a batch first or pass "
                               "example_input=")
        return self.compiled

    def __call__(self, *args):
        count = len(self.compiled.graph.placeholders) if self.compiled is not None else None
        inputs = _on_device(_graph_inputs(args, count), self.device)
        if self.compiled is None:
            self._build_from(inputs)
        return self.compiled(*inputs)

    def parameters(self):
        return []

    def memory_report(self, batch_size=None):
        """:class:`WeightMemory` of the quantized graph (bytes per data type, qparams apart),
        with the compiled model's allocation and peak activations as ``.runtime``."""
        compiled = self._require()
        return _graph_memory(compiled.graph, compiled.memory_report(batch_size))

    def compare(self, batches):
        """Per-node error against the float graph (:func:`needle_qc.tools.compare.compare`)."""
        from needle_qc.tools.compare import compare

        return compare(self.float_graph, self, batches)

    def save(self, path):
        """Write the compiled model to one pickle-free file (``needle_qc.load`` reads it)."""
        self._require().save(path)

    def __repr__(self):
        state = "built" if self.compiled is not None else "built on first call"
        return f"<QuantizedModel {type(self.float_model).__name__} {self.qconfig.weight}/" \
               f"{self.qconfig.activation} target={self.target}: {state}>"


def _graph_memory(graph, runtime=None):
    return WeightMemory(graph, runtime)


class Quantizer:
    """A quantization recipe without a model (``quantization.quantize(data_type="int8")``).

    Apply it with ``quantizer(model)`` (one-shot) or ``quantizer.insert_observer(model)`` then
    :func:`convert`.
    """

    def __init__(self, data_type="int8", activation=None, **kwargs):
        self.data_type, self.activation = data_type, activation
        self.kwargs = kwargs
        self.qconfig = qconfig_for(data_type, activation, **_qconfig_part(kwargs))

    def __call__(self, model, calibration_data=None, **kwargs):
        return quantize(model, self.data_type, self.activation, calibration_data,
                        **{**self.kwargs, **kwargs})

    def insert_observer(self, model, example_input=None, **kwargs):
        """Observers for this recipe (activation "static" unless the recipe says otherwise)."""
        merged = {k: v for k, v in {**self.kwargs, **kwargs}.items()
                  if k not in ("target", "force_int8", "example_input")}
        return insert_observer(model, self.data_type, self.activation or "static",
                               example_input, **merged)

    def __repr__(self):
        return f"<Quantizer data_type={self.data_type!r} activation={self.activation!r}>"


_WRAPPER_KEYS = ("example_input", "batch_dims", "target", "force_int8")


def _qconfig_part(kwargs):
    return {k: v for k, v in kwargs.items() if k not in _WRAPPER_KEYS}


def _check_model(model, where):
    from needle_qc.frontend import FrameworkError, framework_of

    try:
        framework_of(model)
    except FrameworkError:
        raise TypeError(f"{where}: expected a needle.nn.Module, got {type(model).__name__}") \
            from None


def quantize(model=None, data_type="int8", activation=None, calibration_data=None,
             example_input=None, batch_dims=None, target="cpu", force_int8=None,
             **qconfig_kwargs):
    """Quantize ``model`` in one call.

    Parameters
    ----------
    model : needle.nn.Module, optional
        Without a model, returns a :class:`Quantizer` holding the recipe.
    data_type : {"int8", "uint8", "int4", "uint4", "float16", "bfloat16"}
        The weight data type.
    activation : {None, "dynamic", "static"}
        None = weight-only; "dynamic" = activation ranges computed at run time; "static" =
        ranges from ``calibration_data`` (required then).
    calibration_data : iterable, optional
        Batches (arrays/Tensors or ``(x, y)`` tuples), e.g. a ``needle.data.DataLoader``.
    example_input : Tensor/array or tuple, optional
        Trace now instead of on the first call.
    batch_dims : int, optional
        The batch dim of the inputs (default 0; 1 for ``LanguageModel``).
    target : {"cpu", "cuda", "reference"}
    force_int8 : bool, optional
        Passed to ``needle_qc.compile``; it matters only with timing-based choices, which
        ``compile`` makes only when asked (``autotune=True``): by default every quantized
        kernel is kept and the result is the same on every run.
    **qconfig_kwargs
        Other :class:`needle_qc.QConfig` fields (``weight_granularity``, ``group_size``,
        ``weight_symmetric``, ``activation_dtype``, ``observer``, ``module_paths``, ...).

    Returns
    -------
    QuantizedModel, or Quantizer when ``model`` is None.
    """
    if model is None:
        return Quantizer(data_type, activation, example_input=example_input,
                         batch_dims=batch_dims, target=target, force_int8=force_int8,
                         **qconfig_kwargs)
    _check_model(model, "quantization.quantize")
    cfg = qconfig_for(data_type, activation, **qconfig_kwargs)
    if force_int8 is None:
        force_int8 = activation is None
    if activation == "static":
        if calibration_data is None:
            raise ValueError("quantization.quantize: activation='static' needs "
                             "calibration_data= (batches of inputs)")
        batches = list(calibration_data)
        if not batches:
            raise ValueError("quantization.quantize: calibration_data is empty")
        observed = insert_observer(model, data_type, "static", example_input,
                                   batch_dims=batch_dims, **qconfig_kwargs)
        observed.calibrate(batches)
        return convert(observed, target=target, force_int8=force_int8)
    return QuantizedModel(model, cfg, example_input=example_input, batch_dims=batch_dims,
                          target=target, force_int8=force_int8)


def insert_observer(model, data_type="int8", activation="static", example_input=None,
                    batch_dims=None, **qconfig_kwargs):
    """A copy of ``model`` with observers; call it on calibration batches, then :func:`convert`.

    Parameters are those of :func:`quantize`. The model itself is not changed. Without
    ``example_input`` the model is traced on its first call.

    Returns
    -------
    ObservedModel
    """
    _check_model(model, "quantization.insert_observer")
    cfg = qconfig_for(data_type, activation, **qconfig_kwargs)
    return ObservedModel(model, cfg, example_input, batch_dims)


insert_obserserver = insert_observer
"""The proposal's spelling (a typo kept as an alias so its snippet runs verbatim)."""


def convert(observed, target="cpu", force_int8=False):
    """The :class:`QuantizedModel` of a calibrated :class:`ObservedModel`.

    Raises
    ------
    TypeError
        ``observed`` is not from :func:`insert_observer`.
    ValueError
        It was never called (static activations need at least one calibration batch).
    """
    if not isinstance(observed, ObservedModel):
        raise TypeError("quantization.convert: expected the ObservedModel returned by "
                        f"insert_observer, got {type(observed).__name__}")
    if not observed.traced:
        raise ValueError("quantization.convert: the observed model was never called; run it on "
                         "calibration batches first")
    if observed.graph.find("observer") and observed.calls == 0:
        raise ValueError("quantization.convert: static activation quantization needs "
                         "calibration; the observed model has seen no batches")
    return QuantizedModel(observed.float_model, observed.qconfig, observed=observed,
                          batch_dims=observed.batch_dims, target=target, force_int8=force_int8)
