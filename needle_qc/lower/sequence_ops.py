"""Builders of the sequence-model ops (embedding, layer norm, split/stack/transpose, matmul):
native fp32 kernels or numpy views, each equal bit for bit to the op table's evaluation."""

import numpy as np

from needle_qc import opset
from needle_qc.lower.common import _weight_record
from needle_qc.lower.float_ops import F32Matmul
from needle_qc.lower.program import Impl
from needle_qc.lower.registry import builder

# ----------------------------------------------------------------------------- helpers


def _is_f32(node):
    return node.meta.get("dtype") == "float32"


def _concrete(shape, state):
    """``shape`` with each symbolic dim (k*N) resolved at the batch of the current call."""
    return opset.resolve_shape(shape, state["batch"])


def _logical(ctx, node):
    return [ctx.value(i, "logical") for i in node.inputs]


# ----------------------------------------------------------------------------- native kernels


@builder("embedding")
def build_embedding(ctx, node):
    """``table[ids]`` as one row gather (Needle multiplies a one-hot matrix by the table)."""
    kernels = ctx.cpu_kernels
    table = ctx.const(node.inputs[1])
    if not hasattr(kernels, "embedding_f32") or table is None or table.dtype != np.float32 \
            or table.ndim != 2 or not _is_f32(node):
        return None
    table = np.ascontiguousarray(table)
    return Impl("embedding gather (C++)", "row lookup instead of a one-hot matmul",
                lambda ids, t: kernels.embedding_f32(ids, t), _logical(ctx, node),
                weights=[_weight_record(node, "float32", table.size, table.nbytes, 0)])


@builder("layer_norm")
def build_layer_norm(ctx, node):
    """Needle's LayerNorm1d in one pass per row, in its exact float32 order (C++)."""
    kernels = ctx.cpu_kernels
    w, b = ctx.const(node.inputs[1]), ctx.const(node.inputs[2])
    if not hasattr(kernels, "layer_norm_f32") or w is None or b is None or not _is_f32(node) \
            or w.dtype != np.float32 or b.dtype != np.float32:
        return None
    eps = float(node.attrs.get("eps", 1e-5))
    return Impl("layer norm (C++)", "fused row pass, Needle's order",
                lambda x, w, b: kernels.layer_norm_f32(x, w, b, eps), _logical(ctx, node))


@builder("matmul")
def build_matmul(ctx, node):
    """``x @ w`` with a constant fp32 ``w``: the NDArray GEMM Needle's matmul calls, weight
    uploaded once (an unrolled LSTM's steps share it)."""
    w = ctx.const(node.inputs[1])
    if w is None or w.ndim != 2 or w.dtype != np.float32 or not _is_f32(node) \
            or ctx.const(node.inputs[0]) is not None:
        return None
    mm = ctx.packed_once("f32 matmul", node, lambda: F32Matmul(w), params=[node.inputs[1]])

    def run(x):
        return mm(x.reshape(-1, mm.k)).reshape(x.shape[:-1] + (mm.n,))

    return Impl(mm.kernel, "matmul by a constant", run,
                [ctx.value(node.inputs[0], "logical")])


# ----------------------------------------------------------------------------- views / copies


@builder("split")
def build_split(ctx, node):
    """The parts as views of the input (no copy); only for a tuple that tuple_get_item reads
    (another consumer expects the op table's tuple)."""
    if any(user.op != "tuple_get_item" for user in node.users):
        return None
    axis = node.attrs["axis"]
    return Impl("split (views)", "no data movement", lambda x: tuple(np.moveaxis(x, axis, 0)),
                _logical(ctx, node), kind="layout")


@builder("tuple_get_item")
def build_tuple_get_item(ctx, node):
    index = node.attrs["index"]

    def run(parts):
        part = parts[index]
        return part if isinstance(part, np.ndarray) else part.numpy()  # a Needle tuple

    return Impl("tuple item", "no data movement", run, _logical(ctx, node), kind="layout")


@builder("stack")
def build_stack(ctx, node):
    axis = node.attrs["axis"]
    return Impl("stack (one copy)", "single copy", lambda *xs: np.stack(xs, axis),
                _logical(ctx, node), kind="layout")


@builder("transpose")
def build_transpose(ctx, node):
    axes = node.attrs.get("axes")
    i, j = (-2, -1) if axes is None else tuple(axes)
    return Impl("transpose (view)", "no data movement", lambda x: np.swapaxes(x, i, j),
                _logical(ctx, node), kind="layout")


@builder("broadcast_to")
def build_broadcast_to(ctx, node):
    shape, state = node.attrs["shape"], ctx.state
    if ctx.const(node.inputs[0]) is None:
        return Impl("broadcast (view)", "no data movement",
                    lambda x: np.broadcast_to(x, _concrete(shape, state)), _logical(ctx, node),
                    kind="layout")
    views = {}  # batch -> (input, its read-only view): a constant (a positional-id table) is
    # broadcast once per batch size instead of once per call (~5 us of a 140 us transformer)

    def run(x):
        hit = views.get(state["batch"])
        if hit is None or hit[0] is not x:
            hit = views[state["batch"]] = (x, np.broadcast_to(x, _concrete(shape, state)))
        return hit[1]

    return Impl("broadcast (view)", "no data movement; a constant's view kept per batch size",
                run, _logical(ctx, node), kind="layout")


@builder("full")
def build_full(ctx, node):
    shape, value, state = node.attrs["shape"], node.attrs["value"], ctx.state
    dtype = np.dtype(node.attrs["dtype"])
    return Impl("full", "constant fill", lambda: np.full(_concrete(shape, state), value, dtype),
                [], kind="layout")

