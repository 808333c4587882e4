"""Attention modules (hw4_extra API): MultiHeadAttention, AttentionLayer, Transformer."""
import math

import numpy as np

import needle.init as init
from needle import ops
from needle.autograd import Tensor

from .nn_basic import Dropout, LayerNorm1d, Linear, ReLU
from .nn_module import Module
from .nn_sequence import Embedding

__all__ = ["MultiHeadAttention", "AttentionLayer", "TransformerLayer", "Transformer"]


def _constant(array, like):
    return Tensor(array, device=like.device, dtype=like.dtype, requires_grad=False)


class MultiHeadAttention(Module):
    """softmax(Q K^T / sqrt(D) [+ causal mask]) V on (B, H, T, D) tensors, dropout on probs."""

    def __init__(self, *, dropout=0.0, causal=False, device=None, dtype="float32"):
        super().__init__()
        self.device, self.dtype, self.causal = device, dtype, causal
        self.dropout = Dropout(dropout)

    def create_causal_mask(self, i, j, device):
        """(1, 1, i, j) array: 0 where key <= query + (j - i), -float32 max above."""
        mask = -np.finfo(np.float32).max * np.triu(np.ones((1, 1, i, j), np.float32), j - i + 1)
        return mask

    def matmul(self, a, b_transpose):
        """Batched a (..., m, n) @ b_transpose(..., p, n)^T -> (..., m, p) (course helper)."""
        return ops.matmul(a, ops.transpose(b_transpose))

    def softmax(self, logit):
        """Softmax over the last axis, shifted by the (constant) row max for stability."""
        shape = logit.shape
        row_max = logit.realize_cached_data().max(axis=len(shape) - 1, keepdims=True)
        shift = ops.broadcast_to(_constant(row_max, logit), shape)
        e = ops.exp(logit - shift)
        denom = ops.reshape(ops.summation(e, axes=(len(shape) - 1,)), (*shape[:-1], 1))
        return e / ops.broadcast_to(denom, shape)

    def forward(self, q, k, v):
        """q (B, H, Tq, D), k and v (B, H, Tk, D) -> (result (B, H, Tq, D), probs)."""
        b, h, tq, d = q.shape
        tk = k.shape[2]
        if k.shape != (b, h, tk, d) or v.shape != k.shape:
            raise ValueError(f"MultiHeadAttention: q {q.shape}, k {k.shape}, v {v.shape} "
                             "must share (B, H, *, D) and k/v must match")
        logits = self.matmul(q, k) / math.sqrt(d)
        if self.causal:
            mask = _constant(self.create_causal_mask(tq, tk, q.device), q)
            logits = logits + ops.broadcast_to(mask, logits.shape)
        probs = self.dropout(self.softmax(logits))
        result = self.matmul(probs, ops.transpose(v, (2, 3)))
        return result, probs


class AttentionLayer(Module):
    """Pre-norm multi-head attention on (B, T, F): LayerNorm -> projections -> MHA -> out."""

    def __init__(self, q_features, num_head, dim_head, *, k_features=None, v_features=None,
                 out_features=None, dropout=0.0, causal=True, device=None, dtype="float32"):
        super().__init__()
        k_features = k_features or q_features
        v_features = v_features or q_features
        out_features = out_features or q_features
        self.num_head, self.dim_head = num_head, dim_head
        kw = dict(device=device, dtype=dtype)
        self.prenorm_q = LayerNorm1d(q_features, **kw)
        self.prenorm_k = LayerNorm1d(k_features, **kw)
        self.prenorm_v = LayerNorm1d(v_features, **kw)
        inner = num_head * dim_head
        self.q_projection = Linear(q_features, inner, bias=False, **kw)
        self.k_projection = Linear(k_features, inner, bias=False, **kw)
        self.v_projection = Linear(v_features, inner, bias=False, **kw)
        self.attn = MultiHeadAttention(dropout=dropout, causal=causal, **kw)
        self.out_projection = Linear(inner, out_features, bias=False, **kw)

    def _heads(self, x, norm, projection):
        """(B, T, F) -> (B, H, T, D)."""
        b, t, _ = x.shape
        y = ops.reshape(projection(norm(x)), (b, t, self.num_head, self.dim_head))
        return ops.transpose(y, (1, 2))

    def forward(self, q, k=None, v=None):
        k = q if k is None else k
        v = q if v is None else v
        if len(q.shape) != 3:
            raise ValueError(f"AttentionLayer: expected (B, T, F) input, got {q.shape}")
        b, t, _ = q.shape
        out, _ = self.attn(self._heads(q, self.prenorm_q, self.q_projection),
                           self._heads(k, self.prenorm_k, self.k_projection),
                           self._heads(v, self.prenorm_v, self.v_projection))
        merged = ops.reshape(ops.transpose(out, (1, 2)), (b, t, self.num_head * self.dim_head))
        return self.out_projection(merged)


class TransformerLayer(Module):
    """x += Dropout(Attn(x)); x += Dropout(L2(Dropout(ReLU(L1(LN(x))))))."""

    def __init__(self, q_features, num_head, dim_head, hidden_size, *, dropout=0.0, causal=True,
                 device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.attention = AttentionLayer(q_features, num_head, dim_head, dropout=dropout,
                                        causal=causal, **kw)
        self.dropout = Dropout(dropout)
        self.layernorm = LayerNorm1d(q_features, **kw)
        self.linear1 = Linear(q_features, hidden_size, **kw)
        self.relu = ReLU()
        self.linear2 = Linear(hidden_size, q_features, **kw)

    def forward(self, x):
        x = x + self.dropout(self.attention(x))
        hidden = self.dropout(self.relu(self.linear1(self.layernorm(x))))
        return x + self.dropout(self.linear2(hidden))


class Transformer(Module):
    """Learned positional embedding + ``num_layers`` TransformerLayers.

    forward(x (T, B, E), or (B, T, E) if batch_first) -> (same shape, zeros_like state).
    """

    def __init__(self, embedding_size, hidden_size, num_layers, *, num_head=8, dim_head=32,
                 dropout=0.0, causal=True, device=None, dtype="float32", batch_first=False,
                 sequence_len=2048):
        super().__init__()
        self.batch_first, self.sequence_len = batch_first, sequence_len
        kw = dict(device=device, dtype=dtype)
        self.positional_embedding = Embedding(sequence_len, embedding_size, **kw)
        self.layers = [
            TransformerLayer(embedding_size, num_head, dim_head, hidden_size, dropout=dropout,
                             causal=causal, **kw)
            for _ in range(num_layers)
        ]

    def _positions(self, x):
        """(B, T, E) positional embeddings for batch-first x."""
        b, t, _ = x.shape
        if t > self.sequence_len:
            raise ValueError(f"Transformer: sequence length {t} exceeds sequence_len "
                             f"{self.sequence_len}")
        ids = np.broadcast_to(np.arange(t, dtype=np.float32)[:, None], (t, b))
        pos = self.positional_embedding(_constant(np.ascontiguousarray(ids), x))
        return ops.transpose(pos, (0, 1))

    def forward(self, x, h=None):
        if not self.batch_first:
            x = ops.transpose(x, (0, 1))
        x = x + self._positions(x)
        for layer in self.layers:
            x = layer(x)
        if not self.batch_first:
            x = ops.transpose(x, (0, 1))
        return x, init.zeros_like(x)
