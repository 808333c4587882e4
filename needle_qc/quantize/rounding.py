"""Weight rounding by config: round-to-nearest or GPTQ, then optional bias correction.

Both give the :class:`~needle_qc.quantize.lowbit.QuantizedWeight` record ``quantize_weight``
gives (same dtypes, shapes and axes), so the passes pack and lower them unchanged.
"""
from dataclasses import replace

import numpy as np

from needle_qc.quantize.algorithms.bias_correction import correct_bias
from needle_qc.quantize.algorithms.gptq import CLIP_SHRINKS, gptq_quantize_weight
from needle_qc.quantize.lowbit import QuantizedWeight, quantize_weight


def round_weight(w, cfg, granularity, axis=None, moments=None, where="?") -> QuantizedWeight:
    """``w`` quantized as ``cfg`` says (``cfg.rounding``): RTN, or GPTQ on ``moments.hessian``
    (with ``cfg.gptq_clip_search``: each output row's range factor from ``CLIP_SHRINKS``).

    ``axis`` is quantize_weight's (per_group: the reduction axis); GPTQ always groups along the
    reduction axis (K, or C_in for conv), which is what the passes ask for. With
    ``cfg.weight_bits`` (2 or 3) the grid is int2/int3 (uint2/uint3) and the record is labelled
    with the 4-bit storage dtype (its integers fit it).
    """
    if cfg.rounding != "gptq" and cfg.weight_bits is None:
        return quantize_weight(w, cfg.weight, granularity, axis=axis, group_size=cfg.group_size,
                               symmetric=cfg.weight_symmetric)
    if cfg.rounding == "gptq" and moments is None:
        raise ValueError(f"%{where}: rounding='gptq' needs the layer's calibration inputs; build "
                         "the graph with quantize_pass and run calibrate() before converting")
    w = np.asarray(w, np.float32)
    grid = cfg.weight if cfg.weight_bits is None else \
        f"{'u' if cfg.weight.startswith('u') else ''}int{cfg.weight_bits}"
    # RTN on a grid quantize_weight lacks: GPTQ with an identity Hessian is RTN bit for bit
    gptq = cfg.rounding == "gptq"
    hessian = moments.hessian if gptq else np.eye(int(np.prod(w.shape[:-1])))
    qw = gptq_quantize_weight(w, hessian, grid, granularity, cfg.group_size,
                              cfg.weight_symmetric, percdamp=float(cfg.gptq_percdamp),
                              act_order=bool(cfg.gptq_act_order and gptq),
                              shrink=CLIP_SHRINKS if gptq and cfg.gptq_clip_search else (1.0,))
    if grid == cfg.weight:
        return qw
    container = np.uint8 if cfg.weight == "uint4" else np.int8
    return replace(qw, q=qw.q.astype(container), zp=np.asarray(qw.zp).astype(container),
                   dtype=cfg.weight)


def as_single_group(qw: QuantizedWeight, red_axis: int) -> QuantizedWeight:
    """A per-channel record rewritten as per_group with one group spanning the reduction axis.

    The integers are unchanged and every group's scale is its channel's, so it decodes to the
    same weights; the 4-bit kernels (per_group only) then run per-channel int4 weights. For conv
    the one group is per kernel tap (``group_size = C_in``), the scale repeated over the taps.
    """
    if qw.granularity != "per_channel":
        return qw
    shape = list(qw.q.shape)
    red_axis %= len(shape)
    shape[red_axis] = 1
    scale = np.ascontiguousarray(np.broadcast_to(np.asarray(qw.scale).reshape(
        (1,) * (len(shape) - 1) + (-1,)), shape))
    zp = np.ascontiguousarray(np.broadcast_to(np.asarray(qw.zp).reshape(
        (1,) * (len(shape) - 1) + (-1,)), shape))
    return replace(qw, scale=scale, zp=zp, axis=red_axis, group_size=int(qw.q.shape[red_axis]),
                   granularity="per_group")


def corrected_bias(bias, w, qw: QuantizedWeight, moments):
    """``b + E[x] (W - W_q)`` (float32): bias correction with the layer's calibrated mean."""
    return correct_bias(bias, np.asarray(w, np.float32), qw.dequantize(), moments.mean)
