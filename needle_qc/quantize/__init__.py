"""Quantization numerics: config, observers, qparams, low-bit formats and NumPy reference ops."""
from needle_qc.quantize import layer_stats as _layer_stats  # noqa: F401  (its observer kind)
from needle_qc.quantize.lowbit import (
    QuantizedWeight,
    bf16_to_float32,
    cast_bf16,
    cast_fp16,
    pack_int4,
    quantize_weight,
    unpack_int4,
)
from needle_qc.quantize.observers import (
    OBSERVER_KINDS,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    Observer,
    PerChannelMinMaxObserver,
    make_observer,
    observer_from_dict,
)
from needle_qc.quantize.qconfig import QConfig
from needle_qc.quantize.qparams import choose_qparams, qrange
from needle_qc.quantize.reference import (
    dynamic_quantize_per_token,
    qlinear_ref,
    quantize_bias,
    requant_multiplier,
    requantize,
    round_half_even,
)

__all__ = [
    "HistogramObserver", "MinMaxObserver", "MovingAverageMinMaxObserver", "OBSERVER_KINDS",
    "Observer", "PerChannelMinMaxObserver", "QConfig", "QuantizedWeight", "bf16_to_float32",
    "cast_bf16", "cast_fp16", "choose_qparams", "dynamic_quantize_per_token", "make_observer",
    "observer_from_dict", "pack_int4", "qlinear_ref", "qrange", "quantize_bias", "quantize_weight",
    "requant_multiplier", "requantize", "round_half_even", "unpack_int4",
]
