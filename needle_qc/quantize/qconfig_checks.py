"""QConfig habits from torch.ao / ONNX Runtime: dtype spellings, presets, early refusals.

Everything here runs when a :class:`~needle_qc.quantize.QConfig` is built, so a configuration
the quantizer would refuse after calibration is refused at once, with the reason and the fix.
"""
from __future__ import annotations

import difflib
import re

WEIGHT_SPELLINGS = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
"""Other names of the weight dtypes, mapped to the QConfig's own (``float16`` -> ``fp16``)."""


def canonical_weight(value):
    """The QConfig spelling of a weight dtype (``"float16"`` -> ``"fp16"``); others unchanged."""
    return WEIGHT_SPELLINGS.get(value, value) if isinstance(value, str) else value


def check_supported(cfg):
    """Refuse the combinations the quantization passes cannot build (see the messages)."""
    gran = cfg.resolved_weight_granularity
    if cfg.activation == "static" and cfg.weight == "int4":
        _check_w4a8(cfg, gran)
    elif cfg.activation == "static" and (cfg.weight not in ("int8", "uint8")
                                         or gran == "per_group"):
        raise ValueError(f"QConfig: static activations need int8/uint8 weights per tensor or per "
                         f"channel (or int4 per channel: W4A8), got weight={cfg.weight!r} "
                         f"{gran}; use activation=None "
                         f"(weight-only) for {cfg.weight} weights, or weight='int8'")
    if cfg.activation == "dynamic" and (cfg.weight != "int8" or not cfg.weight_symmetric
                                        or gran == "per_group"):
        raise ValueError(f"QConfig: dynamic activations need symmetric int8 weights per tensor or "
                         f"per channel, got weight={cfg.weight!r} {gran} "
                         f"(weight_symmetric={cfg.weight_symmetric})")
    if cfg.reduce_range and cfg.activation not in ("static", "dynamic"):
        raise ValueError(f"QConfig: reduce_range=True narrows quantized activations (static or "
                         f"dynamic) to 7 bits, got activation={cfg.activation!r} (weight-only "
                         "layers keep float activations)")
    if cfg.weight in ("int4", "uint4") and gran == "per_tensor":
        raise ValueError(f"QConfig: {cfg.weight} weights are per_group or per_channel, not "
                         "per_tensor (one scale for a whole 4-bit tensor loses too much)")


def _check_w4a8(cfg, gran):
    """W4A8 runs int4 values on the int8 kernels, one scale per output channel (which factors
    out of the K sum); group scales would need a float rescale inside it."""
    if gran != "per_channel" or not cfg.weight_symmetric:
        raise ValueError(f"QConfig: W4A8 (weight='int4', activation='static') takes symmetric "
                         f"int4 weights per_channel, got {gran} (weight_symmetric="
                         f"{cfg.weight_symmetric}); use weight_granularity='per_channel', or "
                         "activation=None for int4 per_group weight-only")


def quantizable_ops():
    """The ops a QConfig decides about (``linear``, ``conv2d``, ``matmul``, ``add``...)."""
    from needle_qc.opset import ops_where

    return ops_where(lambda t: t.quantizable is not None)


def check_exclusions(cfg):
    """``exclude_ops`` must name quantizable ops; ``exclude_paths`` must be regexes."""
    valid = quantizable_ops()
    for op in cfg.exclude_ops:
        if op not in valid:
            raise ValueError(f"QConfig: exclude_ops entry {op!r} is not a quantizable op"
                             f"{_op_hint(op, valid)}; valid: {', '.join(valid)}")
    for pattern in cfg.exclude_paths:
        if not isinstance(pattern, str):
            raise ValueError(f"QConfig: exclude_paths entry {pattern!r} must be a regex (str)")
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"QConfig: exclude_paths entry {pattern!r} is not a valid regex "
                             f"({err})") from None


def _op_hint(name, valid):
    types = {"Linear": "linear", "Conv": "conv2d", "Conv2d": "conv2d"}
    if name in types:
        return f" ({name!r} is a module type: exclude_ops=({types[name]!r},) or " \
            f"module_types={{'{name.replace('2d', '')}': None}})"
    close = difflib.get_close_matches(str(name).lower(), valid, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def preset_args(name):
    """The QConfig arguments of a scheme of the report (``"int8-static"``, ``"int4-g32"``...)."""
    from needle_qc.tools.report import SCHEMES

    if name not in SCHEMES:
        close = difflib.get_close_matches(str(name), list(SCHEMES), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"QConfig.preset: unknown scheme {name!r}; {hint}valid: "
                         f"{', '.join(s for s in SCHEMES if SCHEMES[s].qconfig_args)}")
    args = SCHEMES[name].qconfig_args
    if args is None:
        raise ValueError(f"QConfig.preset: {name!r} is the float baseline, which has no "
                         "QConfig: compile the traced graph as it is")
    return dict(args)


__all__ = ["WEIGHT_SPELLINGS", "canonical_weight", "check_supported", "check_exclusions",
           "preset_args", "quantizable_ops"]
