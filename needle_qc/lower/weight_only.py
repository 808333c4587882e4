"""Builders of weight-only ops: every weight dtype runs a kernel that decodes packed weights.

Linear: ``x [M, K] @ W [K, N]``. Conv: NHWC im2col rows ``(kh, kw, c)`` times the weight reshaped
to ``[kh * kw * C_in, C_out]`` (same row order). Kernels by weight dtype: float16 / bfloat16 ->
``gemm_f32_wf16`` / ``gemm_f32_wbf16``; int8 / uint8 -> ``gemm_f32_wint8`` (zero points folded
into ``q - z`` when that fits in int8, else applied in the kernel); int4 / uint4 ->
``gemm_f32_wint4`` on ``q - z`` when that fits in [-8, 7] (always for symmetric weights), else
``gemm_f32_wint8`` (one byte per weight, said in ``why``). No fp32 copy
of a weight is kept: the float version offered to :func:`~needle_qc.lower.driver.tune` dequantizes
lazily on its first call and is released when the kernel wins.

Target "cuda": float16 / bfloat16 / int4 weights run the CUDA kernels of the same names (their
fp32 sums run in the GPU's order: close to the CPU's, not bit-identical); the CUDA module has no
``gemm_f32_wint8``, so int8 / uint8 weights (and int4 stored one per byte) stay on the CPU's.
"""

import numpy as np

from needle_qc.lower.common import _weight_record
from needle_qc.lower.float_ops import F32Matmul, im2col_nhwc
from needle_qc.lower.program import Impl
from needle_qc.lower.registry import builder
from needle_qc.quantize.lowbit import bf16_to_float32, unpack_int4

PANEL = 16  # output columns per packed panel (csrc/quant/quant.h kPanelWidth)
CUDA_ORDER = "; fp32 sums in the GPU's order (close to the CPU's, not bit-identical)"


class NoKernel(Exception):
    """The kernel module lacks the GEMM a weight needs (the message names it)."""

# ----------------------------------------------------------------------------- weight parts

def _weight_only_arrays(ctx, node):
    arrays = [ctx.const(i) for i in node.inputs[1:]]
    if any(a is None for a in arrays):
        return None, None
    if node.attrs["has_bias"]:
        return arrays[:-1], arrays[-1].astype(np.float32)
    return arrays, None


def dequantized_weight(parts, attrs, k, red_axis):
    """fp32 weight of a weight-only op (same formula as the interpreter)."""
    from needle_qc.opset.quant_eval import dequantize_weight

    return np.asarray(dequantize_weight(parts, attrs, k, red_axis), np.float32)


class LazyF32Matmul:
    """:class:`F32Matmul` over a weight dequantized on first use (the float version for tuning).

    ``release()`` drops the fp32 copy again (tune calls it when the quantized kernel wins).
    """

    def __init__(self, make_weight, k, n):
        self.make_weight, self.k, self.n, self.mm = make_weight, k, n, None
        self.nbytes = 4 * k * n

    def __call__(self, a2d):
        if self.mm is None:
            self.mm = F32Matmul(self.make_weight().reshape(self.k, self.n))
        return self.mm(a2d)

    def release(self):
        self.mm = None


# ----------------------------------------------------------------------------- packing

