"""Builders of the int8 layers with packed weights: qlinear, qconv2d, linear/conv2d_dynamic."""

from dataclasses import dataclass

import numpy as np

from needle_qc.lower.common import INT32_MAX, _kernels, _qp, _weight_record, accumulator_bound
from needle_qc.lower.float_ops import F32Matmul, _conv_f32_nhwc, _linear_f32
from needle_qc.lower.program import Impl
from needle_qc.lower.registry import builder
from needle_qc.opset.activations import apply_to_array, output_clamp
from needle_qc.opset.quant_eval import layer_optional_inputs, layer_weight_values
from needle_qc.quantize.qparams import value_qrange
from needle_qc.quantize.reference import dynamic_qparams, requant_multiplier

PAIR_LIMIT = 32767  # vpmaddubsw saturates each u8*s8 pair sum to int16


# ----------------------------------------------------------------------------- layer helpers

def _as_vector(scale, n):
    s = np.asarray(scale, np.float32).reshape(-1)
    return np.ascontiguousarray(np.broadcast_to(s, (n,)) if s.size == 1 else s)


def _layer_consts(ctx, node):
    """(kernels, x, w node, w, s_w, bias) of a (x, w, s_w[, bias]) layer, or None.

    None when the native kernels are missing or an operand is not a constant: the builder then
    leaves the node to the reference evaluation. ``kernels`` are the target's (CUDA or CPU).
    """
    q = ctx.kernels
    x_node, w_node, s_node = node.inputs[:3]
    w, s_w = ctx.const(w_node), ctx.const(s_node)
    has_bias = len(node.inputs) == 4
    bias = ctx.const(node.inputs[3]) if has_bias else None
    if q is None or w is None or s_w is None or (has_bias and bias is None):
        return None
    return q, x_node, w_node, w, s_w, bias


@dataclass
class StaticLayer:
    """The constant operands of a qlinear/qconv2d ``(x, w, w_scale[, w_zp][, bias])``.

    ``w_s8``/``zp_s8`` are what the int8 kernels pack: a uint8 weight and its zero point moved
    by -128 (``w - z`` is unchanged, so is every accumulator); ``zp`` is the zero point per
    output channel as int32, zeros when the layer has none.
    """

    x_node: object
    w_node: object
    zp_node: object
    w: np.ndarray
    s_w: np.ndarray
    zp: np.ndarray
    bias: object
    w_s8: np.ndarray
    zp_s8: np.ndarray
    weight_dtype: str = "int8"  # as stored in the graph/file: int8, uint8, or int4 (W4A8)

    @property
    def params(self):
        """The param nodes a packed weight depends on (the packing cache key)."""
        return tuple(p for p in (self.w_node, self.zp_node) if p is not None)

    def record(self, node, measured, qparam_bytes):
        """The layer's WeightRecord: theory in the stored dtype (int4 for W4A8), ``measured``
        the packed int8 buffer the kernels hold (W4A8: ``resident="int8"``)."""
        resident = "int8" if self.weight_dtype == "int4" else ""
        return _weight_record(node, self.weight_dtype, self.w.size, measured, qparam_bytes,
                              resident)

    @property
    def kernel_zero_point(self):
        """True when the kernel subtracts a weight zero point (a u8 z = 128 becomes 0)."""
        return bool(np.any(self.zp_s8))


def _static_layer(ctx, node):
    """The :class:`StaticLayer` of ``node``, or None when an operand is not a constant."""
    zp_i, bias_i = layer_optional_inputs([n.meta.get("dtype") for n in node.inputs])
    consts = [ctx.const(node.inputs[i]) if i is not None else 0 for i in (1, 2, zp_i, bias_i)]
    if any(c is None for c in consts):
        return None
    w, s_w, zp, bias = consts
    stored = node.attrs.get("weight_dtype") or w.dtype.name
    w = layer_weight_values(node, w, node.inputs[0].meta["shape"])  # int4: unpacked to int8
    n = w.shape[-1]
    zp = np.broadcast_to(np.asarray(zp, np.int32).reshape(-1), (n,)).copy()
    shift = 128 if w.dtype == np.uint8 else 0  # the kernels take int8 weights
    w_s8 = np.ascontiguousarray((w.astype(np.int16) - shift).astype(np.int8))
    return StaticLayer(node.inputs[0], node.inputs[1],
                       None if zp_i is None else node.inputs[zp_i], w, s_w, zp,
                       None if bias_i is None else bias, w_s8, zp - shift, stored)


