"""IR op rows for graph structure and the high-level ops (linear, conv2d, batch_norm...)."""

import math

from needle_qc.errors import IRError
from needle_qc.opset.activations import apply_to_tensor
from needle_qc.opset.table import (
    Traits,
    _conv_out,
    _elementwise_rule,
    _meta,
    _needle,
    _row,
    make_dim,
    normalize_shape,
    shape_size,
    unary_rule,
)

# ----------------------------------------------------------------------------- shape rules

def conv2d_rule(metas, attrs):
    """NCHW x, (K,K,Cin,Cout) w, optional (Cout,) bias -> NCHW output."""
    (x, dt), (w, _) = _meta(metas, 0), _meta(metas, 1)
    if len(x) != 4 or len(w) != 4 or x[1] != w[2] or w[0] != w[1]:
        raise IRError(f"conv2d: bad shapes x{x} w{w}; want NCHW and (K,K,{x[1]},Cout)")
    _check_bias(metas, w[3], "conv2d")
    s, p = attrs["stride"], attrs["padding"]
    h, wd = (_conv_out(x[i], w[0], s, p, "conv2d") for i in (2, 3))
    return (x[0], w[3], h, wd), dt


def _check_bias(metas, out_features, op):
    if len(metas) < 3:
        return
    b, _ = _meta(metas, 2)
    if shape_size(b) != (out_features, 0) or (b and b[-1] != out_features):
        raise IRError(f"{op}: bias shape {b} does not match {out_features} outputs")


def linear_rule(metas, attrs):
    """x (..., in) @ w (in, out) + b (out,) or (1, out) -> (..., out)."""
    (x, dt), (w, _) = _meta(metas, 0), _meta(metas, 1)
    if len(w) != 2 or not x or x[-1] != w[0]:
        raise IRError(f"linear: x{x} does not match weight{w} (in, out)")
    _check_bias(metas, w[1], "linear")
    return x[:-1] + (w[1],), dt


def batch_norm_rule(metas, attrs):
    """Normalizes over channels: dims=1 (N, C) or dims=2 (N, C, H, W)."""
    x, dt = _meta(metas, 0)
    if attrs["dims"] not in (1, 2) or len(x) != {1: 2, 2: 4}[attrs["dims"]]:
        raise IRError(f"batch_norm(dims={attrs['dims']}): bad input shape {x}")
    for i in range(1, 5):
        if shape_size(_meta(metas, i)[0]) != (x[1], 0):
            raise IRError(f"batch_norm: input {i} shape {metas[i]['shape']} != ({x[1]},)")
    return x, dt


def layer_norm_rule(metas, attrs):
    """Normalizes each row over the last dim."""
    x, dt = _meta(metas, 0)
    for i in (1, 2):
        if shape_size(_meta(metas, i)[0]) != (x[-1], 0):
            raise IRError(f"layer_norm: input {i} shape {metas[i]['shape']} != ({x[-1]},)")
    return x, dt


def embedding_rule(metas, attrs):
    """Integer ids (any shape) -> ids.shape + (embedding_dim,)."""
    (x, _), (w, dt) = _meta(metas, 0), _meta(metas, 1)
    if len(w) != 2:
        raise IRError(f"embedding: weight must be (num, dim), got {w}")
    return x + (w[1],), dt


def attention_rule(metas, attrs):
    """q (B,H,Tq,D), k and v (B,H,Tk,D) -> (result (B,H,Tq,D), probs (B,H,Tq,Tk))."""
    (q, dt), (k, _), (v, _) = (_meta(metas, i) for i in range(3))
    if len(q) != 4 or k != v or k[:2] != q[:2] or k[3] != q[3]:
        raise IRError(f"multi_head_attention: bad shapes q{q} k{k} v{v}")
    return [(q, dt), (q[:3] + (k[2],), dt)]


def full_rule(metas, attrs):
    """A tensor of one value; its shape may contain N."""
    return normalize_shape(attrs["shape"]), attrs["dtype"]