def _padded(n, panel=PANEL):
    return -(-n // panel) * panel


def _group_layout(attrs, cin):
    """``(kernel group size, channel padding)`` for groups along C_in of a flattened weight.

    Rows of ``[kh * kw * C_in, N]`` run over c fastest, so groups of ``g`` channels are contiguous
    runs of ``g`` rows when ``g`` divides C_in; one group per (kh, kw) when ``C_in <= g``;
    otherwise C_in is padded with zero channels up to a multiple of ``g``.
    """
    g = attrs["group_size"]
    if attrs["granularity"] != "per_group" or cin % g == 0:
        return g, 0
    if cin < g:
        return cin, 0
    return g, (-cin) % g


def _flat_qparams(arr, attrs, n):
    """Scale / zero point as the kernel wants them: ``[N]`` or ``[groups, N]`` (per_group)."""
    arr = np.asarray(arr)
    if attrs["granularity"] == "per_group":
        return np.ascontiguousarray(arr.reshape(-1, n))
    return np.ascontiguousarray(np.broadcast_to(arr.reshape(-1), (n,)))


def _integer_parts(parts, attrs, k, red_axis, pad):
    """``(q [K', N] int, scales, zero points or None, kernel group size)`` from the op inputs."""
    wdt = attrs["weight_dtype"]
    wq = parts[0]
    if wdt in ("int4", "uint4"):
        wq = unpack_int4(wq, k, axis=red_axis, signed=wdt == "int4")
    n = wq.shape[-1]
    zp = parts[2] if attrs["has_zero_point"] else None
    if pad:  # extra channels hold q = z (0 without zero points): they decode to exactly 0
        widths = [(0, pad) if i == red_axis % wq.ndim else (0, 0) for i in range(wq.ndim)]
        wq = np.pad(wq, widths) if zp is None else _pad_with_zero_point(wq, zp, widths, attrs)
    scales = _flat_qparams(np.asarray(parts[1], np.float32), attrs, n)
    zp = None if zp is None else _flat_qparams(zp, attrs, n).astype(np.int32)
    return wq.reshape(-1, n), scales, zp


def _pad_with_zero_point(wq, zp, widths, attrs):
    """Pad the channel axis with each group's zero point (so padded weights decode to 0)."""
    g = attrs["group_size"]
    z = np.repeat(np.asarray(zp), g, axis=2)
    padded = np.pad(wq, widths)
    cin = wq.shape[2]
    padded[:, :, cin:, :] = z[:, :, cin:padded.shape[2], :]
    return padded


def _pack(q, parts, attrs, k, red_axis, pad, kernel_g, panel=PANEL):
    """``(packed, gemm, payload bytes, qparam bytes, why)`` for a weight of any dtype.

    ``panel``: the column padding of ``q``'s packed layouts (1: none, the CUDA module's).
    Raises :class:`NoKernel` when ``q`` has no GEMM for the weight.
    """
    wdt = attrs["weight_dtype"]
    n = parts[0].shape[-1]
    if wdt in ("float16", "bfloat16"):
        w = parts[0]
        w32 = bf16_to_float32(w) if w.dtype == np.uint16 else w.astype(np.float32)
        w32 = np.ascontiguousarray(w32.reshape(-1, n))
        payload = 2 * len(w32) * _padded(n, panel)
        if wdt == "float16":
            return q.pack_weight_f16(w32), q.gemm_f32_wf16, payload, 0, ""
        return q.pack_weight_bf16(w32), q.gemm_f32_wbf16, payload, 0, ""
    wq, scales, zp = _integer_parts(parts, attrs, k, red_axis, pad)
    rows = len(wq)
    g = kernel_g if attrs["granularity"] == "per_group" else 0
    if wdt in ("int4", "uint4"):
        d = wq.astype(np.int32) - (0 if zp is None else _rows_of(zp, g, rows))
        if d.min(initial=0) >= -8 and d.max(initial=0) <= 7:
            pw = q.pack_weight_int4(np.ascontiguousarray(d.astype(np.int8)), scales, g)
            payload = rows * -(-_padded(n, panel) // 2)  # two columns per byte, rows whole
            return pw, q.gemm_f32_wint4, payload, pw.nbytes - payload, ""
    if not hasattr(q, "pack_weight_int8"):
        raise NoKernel("gemm_f32_wint8")
    if zp is not None:  # fold the zero point when q - z fits in int8 (uint8 symmetric: z = 128)
        d = wq.astype(np.int32) - _rows_of(zp, g, rows)
        if d.min(initial=0) >= -128 and d.max(initial=0) <= 127:
            wq, zp = d.astype(np.int8), None
    pw = q.pack_weight_int8(np.ascontiguousarray(wq), scales, zp, g)
    payload = rows * _padded(n, panel)
    why = "" if wdt in ("int8", "uint8") else \
        f"; {wdt} q - z outside [-8, 7] (affine): stored one per byte"
    return pw, q.gemm_f32_wint8, payload, pw.nbytes - payload, why


def _rows_of(zp, g, rows):
    """Per-row view of a ``[N]`` / ``[groups, N]`` zero point (groups of ``g`` rows)."""
    if g == 0:
        return zp.reshape(1, -1)
    return np.repeat(zp, g, axis=0)[:rows]


def _packed_for_target(ctx, what, node, pack):
    """``(pack(q, panel) result, device, fallback reason)`` made once with the target's kernels.

    On CUDA a weight whose GEMM the CUDA module lacks (:class:`NoKernel`) is packed for the
    CPU's kernels instead; None when no kernel module is available at all.
    """
    if ctx.on_cuda:
        try:
            return ctx.packed_once(what, node, lambda: pack(ctx.kernels, 1)), "cuda", ""
        except NoKernel as missing:
            fallback = f"no CUDA kernel for {missing}"
    else:
        fallback = ""
    q = ctx.cpu_kernels
    if q is None:
        return None, "cpu", fallback
    return ctx.packed_once(f"{what} (cpu)", node, lambda: pack(q, PANEL)), "cpu", fallback


# ----------------------------------------------------------------------------- builders

@builder("linear_weight_only")
def build_linear_weight_only(ctx, node):
    """Every weight dtype -> a weight-only GEMM (weights decoded in registers)."""
    parts, bias = _weight_only_arrays(ctx, node)
    if parts is None:
        return None
    attrs, wdt = node.attrs, node.attrs["weight_dtype"]
    k = node.inputs[0].meta["shape"][-1]
    n = parts[0].shape[1]
    inputs = [ctx.value(node.inputs[0], "logical")]
    mm = LazyF32Matmul(lambda: dequantized_weight(parts, attrs, k, 0), k, n)
    alt = Impl("fp32 gemm (ndl.cpu), weight dequantized at first use", "float version",
               _linear(mm, bias), inputs,
               weights=[_weight_record(node, "float32", k * n, mm.nbytes, 0)])
    packed, device, fallback = _packed_for_target(
        ctx, "linear_weight_only", node,
        lambda q, panel: _pack(q, parts, attrs, k, 0, 0, attrs["group_size"], panel))
    if packed is None:
        alt.why = "native kernels not built: fp32 weight made at first use"
        return alt
    pw, gemm, payload, qbytes, note = packed
    note += CUDA_ORDER if device == "cuda" else ""

    def fn(x):
        y = gemm(np.ascontiguousarray(x.reshape(-1, k), np.float32), pw, bias)
        return y.reshape(x.shape[:-1] + (n,))

    weights = [_weight_record(node, wdt, k * n, payload,
                              qbytes + (0 if bias is None else bias.nbytes))]
    impl = Impl(gemm.__name__, "weight-only kernel: weights converted in registers" + note, fn,
                inputs, weights=weights, kind="int8", device=device, fallback=fallback)
    return impl, alt


def _linear(mm, bias):
    def run(x):
        y = mm(x.reshape(-1, mm.k))
        if bias is not None:
            np.add(y, bias, out=y)
        return y.reshape(x.shape[:-1] + (mm.n,))

    run.release = mm.release  # tune() drops the fp32 copy when the kernel is kept
    return run


@builder("conv2d_weight_only")
def build_conv2d_weight_only(ctx, node):
    """NHWC im2col (strided view) + the weight-only GEMM of the weight's dtype."""
    parts, bias = _weight_only_arrays(ctx, node)
    if parts is None:
        return None  # the op table's evaluation (the interpreter's numbers)
    attrs, wdt = node.attrs, node.attrs["weight_dtype"]
    cin = node.inputs[0].meta["shape"][1]
    kh, kw, _, cout = (parts[0].shape[0], parts[0].shape[1], cin, parts[0].shape[3])
    kernel_g, pad = _group_layout(attrs, cin) if wdt not in ("float16", "bfloat16") else (0, 0)
    packed, device, fallback = _packed_for_target(
        ctx, "conv2d_weight_only", node,
        lambda q, panel: _pack(q, parts, attrs, cin, 2, pad, kernel_g, panel))
    if packed is None:
        return None  # no native kernels: the op table's evaluation
    pw, gemm, payload, qbytes, note = packed
    note += CUDA_ORDER if device == "cuda" else ""
    stride, padding = attrs["stride"], attrs["padding"]

    def conv(x):
        if pad:
            x = np.pad(x, ((0, 0), (0, 0), (0, 0), (0, pad)))
        cols, (nb, oh, ow) = im2col_nhwc(x, kh, stride, padding)
        y = gemm(np.ascontiguousarray(cols, np.float32), pw, bias)
        return y.reshape(nb, oh, ow, cout)

    weights = [_weight_record(node, wdt, kh * kw * cin * cout, payload,
                              qbytes + (0 if bias is None else bias.nbytes))]
    why = "weight-only kernel on im2col rows: weights converted in registers" + note
    if pad:
        why += f"; C_in padded by {pad} to whole groups"
    return Impl(f"im2col + {gemm.__name__}", why, conv, [ctx.value(node.inputs[0], "nhwc")],
                "nhwc", weights, kind="int8", device=device, fallback=fallback)