def _dequant_weight(w, scale_w, zp=None):
    """``(w - zp) * scale`` per output channel, as float32 (the float versions): the exact
    integer difference, then one fp32 multiply, as ``dequantize`` does."""
    centred = w.astype(np.float32) if zp is None else \
        (w.astype(np.int32) - zp.astype(np.int32)).astype(np.float32)
    return (centred * scale_w).astype(np.float32)


def _layer_check(node, bound, bias):
    """Refuse a layer whose int32 accumulator (bias included) could overflow."""
    worst = int(bound) + (int(np.abs(bias.astype(np.int64)).max()) if bias is not None
                          and bias.size else 0)
    if worst > INT32_MAX:
        raise ValueError(f"%{node.name} ({node.op}): the int32 accumulator could overflow: "
                         f"|sum| <= {bound} plus |bias| gives {worst} > 2^31-1; quantize this "
                         "layer with fewer input channels per output, a narrower range, or "
                         "keep it float")


def _weight_zp_note(layer):
    """The explain() words for a weight zero point (none when it is 0 everywhere), and for
    int4 weights (W4A8) how they run on the int8 kernels."""
    if layer.weight_dtype == "int4":  # |w| <= 7: a u8s8 pair sums to <= 255 * 14 = 3570
        return "; int4 weights (2 per byte in the file) unpacked into the int8 panel at load " \
            "(resident: the int8 panel); |w| <= 7, so a u8s8 pair sum is at most 255 x 14 = " \
            "3570 << 32767: the fast path can never saturate"
    if not layer.kernel_zero_point:
        return ""
    shifted = " (u8 weight stored as int8 w - 128)" if layer.w.dtype == np.uint8 else ""
    return f"; weight zero point applied in kernel via row sums{shifted}"


def _bound(q, k, a_range, packed, w_s8, zp_s8=None):
    """The int32 accumulator bound from the module's ``accumulator_bound`` (CPU), else computed
    from the int8 weight itself (the CUDA module has none; the same number)."""
    if hasattr(q, "accumulator_bound"):
        return q.accumulator_bound(k, a_range, packed)
    return accumulator_bound(k, a_range, w_s8, zp_s8)


def _on_target(ctx, impl):
    """Mark ``impl`` as computed by the target's kernels (``ctx.kernels``)."""
    impl.device = "cuda" if ctx.on_cuda else "cpu"
    return impl


def _fast_path(q, x_dtype, pw, a_max, cuda=False):
    """(allow_fast, why): the u8s8 fast path only where no int16 pair sum can saturate.

    On CUDA (``cuda``) there is no fast path to allow: dp4a sums in int32, every path is exact.
    """
    if cuda:
        return False, "exact path (dp4a: int32 sums, nothing to saturate)"
    if x_dtype != "uint8":
        return False, "exact path (int8 activations)"
    claim = a_max * pw.max_pair_abs
    if claim <= PAIR_LIMIT:
        return True, f"fast path proven: {a_max} x max_pair_abs {pw.max_pair_abs} = " \
                     f"{claim} <= {PAIR_LIMIT}"
    return False, f"exact path: {a_max} x max_pair_abs {pw.max_pair_abs} = {claim} > " \
                  f"{PAIR_LIMIT} could saturate"


# ----------------------------------------------------------------------------- builders

