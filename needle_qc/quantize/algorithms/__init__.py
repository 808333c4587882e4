"""Algorithm cores beyond round-to-nearest: GPTQ, bias correction / equalization, SmoothQuant."""
from .bias_correction import (
    correct_bias,
    equalization_scales,
    equalize_chain,
    equalize_pair,
    expected_output_shift,
    flat_input_mean,
    input_channel_ranges,
    output_channel_ranges,
    relu_normal_mean,
)
from .gptq import (
    GPTQResult,
    HessianAccumulator,
    WeightGrid,
    column_groups,
    gptq_quantize_matrix,
    gptq_quantize_weight,
    hessian_error,
    unfold_nchw,
)
from .smoothquant import (
    ALPHA_GRID,
    ChannelAbsMax,
    QuantSim,
    SmoothQuantResult,
    activation_channel_stats,
    smooth_weight,
    smoothquant,
    smoothquant_scales,
)

__all__ = [
    "ALPHA_GRID", "ChannelAbsMax", "GPTQResult", "HessianAccumulator", "QuantSim",
    "SmoothQuantResult", "WeightGrid", "activation_channel_stats", "column_groups",
    "correct_bias", "equalization_scales", "equalize_chain", "equalize_pair",
    "expected_output_shift", "flat_input_mean", "gptq_quantize_matrix", "gptq_quantize_weight",
    "hessian_error", "input_channel_ranges", "output_channel_ranges", "relu_normal_mean",
    "smooth_weight", "smoothquant", "smoothquant_scales", "unfold_nchw",
]
