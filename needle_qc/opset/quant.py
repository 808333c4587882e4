"""The quantization IR ops (docs/quantized-ir.md): op-table rows, shape rules, evaluation.

Importing this module registers ``observer``, ``quantize``, ``dequantize``, ``requantize``,
``qlinear``, ``qconv2d``, ``qmatmul``, ``qadd``, ``linear_dynamic``, ``conv2d_dynamic``,
``linear_weight_only`` and ``conv2d_weight_only``. Activation qparams live in the node types
(``meta["qparams"]``); the evaluators (in :mod:`needle_qc.opset.quant_eval`) read them from the
node being run.
"""

from needle_qc.errors import IRError
from needle_qc.opset import quant_eval as qeval
from needle_qc.opset.table import (
    OpDef,
    Traits,
    _broadcast_dims,
    _conv_out,
    get_op,
    register_op,
    shape_size,
)

Q_DTYPES = ("uint8", "int8")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
WEIGHT_ONLY_DTYPES = ("float16", "bfloat16", "int8", "uint8", "int4", "uint4")
OUT_DTYPES = Q_DTYPES + ("float32",)


# ----------------------------------------------------------------------------- checks

def _meta(metas, i, op):
    m = metas[i]
    if m is None or m.get("shape") is None:
        raise IRError(f"{op}: input {i} has no shape")
    return tuple(m["shape"]), m.get("dtype")


def _activation(metas, i, op):
    """Shape of a quantized activation input; it must be u8/i8 with qparams in its type."""
    shape, dtype = _meta(metas, i, op)
    if dtype not in Q_DTYPES:
        raise IRError(f"{op}: input {i} must be uint8/int8, got {dtype}")
    qp = metas[i].get("qparams")
    if not qp or "s" not in qp or "z" not in qp:
        raise IRError(f"{op}: input {i} ({dtype}) has no qparams {{s=..., z=...}} in its type")
    return shape


def _float(metas, i, op):
    shape, dtype = _meta(metas, i, op)
    if dtype not in FLOAT_DTYPES:
        raise IRError(f"{op}: input {i} must be a float tensor, got {dtype}")
    return shape


def _dtype_attr(attrs, op, valid=Q_DTYPES):
    dtype = attrs.get("dtype")
    if dtype not in valid:
        raise IRError(f"{op}: dtype={dtype!r} is not valid; valid: {list(valid)}")
    return dtype


def _expect(metas, i, op, dtype, shape=None, what=""):
    got_shape, got_dtype = _meta(metas, i, op)
    if got_dtype != dtype:
        raise IRError(f"{op}: input {i}{what} must be {dtype}, got {got_dtype}")
    if shape is not None and got_shape != tuple(shape):
        raise IRError(f"{op}: input {i}{what} must have shape {tuple(shape)}, got {got_shape}")
    return got_shape


def _channel_scale(metas, i, op, channels):
    shape = _expect(metas, i, op, "float32", what=" (weight scale)")
    if shape not in ((), (1,), (channels,)):
        raise IRError(f"{op}: weight scale shape {shape} must be () or ({channels},)")


# ----------------------------------------------------------------------------- shape rules

def observer_rule(metas, attrs):
    """Identity on a float tensor."""
    _dtype_attr(attrs, "observer")
    return _float(metas, 0, "observer"), metas[0]["dtype"]


def quantize_rule(metas, attrs):
    """f32 -> u8/i8 of the same shape (qparams are the node's own, in its type)."""
    return _float(metas, 0, "quantize"), _dtype_attr(attrs, "quantize")


def dequantize_rule(metas, attrs):
    """u8/i8/i32 -> f32; per tensor from the input type, or per axis/blocked from a scale input."""
    shape, dtype = _meta(metas, 0, "dequantize")
    if dtype not in Q_DTYPES + ("int32",):
        raise IRError(f"dequantize: input 0 must be uint8/int8/int32, got {dtype}")
    if len(metas) == 1:
        if dtype in Q_DTYPES:
            _activation(metas, 0, "dequantize")
        else:
            _int32_qparams(metas)
        return shape, "float32"
    scale = _expect(metas, 1, "dequantize", "float32", what=" (scale)")
    want = _scale_shape(shape, attrs["axis"], attrs["group_size"], scale)
    if scale != want and scale not in ((), (1,)):
        raise IRError(f"dequantize: scale shape {scale} does not fit input {shape} "
                      f"(axis={attrs['axis']}, group_size={attrs['group_size']}); want {want}")
    if len(metas) == 3:
        _expect(metas, 2, "dequantize", dtype, scale, " (zero point)")
    return shape, "float32"