def _pack_linear(ctx, node, q, layer):
    """The packed s8 weight of a qlinear (once per weight and zero point params)."""
    def make():
        return q.pack_weight_s8(layer.w_s8, layer.zp_s8)
    if all(p.op == "param" for p in layer.params):
        return ctx.packed_once("s8 weight", node, make, params=layer.params)
    return make()


@builder("qlinear")
def build_qlinear(ctx, node):
    """qlinear -> gemm_{u8,s8}s8_requant / _s32 with the zero point folded into the bias."""
    q, layer = ctx.kernels, _static_layer(ctx, node)
    if q is None or layer is None:
        return None
    x_node, w, s_w, bias = layer.x_node, layer.w, layer.s_w, layer.bias
    x_dtype = x_node.meta["dtype"]
    s_x, z_x = _qp(x_node)
    k, n = w.shape
    pw = _pack_linear(ctx, node, q, layer)
    lo, hi = value_qrange(x_dtype, x_node.meta.get("qparams"))  # reduce_range: 0..127
    # col_abs (hence the bound) is taken over w - z_w: the weight zero point is accounted for
    _layer_check(node, _bound(q, k, (lo - z_x, hi - z_x), pw, layer.w_s8, layer.zp_s8), bias)
    bias32 = np.zeros(n, np.int64) if bias is None else bias.astype(np.int64)
    # with a_zp = 0 the kernel gives Σ x (w - z_w); Σ (x - z_x)(w - z_w) needs - z_x Σ (w - z_w)
    w_sum = np.asarray(pw.colsum, np.int64) - k * layer.zp_s8.astype(np.int64)
    folded = bias32 - z_x * w_sum
    raw_bound = _bound(q, k, (lo, hi), pw, layer.w_s8, layer.zp_s8) + \
        int(np.abs(folded).max(initial=0))
    fold = raw_bound <= INT32_MAX and folded.size and np.abs(folded).max() <= INT32_MAX
    a_zp = 0 if fold else z_x
    bias_used = (folded if fold else bias32).astype(np.int32)
    allow_fast, why = _fast_path(q, x_dtype, pw, hi if x_dtype == "uint8" else 127, ctx.on_cuda)
    signed = x_dtype == "int8"
    a_dtype = "int8" if signed else "uint8"
    out_dtype, activation = node.attrs["dtype"], node.attrs.get("activation")
    scale_w = _as_vector(s_w, n)
    kw = {"allow_fast": True, "a_max": hi} if allow_fast else {}
    bound = hasattr(q, "bind_gemm_requant")  # the CPU module binds a layer once (CUDA: no)
    if out_dtype == "float32":
        scale = np.multiply(np.float32(s_x), scale_w, dtype=np.float32)
        if bound:  # y = float(acc + bias) * scale in the output stage
            fn = _then(q.bind_gemm_f32(pw, a_dtype, a_zp, scale, bias_used, **kw), activation)
        else:
            fn = _gemm_s32_f32(q, signed, k, n, a_zp, pw, kw, bias_used, scale, activation)
        name = f"{'s8s8' if signed else 'u8s8'} gemm s32 + fp32 scale"
    else:
        s_y, z_y = _qp(node)
        qmin, qmax = output_clamp(activation, s_y, z_y,
                                  *value_qrange(out_dtype, node.meta.get("qparams")))
        mult = _as_vector(requant_multiplier(s_x, scale_w, s_y), n)
        if bound:  # argument checks once, here; called with x alone
            fn = q.bind_gemm_requant(pw, a_dtype, a_zp, bias_used, mult, z_y, qmin, qmax,
                                     out_dtype, **kw)
        else:
            gemm = q.gemm_s8s8_requant if signed else q.gemm_u8s8_requant

            def fn(x):
                y = gemm(x.reshape(-1, k), a_zp, pw, bias_used, mult, z_y, qmin, qmax,
                         out_dtype, **kw)
                return y.reshape(x.shape[:-1] + (n,))
        name = f"gemm_{'s8s8' if signed else 'u8s8'}_requant"
    why += "; zero point folded into int32 bias" if fold else "; zero point applied in kernel"
    why += _weight_zp_note(layer)
    qbytes = scale_w.nbytes + bias_used.nbytes + (mult.nbytes if out_dtype != "float32" else 0)
    weights = [layer.record(node, pw.nbytes, qbytes)]
    impl = Impl(name, why, fn, [ctx.value(x_node, "logical")], weights=weights, kind="int8")
    return _on_target(ctx, impl), _qlinear_float(ctx, node, layer, scale_w, s_x, z_x, impl.inputs)


