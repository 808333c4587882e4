"""``multi_head_attention`` with the numbers of Needle's own MultiHeadAttention, bit for bit: one
fused C++ call (:mod:`needle_qc._quant_cpu`'s ``attention_f32``) where it reproduces the NDArray
backend, else the backend's own kernels (batched GEMM, vector exp, pairwise row sums) called one
by one, without building an autograd graph of ~15 Tensors per call."""

import math

import numpy as np

from needle_qc.lower.common import _kernels
from needle_qc.lower.float_ops import _ndl_module
from needle_qc.lower.program import Impl
from needle_qc.lower.registry import builder


class _Backend:
    """numpy <-> the C++ NDArray backend's flat float32 arrays."""

    def __init__(self, mod):
        self.mod = mod

    def upload(self, x):
        x = np.ascontiguousarray(x, np.float32)
        a = self.mod.Array(x.size)
        self.mod.from_numpy(x, a)
        return a

    def view(self, a, shape):
        strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        return self.mod.to_numpy(a, shape, strides, 0)

    def bmm(self, a, b):
        """(count, m, n) @ (count, n, p) with Needle's matmul_batched."""
        count, m, n = a.shape
        p = b.shape[2]
        out = self.mod.Array(count * m * p)
        self.mod.matmul_batched(self.upload(a), self.upload(b), out, count, m, n, p)
        return self.view(out, (count, m, p))

    def exp(self, x):
        out = self.mod.Array(x.size)
        self.mod.ewise_exp(self.upload(x), out)
        return self.view(out, x.shape)

    def row_sums(self, x):
        """Sums over the last axis, kept as a size-1 axis (Needle's pairwise order)."""
        rows = x.size // x.shape[-1]
        out = self.mod.Array(rows)
        self.mod.reduce_sum(self.upload(x), out, x.shape[-1])
        return self.view(out, x.shape[:-1] + (1,))


def causal_mask(tq, tk):
    """Needle's mask, as it builds it: -float32 max above the shifted diagonal, -0.0 elsewhere."""
    return -np.finfo(np.float32).max * np.triu(np.ones((tq, tk), np.float32), tk - tq + 1)


def attention_f32(backend, q, k, v, causal):
    """(result, probs) of softmax(q k^T / sqrt(D) [+ mask]) v for (B, H, T, D) arrays, in the
    operation order of Needle's MultiHeadAttention (IEEE +, -, / in numpy are the same bits)."""
    b, h, tq, d = q.shape
    tk = k.shape[2]
    count = b * h
    logits = backend.bmm(q.reshape(count, tq, d), np.swapaxes(k.reshape(count, tk, d), 1, 2))
    logits = logits / np.float32(math.sqrt(d))
    if causal:
        logits = logits + causal_mask(tq, tk)
    e = backend.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = e / backend.row_sums(e)
    result = backend.bmm(probs, v.reshape(count, tk, d))
    return result.reshape(b, h, tq, d), probs.reshape(b, h, tq, tk)


FUSED = "attention (C++ fused, Needle's bits)", "one call in Needle's operation order"
UNFUSED = "attention (NDArray kernels)", "Needle's kernels without its autograd graph"


def fused_attention_f32(causal, backend, dims=None):
    """``(run(q, k, v), (kernel, why))``: the fused kernel where it gives Needle's bits for
    these shapes, else :func:`attention_f32` on ``backend``. ``dims`` (tq, tk, d) known at build
    time decide once (the label says which runs); None decides on each call's shapes. A call
    whose logits or v hold a NaN goes op by op (the kernel returns None: numpy picks the NaN)."""
    kernels = _kernels()

    def unfused(q, k, v):
        return attention_f32(backend, q, k, v, causal)

    if kernels is None or not hasattr(kernels, "attention_f32"):
        return unfused, UNFUSED
    supported = kernels.attention_f32_supported

    def fused(q, k, v):
        out = kernels.attention_f32(q, k, v, causal)
        return unfused(q, k, v) if out is None else out

    def per_call(q, k, v):
        ok = supported(*q.shape[:3], k.shape[2], q.shape[3])
        return fused(q, k, v) if ok else unfused(q, k, v)

    if dims is None:
        return per_call, (FUSED[0] + " where supported", FUSED[1])
    return (fused, FUSED) if supported(1, 1, *dims) else (unfused, UNFUSED)


def _static_dims(node):
    """(tq, tk, d) of the node when they are plain ints (the batch may be symbolic), else None."""
    q, k = (i.meta.get("shape") or () for i in node.inputs[:2])
    dims = (q[2], k[2], q[3]) if len(q) == 4 and len(k) == 4 else ()
    return dims if dims and all(isinstance(x, int) for x in dims) else None


@builder("multi_head_attention")
def build_attention(ctx, node):
    mod = _ndl_module()
    if mod is None or any(ctx.const(i) is not None for i in node.inputs) or \
            node.meta.get("dtype") != ("float32", "float32"):
        return None
    causal = bool(node.attrs.get("causal", False))
    run, (kernel, why) = fused_attention_f32(causal, _Backend(mod), _static_dims(node))
    return Impl(kernel, why, run, [ctx.value(i, "logical") for i in node.inputs])
