"""``multi_head_attention`` on the kernels Needle's own MultiHeadAttention reaches (batched GEMM,
vector exp, pairwise row sums of the C++ NDArray backend), called directly: its numbers bit for
bit, without building an autograd graph of ~15 Tensors per call."""

import math

import numpy as np

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


@builder("multi_head_attention")
def build_attention(ctx, node):
    mod = _ndl_module()
    if mod is None or any(ctx.const(i) is not None for i in node.inputs) or \
            node.meta.get("dtype") != ("float32", "float32"):
        return None
    backend, causal = _Backend(mod), bool(node.attrs.get("causal", False))
    return Impl("attention (NDArray kernels)", "Needle's kernels without its autograd graph",
                lambda q, k, v: attention_f32(backend, q, k, v, causal),
                [ctx.value(i, "logical") for i in node.inputs])