def _then(gemm, activation):
    """``gemm`` followed by ``activation`` (none: ``gemm`` itself, no Python frame per call)."""
    if activation is None:
        return gemm
    return lambda x: apply_to_array(activation, gemm(x))


def _gemm_s32_f32(q, signed, k, n, a_zp, pw, kw, bias_used, scale, activation):
    """The float-output qlinear on the free s32 GEMM (kernels without ``bind_gemm_f32``)."""
    gemm = q.gemm_s8s8_s32 if signed else q.gemm_u8s8_s32

    def fn(x):
        acc = gemm(x.reshape(-1, k), a_zp, pw, **kw)
        acc = acc + bias_used  # int32: the true sum fits, proven above
        y = np.multiply(acc.astype(np.float32), scale, dtype=np.float32)
        return apply_to_array(activation, y).reshape(x.shape[:-1] + (n,))
    return fn


def _dequant_bias(bias, s_x, scale_w):
    if bias is None:
        return None
    return np.multiply(bias.astype(np.float32),
                       np.multiply(np.float32(s_x), scale_w, dtype=np.float32), dtype=np.float32)


def _requant_out(node):
    """fp32 -> the node's output type (the quantize kernel, its qparams), or identity."""
    out_dtype = node.attrs["dtype"]
    if out_dtype == "float32":
        return lambda y: y
    s_y, z_y = _qp(node)
    q = _kernels()
    s_arr, z_arr = np.array([s_y], np.float32), np.array([z_y], np.int32)
    lo, hi = value_qrange(out_dtype, node.meta.get("qparams"))  # reduce_range: 7 bits
    return lambda y: q.quantize_f32(np.ascontiguousarray(y), s_arr, z_arr, 0, out_dtype, lo, hi)


def _dequant_in(s_x, z_x):
    """q -> fp32 with per-tensor qparams (the dequantize kernel)."""
    q = _kernels()
    s_arr, z_arr = np.array([s_x], np.float32), np.array([z_x], np.int32)
    return lambda x: q.dequantize(x, s_arr, z_arr, 0)


def _qlinear_float(ctx, node, layer, scale_w, s_x, z_x, inputs):
    """The float version of a qlinear: dequantize, fp32 GEMM, quantize the output."""
    w = layer.w
    w_f = _dequant_weight(w, scale_w, layer.zp)
    mm = F32Matmul(w_f)
    lin = _linear_f32(mm, _dequant_bias(layer.bias, s_x, scale_w), node.attrs.get("activation"))
    out, dq = _requant_out(node), _dequant_in(s_x, z_x)

    def fn(x):
        return out(lin(dq(x)))

    weights = [_weight_record(node, "float32", w.size, mm.nbytes, 0)]
    return Impl("fp32 gemm (ndl.cpu) + dequantize/quantize", "float version", fn, inputs,
                weights=weights, kind="float")


def _s8_as_u8(x):
    """int8 activations as the u8 kernels read them: x ^ 0x80 == x + 128 (zero point alike)."""
    return np.bitwise_xor(x.view(np.uint8), np.uint8(0x80))


@dataclass
class _ConvKernel:
    """The int8 conv a qconv2d runs: ``requant(x, *output args)`` / ``s32(x)`` on u8 NHWC."""

    requant: object
    s32: object
    nbytes: int
    name: str
    why: str