def _int32_qparams(metas):
    qp = metas[0].get("qparams")
    if not qp or qp.get("z") != 0:
        raise IRError("dequantize: an int32 input without a scale input needs qparams "
                      "{s=..., z=0} in its type")


def _scale_shape(shape, axis, group_size, scale):
    if not shape:
        return ()
    if not -len(shape) <= axis < len(shape):
        raise IRError(f"dequantize: axis {axis} out of range for shape {shape}")
    ax = axis % len(shape)
    if group_size == 0:
        return (shape[ax],)
    if not isinstance(shape[ax], int):
        raise IRError(f"dequantize: blocked axis {ax} of {shape} must be concrete")
    return tuple(-(-d // group_size) if i == ax else d for i, d in enumerate(shape))


def requantize_rule(metas, attrs):
    """u8/i8 {s_in, z_in} -> u8/i8 {s_y, z_y}, same shape."""
    return _activation(metas, 0, "requantize"), _dtype_attr(attrs, "requantize")


def _layer_extras(metas, op, zero_points):
    """Weight shape and the ``(zero point, bias)`` input indices of a (x, w, w_scale, ...) layer.

    With ``zero_points`` (static layers) the weight is u8/i8 and may be followed by its zero
    point; otherwise it is i8 and input 3 is the bias.
    """
    if not zero_points:
        return _expect(metas, 1, op, "int8", what=" (weight)"), None, \
            (3 if len(metas) == 4 else None)
    w, wdt = _meta(metas, 1, op)
    if wdt not in Q_DTYPES:
        raise IRError(f"{op}: input 1 (weight) must be uint8/int8, got {wdt}")
    zp, bias = qeval.layer_optional_inputs([m and m.get("dtype") for m in metas])
    if len(metas) == 5 and zp is None:
        _expect(metas, 3, op, wdt, what=" (weight zero point)")
    return w, zp, bias


def _layer_params(metas, op, channels, zp, bias, bias_dtype):
    """Check the weight scale, zero point and bias of a layer with ``channels`` outputs."""
    _channel_scale(metas, 2, op, channels)
    if zp is not None:
        shape, _ = _meta(metas, zp, op)
        if shape not in ((), (1,), (channels,)):
            raise IRError(f"{op}: weight zero point shape {shape} must be () or ({channels},)")
    if bias is not None:
        _expect(metas, bias, op, bias_dtype, (channels,), " (bias)")


def _linear_out(metas, op, x, bias_dtype, zero_points=False):
    """Check weight [K, N], its scale, zero point and bias of a linear; the [..., N] out shape."""
    w, zp, bias = _layer_extras(metas, op, zero_points)
    if len(w) != 2 or not x or x[-1] != w[0]:
        raise IRError(f"{op}: x{x} does not match weight{w} (K, N)")
    _layer_params(metas, op, w[1], zp, bias, bias_dtype)
    return x[:-1] + (w[1],)


def _conv_layer_out(metas, attrs, op, x, bias_dtype, zero_points=False):
    """Check weight [K,K,Cin,Cout], its scale, zero point and bias of a conv; NCHW out shape."""
    w, zp, bias = _layer_extras(metas, op, zero_points)
    if len(x) != 4 or len(w) != 4 or x[1] != w[2] or w[0] != w[1]:
        raise IRError(f"{op}: bad shapes x{x} w{w}; want NCHW and (K,K,{x[1:2]},Cout)")
    _layer_params(metas, op, w[3], zp, bias, bias_dtype)
    s, p = attrs["stride"], attrs["padding"]
    h, wd = (_conv_out(x[i], w[0], s, p, op) for i in (2, 3))
    return (x[0], w[3], h, wd)


def _int4_as_int8(metas, attrs, op, k, red_axis):
    """``metas`` with a ``weight_dtype="int4"`` weight (uint8, two values per byte along
    ``red_axis``, no zero point) seen as the int8 values it holds; unchanged otherwise."""
    wdt = attrs.get("weight_dtype")
    if wdt is None:
        return metas
    if wdt != "int4":
        raise IRError(f"{op}: weight_dtype={wdt!r}; valid: 'int4' (or absent: the weight's own "
                      "u8/i8 dtype)")
    w = list(_expect(metas, 1, op, "uint8", what=" (packed int4 weight)"))
    if len(w) <= red_axis or w[red_axis] != (k + 1) // 2:
        raise IRError(f"{op}: packed int4 weight {tuple(w)} needs {(k + 1) // 2} bytes on axis "
                      f"{red_axis} for {k} inputs")
    if len(metas) > 3 and metas[3].get("dtype") != "int32":
        raise IRError(f"{op}: int4 weights are symmetric and take no zero point")
    w[red_axis] = k
    return [metas[0], {**metas[1], "shape": tuple(w), "dtype": "int8"}, *metas[2:]]


def qlinear_rule(metas, attrs):
    """x_q [..., K] (u8/i8), w_q u8/i8 [K, N], w_scale f32 [N] or [], optional w_zp (w's dtype,
    [N] or []), optional bias i32 [N] -> [..., N]. ``weight_dtype="int4"``: w_q is uint8
    [ceil(K/2), N], two int4 values per byte along K (low nibble first), no zero point."""
    op = "qlinear"
    x = _activation(metas, 0, op)
    metas = _int4_as_int8(metas, attrs, op, x[-1] if x else 0, 0)
    return _linear_out(metas, op, x, "int32", True), _dtype_attr(attrs, op, OUT_DTYPES)


def qconv2d_rule(metas, attrs):
    """x_q NCHW (u8/i8), w_q u8/i8 [K,K,Cin,Cout], w_scale f32 [Cout] or [], optional w_zp
    (w's dtype, [Cout] or []), optional bias i32 [Cout]. ``weight_dtype="int4"``: w_q is
    uint8 [K,K,ceil(Cin/2),Cout], two int4 values per byte along Cin, no zero point."""
    op = "qconv2d"
    x = _activation(metas, 0, op)
    metas = _int4_as_int8(metas, attrs, op, x[1] if len(x) > 1 else 0, 2)
    return _conv_layer_out(metas, attrs, op, x, "int32", True), \
        _dtype_attr(attrs, op, OUT_DTYPES)


def qmatmul_rule(metas, attrs):
    """a_q [..., M, K] @ b_q [..., K, N], both quantized activations; leading dims broadcast."""
    op = "qmatmul"
    a, b = _activation(metas, 0, op), _activation(metas, 1, op)
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
        raise IRError(f"{op}: cannot multiply {a} by {b}")
    return _broadcast_dims(a[:-2], b[:-2], op) + (a[-2], b[-1]), _dtype_attr(attrs, op, OUT_DTYPES)


def qadd_rule(metas, attrs):
    """Two quantized activations of one shape -> requantized sum."""
    a, b = _activation(metas, 0, "qadd"), _activation(metas, 1, "qadd")
    if a != b:
        raise IRError(f"qadd: shape mismatch {a} vs {b}")
    return a, _dtype_attr(attrs, "qadd")


def linear_dynamic_rule(metas, attrs):
    """x f32 [..., K], w_q i8 [K, N], w_scale f32 [N] or [], bias f32 [N] -> f32 [..., N]."""
    op = "linear_dynamic"
    out = _linear_out(metas, op, _float(metas, 0, op), "float32")
    if attrs["granularity"] not in ("per_tensor", "per_token"):
        raise IRError(f"{op}: granularity={attrs['granularity']!r}; valid: per_tensor, per_token")
    return out, "float32"


def conv2d_dynamic_rule(metas, attrs):
    """x f32 NCHW, w_q i8 [K,K,Cin,Cout], w_scale f32 [Cout] or [], bias f32 [Cout] -> f32."""
    op = "conv2d_dynamic"
    x = _float(metas, 0, op)
    return _conv_layer_out(metas, attrs, op, x, "float32"), "float32"


def _weight_only_inputs(metas, attrs, op):
    """Check the positional inputs of a weight-only op; returns the bias index or None."""
    wdt, gran = attrs["weight_dtype"], attrs["granularity"]
    if wdt not in WEIGHT_ONLY_DTYPES:
        raise IRError(f"{op}: weight_dtype={wdt!r}; valid: {list(WEIGHT_ONLY_DTYPES)}")
    is_float = wdt in ("float16", "bfloat16")
    valid = ("none",) if is_float else \
        ("per_group",) if wdt in ("int4", "uint4") else ("per_tensor", "per_channel", "per_group")
    if gran not in valid:
        raise IRError(f"{op}: granularity={gran!r} for {wdt} weights; valid: {list(valid)}")
    if (gran == "per_group") != (attrs["group_size"] > 0):
        raise IRError(f"{op}: group_size={attrs['group_size']} must be > 0 exactly for per_group")
    want = 2 + (0 if is_float else 1) + int(attrs["has_zero_point"]) + int(attrs["has_bias"])
    if is_float and attrs["has_zero_point"]:
        raise IRError(f"{op}: {wdt} weights take no zero point")
    if len(metas) != want:
        raise IRError(f"{op}: expected {want} inputs for these attrs, got {len(metas)}")
    storage = {"int4": "uint8", "uint4": "uint8"}.get(wdt, wdt)
    _expect(metas, 1, op, storage, what=" (weight)")
    return want - 1 if attrs["has_bias"] else None


def _weight_only_meta(metas, attrs, op, k, out_ch, red_axis):
    """Check scale/zero point/bias shapes against the unpacked weight; k = reduction length."""
    w, _ = _meta(metas, 1, op)
    wdt = attrs["weight_dtype"]
    full = list(w)
    if wdt in ("int4", "uint4"):
        if w[red_axis] != (k + 1) // 2:
            raise IRError(f"{op}: packed int4 weight {w} needs {(k + 1) // 2} bytes on axis "
                          f"{red_axis % len(w)} for {k} inputs")
    full[red_axis] = k
    if w[-1] != out_ch or (wdt not in ("int4", "uint4") and tuple(full) != w):
        raise IRError(f"{op}: weight shape {w} does not match {k} inputs")
    if wdt not in ("float16", "bfloat16"):
        gran, g = attrs["granularity"], attrs["group_size"]
        scale = {"per_tensor": (), "per_channel": (out_ch,)}.get(gran)
        if gran == "per_group":
            full[red_axis] = -(-k // g)
            scale = tuple(full)
        _expect(metas, 2, op, "float32", scale, " (scale)")
        if attrs["has_zero_point"]:
            zdt = {"int4": "int8", "uint4": "uint8"}.get(wdt, wdt)
            _expect(metas, 3, op, zdt, scale, " (zero point)")
    bias = len(metas) - 1 if attrs["has_bias"] else None
    if bias is not None:
        _expect(metas, bias, op, "float32", (out_ch,), " (bias)")


def linear_weight_only_rule(metas, attrs):
    """x f32 [..., K] with a float16/bfloat16/int8/uint8/int4/uint4 weight [K, N] -> [..., N]."""
    op = "linear_weight_only"
    x = _float(metas, 0, op)
    _weight_only_inputs(metas, attrs, op)
    w, _ = _meta(metas, 1, op)
    if len(w) != 2 or not x:
        raise IRError(f"{op}: need x [..., K] and a 2-D weight, got x{x} w{w}")
    _weight_only_meta(metas, attrs, op, x[-1], w[1], 0)
    return x[:-1] + (w[1],), "float32"


def conv2d_weight_only_rule(metas, attrs):
    """x f32 NCHW with a weight-only [K,K,Cin,Cout] weight -> f32 NCHW."""
    op = "conv2d_weight_only"
    x = _float(metas, 0, op)
    _weight_only_inputs(metas, attrs, op)
    w, _ = _meta(metas, 1, op)
    if len(x) != 4 or len(w) != 4 or w[0] != w[1]:
        raise IRError(f"{op}: bad shapes x{x} w{w}; want NCHW and (K,K,Cin,Cout)")
    _weight_only_meta(metas, attrs, op, x[1], w[3], 2)
    s, p = attrs["stride"], attrs["padding"]
    h, wd = (_conv_out(x[i], w[0], s, p, op) for i in (2, 3))
    return (x[0], w[3], h, wd), "float32"


# ----------------------------------------------------------------------------- the rows

_WEIGHT_ONLY_ATTRS = {"weight_dtype": "str", "granularity": "str", "group_size": "int",
                      "has_zero_point": "bool", "has_bias": "bool"}
_WEIGHT_ONLY_DEFAULTS = {"group_size": 0, "has_zero_point": False, "has_bias": False}

ROWS = [
    OpDef("observer", 1, {"dtype": "str", "symmetric": "bool", "reduce_range": "bool?"},
          observer_rule, "Identity; records calibration statistics in graph.observers[name] "
          "(reduce_range: 7-bit qparams).",
          qeval.eval_observer, {"dtype": "uint8", "symmetric": False},
          traits=Traits(kind="quant")),
    OpDef("quantize", 1, {"dtype": "str"}, quantize_rule,
          "clamp(rint(x / s) + z) with the node's own {s, z} (ONNX QuantizeLinear).",
          qeval.eval_quantize, {"dtype": "uint8"},
          traits=Traits(kind="quant", layout_free=True)),
    OpDef("dequantize", (1, 3), {"axis": "int", "group_size": "int"}, dequantize_rule,
          "(q - z) * s: per tensor from the input's type, or from scale (+ zero point) inputs.",
          qeval.eval_dequantize, {"axis": -1, "group_size": 0},
          traits=Traits(kind="quant")),
    OpDef("requantize", 1, {"dtype": "str", "activation": "str?"}, requantize_rule,
          "Move a quantized tensor to the node's own {s, z}: requantize(q - z_in, s_in / s_y).",
          qeval.eval_requantize, {"dtype": "uint8"},
          traits=Traits(kind="quant", integer=True, layout_free=True)),
    OpDef("qlinear", (3, 5), {"dtype": "str", "activation": "str?", "weight_dtype": "str?"},
          qlinear_rule,
          "Quantized linear: int32 (x - z_x) @ (w - z_w) + bias, requantized (or scaled to f32).",
          qeval.eval_qlinear, {"dtype": "uint8"},
          traits=Traits(kind="qlayer", integer=True, weight_input=1, out_axis=1, reduction_axis=0)),
    OpDef("qconv2d", (3, 5),
          {"stride": "int", "padding": "int", "dtype": "str", "activation": "str?",
           "weight_dtype": "str?"},
          qconv2d_rule, "Quantized NCHW conv2d, (K,K,Cin,Cout) weights; output as qlinear.",
          qeval.eval_qconv2d, {"stride": 1, "padding": 0, "dtype": "uint8"},
          traits=Traits(kind="qlayer", integer=True, weight_input=1, out_axis=3, reduction_axis=2)),
    OpDef("qmatmul", 2, {"dtype": "str"}, qmatmul_rule,
          "Quantized matmul of two activations (ONNX QLinearMatMul).",
          qeval.eval_qmatmul, {"dtype": "uint8"},
          traits=Traits(kind="qlayer", integer=True)),
    OpDef("qadd", 2, {"dtype": "str", "activation": "str?"}, qadd_rule,
          "quantize(dequantize(a) + dequantize(b)) with an optional activation clamp.",
          qeval.eval_qadd, {"dtype": "uint8"},
          traits=Traits(integer=True, layout_free=True)),
    OpDef("linear_dynamic", (3, 4), {"granularity": "str", "reduce_range": "bool?"},
          linear_dynamic_rule,
          "f32 linear with the activation quantized on the fly (u8; reduce_range: [0, 127]) and "
          "int8 weights.",
          qeval.eval_linear_dynamic, {"granularity": "per_tensor"},
          traits=Traits(kind="qlayer", integer=True, weight_input=1, out_axis=1, reduction_axis=0)),
    OpDef("conv2d_dynamic", (3, 4), {"stride": "int", "padding": "int", "reduce_range": "bool?"},
          conv2d_dynamic_rule,
          "f32 NCHW conv2d with the activation quantized on the fly (u8 per tensor; reduce_range: "
          "[0, 127]) and int8 (K,K,Cin,Cout) weights.", qeval.eval_conv2d_dynamic, {"stride": 1, "padding": 0},
          traits=Traits(kind="qlayer", integer=True, weight_input=1, out_axis=3, reduction_axis=2)),
    OpDef("linear_weight_only", (2, 5), dict(_WEIGHT_ONLY_ATTRS), linear_weight_only_rule,
          "f32 linear with fp16/bf16/int8/uint8/int4 weights dequantized to fp32.",
          qeval.eval_linear_weight_only, dict(_WEIGHT_ONLY_DEFAULTS),
          traits=Traits(kind="qlayer", integer=True, weight_input=1, out_axis=1, reduction_axis=0)),
    OpDef("conv2d_weight_only", (2, 5), {"stride": "int", "padding": "int", **_WEIGHT_ONLY_ATTRS},
          conv2d_weight_only_rule,
          "f32 NCHW conv2d with fp16/bf16/int8/uint8/int4 weights dequantized to fp32.",
          qeval.eval_conv2d_weight_only, {**_WEIGHT_ONLY_DEFAULTS, "stride": 1, "padding": 0},
          traits=Traits(kind="qlayer", integer=True, weight_input=1, out_axis=3, reduction_axis=2)),
]


def register_quant_ops():
    """Register every quantization op (idempotent: rows already present are left alone)."""
    for row in ROWS:
        try:
            get_op(row.name)
        except IRError:
            register_op(row)


__all__ = ["ROWS", "register_quant_ops", "shape_size"]
