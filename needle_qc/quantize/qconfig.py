"""QConfig: what to quantize, to which dtypes and granularities, with per-module overrides."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from needle_qc.quantize import qconfig_checks as checks

WEIGHT_DTYPES = ("int8", "uint8", "int4", "uint4", "fp16", "bf16")
ACTIVATION_MODES = (None, "static", "dynamic")
ACTIVATION_DTYPES = ("uint8", "int8")
WEIGHT_GRANULARITIES = (None, "per_tensor", "per_channel", "per_group")
ACTIVATION_GRANULARITIES = ("per_tensor", "per_token")
OBSERVERS = ("minmax", "moving_average", "percentile", "entropy", "mse")
ROUNDINGS = ("nearest", "gptq")
_FLOAT_WEIGHTS = ("fp16", "bf16")
_LOW_BIT = ("int4", "uint4")


def _normalize(cfg) -> None:
    """Other dtype spellings (``float16``) to ours, exclusion lists to tuples (JSON lists)."""
    object.__setattr__(cfg, "weight", checks.canonical_weight(cfg.weight))
    for name in ("exclude_ops", "exclude_paths"):
        value = getattr(cfg, name)
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            raise ValueError(f"QConfig: {name} must be a tuple of str, got {value!r}")
        object.__setattr__(cfg, name, tuple(value))


def _choose(value, valid, what: str):
    if value not in valid:
        raise ValueError(f"QConfig: {what}={value!r} is not valid; valid: {list(valid)}")


@dataclass(frozen=True)
class QConfig:
    """Quantization configuration (immutable, JSON round-trippable).

    Parameters
    ----------
    weight : {"int8", "uint8", "int4", "uint4", "fp16", "bf16"} or None
        Weight dtype; None keeps weights float.
    activation : {None, "static", "dynamic"}
        None = weight-only; "static" = calibrated per-tensor qparams; "dynamic" = computed at
        run time. fp16/bf16 weights are weight-only.
    activation_dtype : {"uint8", "int8"}
    weight_granularity : {None, "per_tensor", "per_channel", "per_group"}
        None -> per_channel for 8-bit weights, per_group for 4-bit weight-only weights,
        per_channel for W4A8 (int4 weights with static activations: per channel only).
    group_size : int
        Block length along the reduction axis for per_group.
    activation_granularity : {"per_tensor", "per_token"}
        per_token only with dynamic activations.
    weight_symmetric, activation_symmetric : bool
    reduce_range : bool
        7-bit static activations inside their 8-bit type (uint8 [0, 127], int8 [-64, 63]; the
        range is in each value's type and every op writing it clamps to it), as torch.ao's
        fbgemm default and ORT's ``reduce_range``: then the AVX2 u8s8 fast path is proven exact
        (127 x 2 x 128 < 32768) at the cost of ~1 bit of activation precision. With dynamic
        activations: each call's uint8 range is [0, 127] (torch's x86 dynamic linear does the
        same), so dynamic linear/conv2d layers take that fast path too; fused LSTM cells keep
        ORT DynamicQuantizeLSTM's 8-bit per-call activations (their kernel has no 7-bit path).
    observer : {"minmax", "moving_average", "percentile", "entropy", "mse"}
    percentile : float
        In (0, 100], used by the percentile observer.
    weight_bits : {None, 2, 3}
        A grid narrower than the 4-bit dtype, stored in its 4-bit containers (int4/uint4
        weight-only only; memory is that of int4): int3 [-3, 3] / uint3 [0, 7], int2 [-1, 1] /
        uint2 [0, 3] (symmetric grids narrow, as for every weight).
    rounding : {"nearest", "gptq"}
        How integer weights are rounded: to nearest (RTN), or GPTQ (Hessian-aware with error
        feedback, calibrated on the layer inputs; ``gptq_percdamp`` damping relative to the mean
        Hessian diagonal, ``gptq_act_order`` processes inputs by decreasing Hessian diagonal;
        ``gptq_sequential``, weight-only: each layer's Hessian is measured with the layers before
        it already rounded, as in the paper, at one more pass over the batches per layer;
        ``gptq_clip_search`` (default on): each output row's scales cover ``p`` times its range,
        ``p`` in 1.0, 0.95, ..., 0.6 chosen by the GPTQ objective, one GPTQ run per ``p``).
    bias_correction : bool
        Fold the expected output shift of the weight rounding, ``E[x] (W - W_q)``, into the bias
        (calibrated layer input means).
    equalization : bool
        Cross-layer equalization of conv/linear pairs with a ReLU or nothing between them (after
        batch norm folding; float outputs unchanged).
    smoothquant : None, float in [0, 1] or "auto"
        SmoothQuant migration strength alpha for linear layers fed by a LayerNorm (static
        activations only); "auto" picks alpha on the calibration data.
    exclude_ops : tuple[str, ...]
        Ops kept float wherever they are (IR op names as ``print(graph)`` shows them:
        ``"conv2d"``, ``"linear"``, ``"matmul"``, ``"add"``), like ORT's op_types_to_quantize.
    exclude_paths : tuple[str, ...]
        Regexes; a layer whose module path or node name matches one in full stays float (ORT's
        nodes_to_exclude, torch.ao's set_module_name_regex with None).
    module_types, module_paths : dict[str, QConfig | None]
        Overrides by module type name (``"Linear"``) and by dotted module path
        (``"layer1.0.conv"``; a path also covers its children). None keeps the module float.
    """

    weight: str | None = "int8"
    activation: str | None = None
    activation_dtype: str = "uint8"
    weight_granularity: str | None = None
    group_size: int = 32
    activation_granularity: str = "per_tensor"
    weight_symmetric: bool = True
    activation_symmetric: bool = False
    reduce_range: bool = False
    observer: str = "minmax"
    percentile: float = 99.99
    weight_bits: int | None = None
    rounding: str = "nearest"
    gptq_percdamp: float = 0.01
    gptq_act_order: bool = False
    gptq_sequential: bool = False
    gptq_clip_search: bool = True
    bias_correction: bool = False
    equalization: bool = False
    smoothquant: float | str | None = None
    exclude_ops: tuple = ()
    exclude_paths: tuple = ()
    module_types: dict = field(default_factory=dict)
    module_paths: dict = field(default_factory=dict)

    __hash__ = None  # holds dicts; compare with ==, do not hash

    def __post_init__(self):
        _normalize(self)
        _choose(self.weight, WEIGHT_DTYPES + (None,), "weight")
        _choose(self.activation, ACTIVATION_MODES, "activation")
        _choose(self.activation_dtype, ACTIVATION_DTYPES, "activation_dtype")
        _choose(self.weight_granularity, WEIGHT_GRANULARITIES, "weight_granularity")
        _choose(self.activation_granularity, ACTIVATION_GRANULARITIES, "activation_granularity")
        _choose(self.observer, OBSERVERS, "observer")
        for name in ("weight_symmetric", "activation_symmetric", "reduce_range"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"QConfig: {name}={getattr(self, name)!r} must be a bool")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) \
                or self.group_size < 1:
            raise ValueError(f"QConfig: group_size={self.group_size!r} must be an int >= 1")
        if not isinstance(self.percentile, (int, float)) or not 0 < self.percentile <= 100:
            raise ValueError(f"QConfig: percentile={self.percentile!r} must be in (0, 100]")
        self._check_combinations()
        checks.check_supported(self)
        checks.check_exclusions(self)
        self._check_algorithms()
        for attr in ("module_types", "module_paths"):
            self._check_overrides(attr)

    def _check_combinations(self) -> None:
        if self.weight in _FLOAT_WEIGHTS and self.activation is not None:
            raise ValueError(f"QConfig: weight={self.weight!r} is weight-only; "
                             f"activation must be None, got {self.activation!r}")
        if self.weight in _FLOAT_WEIGHTS and self.weight_granularity is not None:
            raise ValueError(f"QConfig: weight={self.weight!r} takes no weight_granularity")
        if self.weight is None and self.activation is not None:
            raise ValueError("QConfig: activation quantization needs integer weights "
                             f"(weight=None, activation={self.activation!r})")
        if self.activation_granularity == "per_token" and self.activation != "dynamic":
            raise ValueError("QConfig: activation_granularity='per_token' needs "
                             f"activation='dynamic', got {self.activation!r}")

    def _check_algorithms(self) -> None:
        """The fields beyond round-to-nearest (issue 16): types, ranges, what they need."""
        _choose(self.rounding, ROUNDINGS, "rounding")
        _choose(self.weight_bits, (None, 2, 3), "weight_bits")
        if self.weight_bits is not None and (self.weight not in _LOW_BIT
                                             or self.activation is not None):
            raise ValueError(f"QConfig: weight_bits={self.weight_bits} is a grid inside 4-bit "
                             f"weight-only storage (weight='int4' or 'uint4', activation=None), "
                             f"got weight={self.weight!r}, activation={self.activation!r}")
        for name in ("gptq_act_order", "gptq_sequential", "gptq_clip_search", "bias_correction",
                     "equalization"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"QConfig: {name}={getattr(self, name)!r} must be a bool")
        damp = self.gptq_percdamp
        if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not damp >= 0:
            raise ValueError(f"QConfig: gptq_percdamp={damp!r} must be a number >= 0")
        sq = self.smoothquant
        if sq is not None and sq != "auto" and (isinstance(sq, bool) or not isinstance(
                sq, (int, float)) or not 0 <= sq <= 1):
            raise ValueError(f"QConfig: smoothquant={sq!r} must be None, 'auto' or an alpha "
                             "in [0, 1]")
        integer = self.weight is not None and self.weight not in _FLOAT_WEIGHTS
        for name, on in (("rounding='gptq'", self.rounding == "gptq"),
                         ("bias_correction=True", self.bias_correction)):
            if on and (not integer or self.activation == "dynamic"):
                raise ValueError(f"QConfig: {name} needs integer weights with static or no "
                                 f"activation quantization (weight={self.weight!r}, "
                                 f"activation={self.activation!r})")
        if self.gptq_sequential and (self.rounding != "gptq" or self.activation is not None):
            raise ValueError("QConfig: gptq_sequential=True needs rounding='gptq' and "
                             f"weight-only layers (activation=None), got rounding="
                             f"{self.rounding!r}, activation={self.activation!r}")
        if sq is not None and self.activation != "static":
            raise ValueError(f"QConfig: smoothquant={sq!r} needs activation='static', "
                             f"got {self.activation!r}")

    def _check_overrides(self, attr: str) -> None:
        table = getattr(self, attr)
        if not isinstance(table, dict):
            raise ValueError(f"QConfig: {attr} must be a dict, got {type(table).__name__}")
        for key, val in table.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"QConfig: {attr} key {key!r} must be a non-empty str")
            if val is not None and not isinstance(val, QConfig):
                raise ValueError(f"QConfig: {attr}[{key!r}] must be a QConfig or None")
            if val is not None and (val.module_types or val.module_paths):
                raise ValueError(f"QConfig: {attr}[{key!r}] must not have overrides itself")

    @property
    def resolved_weight_granularity(self) -> str | None:
        """Weight granularity with the default applied (None for float/fp16/bf16 weights)."""
        if self.weight is None or self.weight in _FLOAT_WEIGHTS:
            return None
        if self.weight_granularity is not None:
            return self.weight_granularity
        w4a8 = self.activation == "static"  # int4 weights on the int8 kernels: per channel
        return "per_group" if self.weight in _LOW_BIT and not w4a8 else "per_channel"

    def for_module(self, path: str, type_name: str) -> QConfig | None:
        """Config for one module: longest matching path override, then type override, then self.

        A path override ``"layer1"`` matches ``"layer1"`` and ``"layer1.0.conv"`` but not
        ``"layer10"``. The returned config carries no overrides; None means keep float.
        """
        best = None
        for key in self.module_paths:
            covers = path == key or path.startswith(key + ".")
            if covers and (best is None or len(key) > len(best)):
                best = key
        if best is not None:
            return self.module_paths[best]
        if type_name in self.module_types:
            return self.module_types[type_name]
        if self.weight is None:
            return None
        return self.replace(module_types={}, module_paths={})

    @classmethod
    def preset(cls, name: str, **changes) -> QConfig:
        """The QConfig of a report scheme by name (``"int8-static"``, ``"int4-g32"``, ...),
        with ``changes`` applied: ``QConfig.preset("int8-dyn", exclude_ops=("conv2d",))``."""
        return cls(**{**checks.preset_args(name), **changes})

    def replace(self, **changes) -> QConfig:
        """Copy with some fields changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(changes) - set(values)
        if unknown:
            raise ValueError(f"QConfig: unknown fields {sorted(unknown)}; valid: {sorted(values)}")
        values.update(changes)
        return QConfig(**values)

    def to_dict(self) -> dict:
        """JSON-able dict (overrides nested as dicts or None)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("module_types", "module_paths")}
        for attr in ("module_types", "module_paths"):
            out[attr] = {k: (None if v is None else v.to_dict())
                         for k, v in sorted(getattr(self, attr).items())}
        for attr in ("exclude_ops", "exclude_paths"):  # JSON has lists, not tuples
            out[attr] = list(out[attr])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> QConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError listing the valid ones."""
        if not isinstance(data, dict):
            raise ValueError(f"QConfig.from_dict: expected a dict, got {type(data).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"QConfig.from_dict: unknown keys {unknown}; valid: {valid}")
        values = dict(data)
        for attr in ("module_types", "module_paths"):
            values[attr] = {k: (None if v is None else cls.from_dict(v))
                            for k, v in values.get(attr, {}).items()}
        return cls(**values)


__all__ = ["QConfig"]