def _direct_conv_fits(ctx, q):
    """The direct conv (no im2col) where it is the faster kernel: every AVX2-class CPU
    without VNNI (with VNNI the im2col GEMM's vpdpbusd does 4x the work per instruction)."""
    return not ctx.on_cuda and hasattr(q, "pack_conv_direct_s8") and \
        q.kernel_info()["isa"] != "avx512vnni"


def _conv_kernel(ctx, q, node, layer, z_k, a_max):
    """The direct conv where it fits (the u8s8 fast path where proven), else im2col + GEMM;
    both give the same integers. ``a_max``: the largest u8 the input can hold (its range)."""
    stride, pad = node.attrs["stride"], node.attrs["padding"]
    if not _direct_conv_fits(ctx, q):
        pcw = q.pack_conv_weight_s8(layer.w_s8, layer.zp_s8)
        return _ConvKernel(
            lambda x, *o: q.conv2d_u8s8_requant(x, z_k, pcw, stride, pad, *o),
            lambda x: q.conv2d_u8s8_s32(x, z_k, pcw, stride, pad), pcw.nbytes,
            "conv2d_u8s8", "exact path (im2col + GEMM)")
    pd = q.pack_conv_direct_s8(layer.w_s8, layer.zp_s8)
    allow_fast, why = _fast_path(q, "uint8", pd, a_max)
    if allow_fast and layer.kernel_zero_point:
        allow_fast, why = False, "exact path (weight zero point)"
    fast = {"allow_fast": True, "a_max": a_max} if allow_fast else {}
    return _ConvKernel(
        lambda x, *o: q.conv2d_direct_u8s8_requant(x, z_k, pd, stride, pad, *o, **fast),
        lambda x: q.conv2d_direct_u8s8_s32(x, z_k, pd, stride, pad, **fast), pd.nbytes,
        "conv2d_direct_u8s8", why + " (direct conv, no im2col; one int8 weight copy, which "
        "the exact path sign-extends in registers)")


@builder("qconv2d")
def build_qconv2d(ctx, node):
    """qconv2d -> the direct (or im2col) u8s8 conv on NHWC (consecutive convs stay NHWC).

    int8 activations are shifted into uint8 (+128, zero point too) before the kernel: one pass
    over the input, and Σ(x - z_x)(w - z_w) is unchanged.
    """
    q, layer = ctx.kernels, _static_layer(ctx, node)
    if q is None or layer is None:
        return None
    x_node, w, s_w, bias = layer.x_node, layer.w, layer.s_w, layer.bias
    if x_node.meta["dtype"] not in ("uint8", "int8"):
        return None
    s_x, z_x = _qp(x_node)
    shifted = x_node.meta["dtype"] == "int8"
    z_k = z_x + 128 if shifted else z_x  # the zero point the u8 kernel sees
    prep = _s8_as_u8 if shifted else (lambda x: x)
    kk, _, cin, cout = w.shape
    _layer_check(node, accumulator_bound(kk * kk * cin, (-z_k, 255 - z_k), layer.w_s8,
                                         layer.zp_s8), bias)
    x_hi = value_qrange(x_node.meta["dtype"], x_node.meta.get("qparams"))[1]
    conv = _conv_kernel(ctx, q, node, layer, z_k, x_hi + 128 if shifted else x_hi)
    out_dtype, activation = node.attrs["dtype"], node.attrs.get("activation")
    scale_w = _as_vector(s_w, cout)
    bias32 = np.zeros(cout, np.int32) if bias is None else bias.astype(np.int32)
    if out_dtype == "float32":
        scale = np.multiply(np.float32(s_x), scale_w, dtype=np.float32)

        def fn(x):
            acc = conv.s32(prep(x)) + bias32
            y = np.multiply(acc.astype(np.float32), scale, dtype=np.float32)
            return apply_to_array(activation, y)
        name = f"{conv.name}_s32 + fp32 scale"
    else:
        s_y, z_y = _qp(node)
        qmin, qmax = output_clamp(activation, s_y, z_y,
                                  *value_qrange(out_dtype, node.meta.get("qparams")))
        mult = _as_vector(requant_multiplier(s_x, scale_w, s_y), cout)

        def fn(x):
            return conv.requant(prep(x), bias32, mult, z_y, qmin, qmax, out_dtype)
        name = f"{conv.name}_requant (NHWC)"
    why = conv.why + "; zero point applied in kernel (padding holds z_x)" + \
        _weight_zp_note(layer) + ("; int8 input shifted to uint8 (+128)" if shifted else "")
    weights = [layer.record(node, conv.nbytes, scale_w.nbytes + bias32.nbytes)]
    impl = Impl(name, why, fn, [ctx.value(x_node, "nhwc")], "nhwc", weights, "int8")
    return _on_target(ctx, impl), _qconv_float(node, layer, scale_w, s_x, z_x, impl.inputs)


