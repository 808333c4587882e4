"""The builder table: op name -> the function that lowers it to a native kernel."""

import numpy as np

from needle_qc.lower.float_ops import (
    _elementwise,
    _relu,
    _sigmoid,
    build_conv2d,
    build_linear,
    build_reshape,
)
from needle_qc.lower.int8 import (
    build_conv2d_dynamic,
    build_linear_dynamic,
    build_qconv2d,
    build_qlinear,
)
from needle_qc.lower.quant_ops import (
    build_dequantize,
    build_qadd,
    build_qmatmul,
    build_quantize,
    build_requantize,
)
from needle_qc.lower.weight_only import build_conv2d_weight_only, build_linear_weight_only

# ----------------------------------------------------------------------------- builders

def build_observer(ctx, node):
    """Observers update ``graph.observers`` through the op table (they must see the data)."""
    return None


BUILDERS = {
    "qlinear": build_qlinear,
    "qconv2d": build_qconv2d,
    "quantize": build_quantize,
    "dequantize": build_dequantize,
    "requantize": build_requantize,
    "qadd": build_qadd,
    "qmatmul": build_qmatmul,
    "linear_dynamic": build_linear_dynamic,
    "conv2d_dynamic": build_conv2d_dynamic,
    "linear_weight_only": build_linear_weight_only,
    "conv2d_weight_only": build_conv2d_weight_only,
    "linear": build_linear,
    "conv2d": build_conv2d,
    "reshape": build_reshape,
    "observer": build_observer,
    "relu": _elementwise(_relu, "relu"),
    "add": _elementwise(np.add, "add"),
    "add_relu": _elementwise(lambda a, b: _relu(np.add(a, b)), "add_relu"),
    "mul": _elementwise(np.multiply, "mul"),
    "maximum": _elementwise(np.maximum, "maximum"),
    "tanh": _elementwise(np.tanh, "tanh"),
    "sigmoid": _elementwise(_sigmoid, "sigmoid"),
    "add_scalar": _elementwise(lambda x, c: (x + np.float32(c)).astype(x.dtype), "add_scalar"),
    "mul_scalar": _elementwise(lambda x, c: (x * np.float32(c)).astype(x.dtype), "mul_scalar"),
}
"""op name -> builder(ctx, node) returning an Impl, (Impl, float alternative) or None (=
fall back to the op table's evaluation)."""