def reshape_rule(metas, attrs):
    """Target shape; one ``-1`` is inferred; element counts must agree (symbolically)."""
    shape, dt = _meta(metas, 0)
    target = list(attrs["shape"])
    size_k, size_p = shape_size(shape)
    if target.count(-1) > 1:
        raise IRError(f"reshape: at most one -1 in {tuple(target)}")
    known = [d for d in target if d != -1]
    k, p = shape_size(known)
    if -1 in target:
        if k == 0 or size_k % k or size_p < p:
            raise IRError(f"reshape: cannot infer -1 reshaping {shape} to {tuple(target)}")
        target[target.index(-1)] = make_dim(size_k // k, size_p - p)
        k, p = size_k, size_p
    if (k, p) != (size_k, size_p):
        raise IRError(f"reshape: {shape} and {tuple(target)} have different sizes")
    return normalize_shape(target), dt


# ----------------------------------------------------------------------------- evaluation

def _make_module(class_name, **fields):
    # A module built without its constructor: no RNG draws, no parameter allocation.
    nn = _needle().nn
    cls = getattr(nn, class_name)
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    module.__dict__.update(fields)
    module.eval()
    return module


def _eval_linear(inputs, attrs, ctx):
    x, w, *b = inputs
    linear = _make_module("Linear", in_features=w.shape[0], out_features=w.shape[1],
                          weight=w, bias=b[0] if b else None)
    return linear(x)


def _eval_conv2d(inputs, attrs, ctx):
    x, w, *b = inputs
    k, stride, padding = w.shape[0], attrs["stride"], attrs["padding"]
    if padding == k // 2:
        conv = _make_module("Conv", in_channels=w.shape[2], out_channels=w.shape[3],
                            kernel_size=k, stride=stride, padding=padding, weight=w,
                            bias=b[0] if b else None)
        return conv(x)
    return _conv2d_by_primitives(x, w, b[0] if b else None, stride, padding)


def _with_activation(evaluate):
    # fuse-activations sets e.g. activation="relu" on a layer; absent (None) means none
    def run(inputs, attrs, ctx):
        return apply_to_tensor(attrs.get("activation"), _needle().ops,
                               evaluate(inputs, attrs, ctx))
    return run


def _eval_add_relu(inputs, attrs, ctx):
    ops = _needle().ops
    return ops.relu(ops.add(*inputs))


def _conv2d_by_primitives(x, w, b, stride, padding):
    ops = _needle().ops
    nhwc = ops.transpose(ops.transpose(x, (1, 2)), (2, 3))
    out = ops.conv(nhwc, w, stride=stride, padding=padding)
    if b is not None:
        out = out + ops.broadcast_to(ops.reshape(b, (1, 1, 1, w.shape[3])), out.shape)
    return ops.transpose(ops.transpose(out, (2, 3)), (1, 2))


def _eval_batch_norm(inputs, attrs, ctx):
    x, weight, bias, mean, var = inputs
    cls = "BatchNorm1d" if attrs["dims"] == 1 else "BatchNorm2d"
    bn = _make_module(cls, dim=weight.shape[-1], eps=attrs["eps"], momentum=0.1,
                      weight=weight, bias=bias, running_mean=mean, running_var=var,
                      device=x.device, dtype=x.dtype)
    return bn(x)


def _eval_layer_norm(inputs, attrs, ctx):
    x, weight, bias = inputs
    ln = _make_module("LayerNorm1d", dim=weight.shape[-1], eps=attrs["eps"], weight=weight,
                      bias=bias, device=x.device, dtype=x.dtype)
    return ln(x)


def _eval_embedding(inputs, attrs, ctx):
    x, weight = inputs
    emb = _make_module("Embedding", num_embeddings=weight.shape[0],
                       embedding_dim=weight.shape[1], weight=weight, device=x.device,
                       dtype=weight.dtype)
    return emb(x)


def _eval_attention(inputs, attrs, ctx):
    q = inputs[0]
    dropout = _make_module("Dropout", p=0.0)
    attn = _make_module("MultiHeadAttention", causal=attrs["causal"], dropout=dropout,
                        device=q.device, dtype=q.dtype)
    result, probs = attn(*inputs)
    return _needle().ops.make_tuple(result, probs)


def _eval_reshape(inputs, attrs, ctx):
    (x,) = inputs
    shape = list(attrs["shape"])
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = math.prod(x.shape) // known if known else 0
    return _needle().ops.reshape(x, tuple(shape))


def _eval_full(inputs, attrs, ctx):
    return _needle().init.constant(*attrs["shape"], c=attrs["value"], device=ctx.device,
                                   dtype=attrs["dtype"], requires_grad=False)


def _eval_param(inputs, attrs, ctx):
    return ctx.param(attrs["tensor"])


# ----------------------------------------------------------------------------- the rows

# Graph structure
_row("placeholder", 0, {}, None, "A graph input; its meta gives shape and dtype.",
     traits=Traits(kind="structure"))
_row("param", 0, {"tensor": "str"}, None,
     "A module-owned tensor (weight, bias, running stats) from Graph.tensors.", _eval_param,
     traits=Traits(kind="tensor"))
_row("constant", 0, {"tensor": "str"}, None,
     "A tensor created inside forward, stored in Graph.tensors.", _eval_param,
     traits=Traits(kind="tensor"))
_row("full", 0, {"shape": "shape", "value": "float", "dtype": "str"}, full_rule,
     "A tensor filled with one value whose shape may contain N (e.g. zero hidden state).",
     _eval_full)
_row("output", "variadic", {"structure": "any"}, None,
     "The graph's results; ``structure`` nests input indices as the model returned them.",
     traits=Traits(kind="structure"))

# High-level ops (what passes reason about)
_row("linear", (2, 3), {"activation": "str?"}, linear_rule,
     "x @ w + b (Needle nn.Linear). Optional activation='relu' applies ReLU after.",
     _with_activation(_eval_linear),
     traits=Traits(kind="layer", quantizable="weight", weight_input=1, out_axis=1,
                   reduction_axis=0, module_type="Linear", module_class="Linear"))
_row("conv2d", (2, 3), {"stride": "int", "padding": "int", "activation": "str?"}, conv2d_rule,
     "NCHW convolution with (K,K,Cin,Cout) weight and (Cout,) bias (Needle nn.Conv). "
     "Optional activation='relu' applies ReLU after.",
     _with_activation(_eval_conv2d), stride=1, padding=0,
     traits=Traits(kind="layer", quantizable="weight", weight_input=1, out_axis=3,
                   reduction_axis=2, module_type="Conv", module_class="Conv"))
_row("activation", 1, {"name": "str"}, unary_rule,
     "A fused activation applied on its own (needle_qc.opset.activations), e.g. split off a "
     "weight-only layer.", lambda inputs, attrs, ctx: apply_to_tensor(
         attrs["name"], _needle().ops, inputs[0]),
     traits=Traits(layout_free=True))
_row("add_relu", 2, {}, _elementwise_rule("add_relu"),
     "relu(a + b) of two equal-shape tensors (fused residual join).", _eval_add_relu,
     traits=Traits(quantizable="activations", module_type="add"))
_row("batch_norm", 5, {"eps": "float", "dims": "int"}, batch_norm_rule,
     "Eval-mode batch norm (x, weight, bias, running_mean, running_var); dims 1 or 2.",
     _eval_batch_norm, eps=1e-5, dims=2, traits=Traits(module_class="BatchNorm"))
_row("layer_norm", 3, {"eps": "float"}, layer_norm_rule,
     "Layer norm over the last dim (x, weight, bias) (Needle nn.LayerNorm1d).",
     _eval_layer_norm, eps=1e-5, traits=Traits(module_class="LayerNorm1d"))
_row("embedding", 2, {}, embedding_rule, "Row lookup of ids in a (num, dim) table.",
     _eval_embedding, traits=Traits(module_class="Embedding"))
_row("multi_head_attention", 3, {"causal": "bool"}, attention_rule,
     "softmax(q k^T / sqrt(D) [+ causal mask]) v -> (result, probs) (Needle MultiHeadAttention).",
     _eval_attention, causal=False, traits=Traits(module_class="MultiHeadAttention"))
_row("reshape", 1, {"shape": "shape"}, reshape_rule,
     "Reshape; shape may hold N, k*N and one -1.", _eval_reshape,
     traits=Traits(shares_qparams=True, needle_class="Reshape"))