def _qconv_float(node, layer, scale_w, s_x, z_x, inputs):
    w = layer.w
    w_f = _dequant_weight(w, scale_w, layer.zp)
    conv, mm = _conv_f32_nhwc(w_f, _dequant_bias(layer.bias, s_x, scale_w), node.attrs["stride"],
                              node.attrs["padding"], node.attrs.get("activation"))
    out, dq = _requant_out(node), _dequant_in(s_x, z_x)

    def fn(x):
        return out(conv(dq(x)))

    weights = [_weight_record(node, "float32", w.size, mm.nbytes, 0)]
    return Impl("fp32 conv (NHWC) + dequantize/quantize", "float version", fn,
                inputs, "nhwc", weights, "float")


@builder("linear_dynamic")
def build_linear_dynamic(ctx, node):
    """linear_dynamic -> dynamic_quantize_{u8,rows} + gemm_u8s8_f32, bias added after."""
    layer = _layer_consts(ctx, node)
    if layer is None:
        return None
    q, x_node, _, w, s_w, bias = layer
    k, n = w.shape
    pw = ctx.packed_once("linear_dynamic", node,
                         lambda: q.pack_weight_s8(np.ascontiguousarray(w)))
    _layer_check(node, _bound(q, k, (-255, 255), pw, w), None)
    scale_w = _as_vector(s_w, n)
    bias_f = None if bias is None else bias.astype(np.float32)
    per_token = node.attrs["granularity"] == "per_token"
    seven_bit = bool(node.attrs.get("reduce_range"))
    why = "exact path; activation scale per call"
    if hasattr(q, "bind_linear_dynamic"):  # the CPU module: one bound call (CUDA: the steps)
        fn = q.bind_linear_dynamic(pw, scale_w, None if bias_f is None else bias_f.reshape(-1),
                                   per_token, reduce_range=seven_bit)
        if fn.fast_path:
            why = f"fast path proven: activations in [0, 127] x max_pair_abs " \
                  f"{pw.max_pair_abs} = {127 * pw.max_pair_abs} <= {PAIR_LIMIT}; " \
                  "activation scale per call"
    elif seven_bit:
        return None  # no 7-bit dynamic kernel here (CUDA): the op-table evaluation runs it
    else:
        fn = _dynamic_steps(q, k, n, pw, scale_w, bias_f, per_token)
    weights = [_weight_record(node, "int8", w.size, pw.nbytes, scale_w.nbytes +
                              (0 if bias_f is None else bias_f.nbytes))]
    inputs = [ctx.value(x_node, "logical")]
    impl = Impl("dynamic_quantize + gemm_u8s8_f32", why, fn, inputs, weights=weights,
                kind="int8")
    _on_target(ctx, impl)
    w_f = _dequant_weight(w, scale_w)
    mm = F32Matmul(w_f)
    alt = Impl("fp32 gemm (ndl.cpu)", "float version", _linear_f32(mm, bias_f), inputs,
               weights=[_weight_record(node, "float32", w.size, mm.nbytes, 0)])
    return impl, alt


def _dynamic_steps(q, k, n, pw, scale_w, bias_f, per_token):
    """linear_dynamic as separate calls: dynamic quantize, GEMM, bias add."""
    def fn(x):
        x2 = np.ascontiguousarray(x.reshape(-1, k), np.float32)
        if per_token:
            xq, s_x, z_x = q.dynamic_quantize_rows(x2, "uint8")
            y = q.gemm_u8s8_f32(xq, z_x, pw, scale_w, None, False, s_x)
        else:
            xq, s_x, z_x = q.dynamic_quantize_u8(x2)
            scale = np.multiply(np.float32(s_x), scale_w, dtype=np.float32)
            y = q.gemm_u8s8_f32(xq, int(z_x), pw, scale)
        if bias_f is not None:
            y = np.add(y, bias_f, dtype=np.float32)  # a separate add: no FMA, as specified
        return y.reshape(x.shape[:-1] + (n,))
    return fn


def _dynamic_u8(q, qmax):
    """``x -> (x_q, s_x, z_x)``: DynamicQuantizeLinear over [0, qmax] (127: reduce_range, its
    qparams by the reference formula, then the quantize kernel clamping to [0, 127])."""
    if qmax == 255:
        return q.dynamic_quantize_u8

    def run(x):
        if not np.all(np.isfinite(x)):
            raise ValueError("x: contains NaN or Inf; dynamic quantization needs finite values")
        s, z = dynamic_qparams(x.min(initial=0), x.max(initial=0), qmax)
        s_arr, z_arr = np.array([s], np.float32), np.array([z], np.int32)
        return q.quantize_f32(x, s_arr, z_arr, 0, "uint8", 0, qmax), s, z
    return run


@builder("conv2d_dynamic")
def build_conv2d_dynamic(ctx, node):
    """conv2d_dynamic -> dynamic_quantize_u8 + conv2d_u8s8_f32 on NHWC, bias added after."""
    layer = _layer_consts(ctx, node)
    if layer is None:
        return None
    q, x_node, _, w, s_w, bias = layer
    kk, _, cin, cout = w.shape
    pcw = ctx.packed_once("conv2d_dynamic", node,
                          lambda: q.pack_conv_weight_s8(np.ascontiguousarray(w)))
    _layer_check(node, _bound(q, kk * kk * cin, (-255, 255), pcw.gemm_weight, w), None)
    scale_w = _as_vector(s_w, cout)
    bias_f = None if bias is None else bias.astype(np.float32).reshape(-1)
    stride, pad = node.attrs["stride"], node.attrs["padding"]

    quantize = _dynamic_u8(q, 127 if node.attrs.get("reduce_range") else 255)

    def fn(x):
        xq, s_x, z_x = quantize(np.ascontiguousarray(x, np.float32))
        scale = np.multiply(np.float32(s_x), scale_w, dtype=np.float32)
        y = q.conv2d_u8s8_f32(xq, int(z_x), pcw, stride, pad, scale)
        if bias_f is not None:
            y = np.add(y, bias_f, dtype=np.float32)  # a separate add: no FMA, as specified
        return y

    weights = [_weight_record(node, "int8", w.size, pcw.nbytes, scale_w.nbytes +
                              (0 if bias_f is None else bias_f.nbytes))]
    inputs = [ctx.value(x_node, "nhwc")]
    impl = Impl("dynamic_quantize_u8 + conv2d_u8s8_f32 (NHWC)",
                "exact path; activation scale per call, padding holds z_x", fn, inputs, "nhwc",
                weights, "int8")
    _on_target(ctx, impl)
    w_f = _dequant_weight(w, scale_w)
    conv, mm = _conv_f32_nhwc(w_f, bias_f, stride, pad)
    alt = Impl("fp32 conv (NHWC)", "float version", conv, inputs, "nhwc",
               [_weight_record(node, "float32", w.size, mm.nbytes, 0)], "float")
    return impl, alt
