"""IR op rows of the fused recurrent cells: ``lstm_cell`` (float) and ``qlstm_cell`` (int8).

``lstm_cell(x, h, c, W_ih, W_hh[, b_ih, b_hh])`` is one unrolled step of Needle's LSTMCell as
the ``fuse-lstm-cell`` pass finds it; its evaluation is the decomposed Needle arithmetic in the
traced order (so the interpreter gives the unfused graph's bits)::

    gates = ((x @ W_ih + h @ W_hh) + b_ih) + b_hh        # [N, 4H], gates in ``gate_order``
    c' = f * c + i * g ;  h' = o * tanh(c')              # i, f, o sigmoid; g tanh

``qlstm_cell`` is its quantized form, ORT DynamicQuantizeLSTM's numerics: the weights are
symmetric int8 per output column (``[K, 4H]``, scales ``[4H]`` or one), x and h are quantized
per call (``x_scale`` None: DynamicQuantizeLinear u8) or with calibrated qparams (static), the
two products are exact int32 sums, and the gate math is float32
(:mod:`needle_qc.opset.recurrent_eval` holds the formulas the native kernel matches bit for
bit). Input and output stay float: the cell is a layer of a float recurrence, as in ORT.

``lstm_layer(xs, h0, c0, W_ih, W_hh[, b_ih, b_hh])`` and ``qlstm_layer(xs, h0, c0, W_ih_q, s_ih,
W_hh_q, s_hh[, b_ih, b_hh])`` are T such steps chained (one layer of Needle's LSTM, as the
``fuse-lstm-layer`` pass finds it): xs ``(T, N, I)`` -> ``(hs (T, N, H), h_T, c_T)``; their
evaluation runs the cell's evaluation T times, so the numbers are the chained cells'. A static
``qlstm_layer`` holds each step's qparams: ``x_scale`` etc. are T-tuples.
"""

from needle_qc.errors import IRError
from needle_qc.opset import recurrent_eval as reval
from needle_qc.opset.table import Traits, _meta, _row, get_op, shape_size

# ----------------------------------------------------------------------------- shape rules


def _cell_shapes(metas, op, w_hh_index):
    (x, dt), (h, _), (c, _) = (_meta(metas, i) for i in range(3))
    w_ih, w_hh = _meta(metas, 3)[0], _meta(metas, w_hh_index)[0]
    if len(x) != 2 or len(h) != 2 or h != c or x[0] != h[0]:
        raise IRError(f"{op}: x{x}, h{h}, c{c}: want x (N, I) and h, c (N, H)")
    hidden = h[1]
    if w_ih != (x[1], 4 * hidden) or w_hh != (hidden, 4 * hidden):
        raise IRError(f"{op}: weights {w_ih} and {w_hh}; want ({x[1]}, {4 * hidden}) and "
                      f"({hidden}, {4 * hidden})")
    return h, hidden


def _check_biases(metas, start, hidden, op):
    if len(metas) not in (start, start + 2):
        raise IRError(f"{op}: takes both biases (b_ih, b_hh) or neither, got "
                      f"{len(metas) - start}")
    for i in range(start, len(metas)):
        if shape_size(_meta(metas, i)[0]) != (4 * hidden, 0):
            raise IRError(f"{op}: bias {metas[i]['shape']} is not {4 * hidden} values")


def _check_order(attrs, op):
    if not reval.is_gate_order(attrs["gate_order"]):
        raise IRError(f"{op}: gate_order={attrs['gate_order']!r} is not a permutation of "
                      "'ifgo'")


def lstm_cell_rule(metas, attrs):
    """x (N, I), h and c (N, H), W_ih (I, 4H), W_hh (H, 4H), biases 4H -> (h', c')."""
    h, hidden = _cell_shapes(metas, "lstm_cell", 4)
    _check_biases(metas, 5, hidden, "lstm_cell")
    _check_order(attrs, "lstm_cell")
    dt = _meta(metas, 0)[1]
    return [(h, dt), (h, dt)]


def qlstm_cell_rule(metas, attrs):
    """x, h, c f32; W_ih i8 (I, 4H), s_ih, W_hh i8 (H, 4H), s_hh, f32 biases -> (h', c')."""
    op = "qlstm_cell"
    h, hidden = _cell_shapes(metas, op, 5)
    for i in (4, 6):
        if shape_size(_meta(metas, i)[0])[0] not in (1, 4 * hidden):
            raise IRError(f"{op}: weight scale {metas[i]['shape']} is not 1 or {4 * hidden}")
    _check_biases(metas, 7, hidden, op)
    _check_order(attrs, op)
    static = [attrs.get(k) is not None for k in ("x_scale", "x_zero_point", "h_scale",
                                                 "h_zero_point")]
    if any(static) and not all(static):
        raise IRError(f"{op}: give all of x_scale, x_zero_point, h_scale, h_zero_point "
                      "(static) or none (dynamic)")
    return [(h, "float32"), (h, "float32")]


def _layer_shapes(metas, attrs, op, cell_rule):
    (xs, dt), (h, _) = _meta(metas, 0), _meta(metas, 1)
    if len(xs) != 3 or not isinstance(xs[0], int) or xs[0] < 1:
        raise IRError(f"{op}: xs{xs}: want (T, N, I) with a fixed T >= 1")
    step = [{**metas[0], "shape": xs[1:]}, *metas[1:]]
    cell_rule(step, step_attrs(attrs, 0))
    for key in STATIC_KEYS:
        if attrs.get(key) is not None and len(attrs[key]) != xs[0]:
            raise IRError(f"{op}: {key} has {len(attrs[key])} values for {xs[0]} steps")
    return [((xs[0], *h), dt), (h, dt), (h, dt)]


def lstm_layer_rule(metas, attrs):
    """xs (T, N, I), h0 and c0 (N, H), the cell's weights -> (hs (T, N, H), h_T, c_T)."""
    return _layer_shapes(metas, attrs, "lstm_layer", lstm_cell_rule)


def qlstm_layer_rule(metas, attrs):
    """xs (T, N, I) f32, h0, c0, the int8 cell's weights -> (hs, h_T, c_T) f32; static qparams
    one per step."""
    return _layer_shapes(metas, attrs, "qlstm_layer", qlstm_cell_rule)


# ----------------------------------------------------------------------------- evaluation

STATIC_KEYS = ("x_scale", "x_zero_point", "h_scale", "h_zero_point")
"""A static ``qlstm_layer``'s per-step attrs (T-tuples; a ``qlstm_cell``'s single values)."""


def step_attrs(attrs, t):
    """The cell attrs of step ``t`` of a layer."""
    return {k: (v[t] if k in STATIC_KEYS and v is not None else v) for k, v in attrs.items()}


def _op(name, ctx, *inputs, **attrs):
    # the unfused graph's own rows evaluate each step: same Needle classes, same bits
    row = get_op(name)
    return row.evaluate(list(inputs), {**row.defaults, **attrs}, ctx)


def _eval_lstm_cell(inputs, attrs, ctx):
    x, h, c, w_ih, w_hh, *biases = inputs
    n, hidden = h.shape
    gates = _op("add", ctx, _op("matmul", ctx, x, w_ih), _op("matmul", ctx, h, w_hh))
    for b in biases:
        b = _op("reshape", ctx, b, shape=(1, 4 * hidden))
        gates = _op("add", ctx, gates, _op("broadcast_to", ctx, b, shape=(n, 4 * hidden)))
    parts = _op("split", ctx, _op("reshape", ctx, gates, shape=(n, 4, hidden)), axis=1)
    gate = {role: _op("tuple_get_item", ctx, parts, index=k)
            for k, role in enumerate(attrs["gate_order"])}
    i, f, o = (_op("sigmoid", ctx, gate[r]) for r in "ifo")
    g = _op("tanh", ctx, gate["g"])
    c_new = _op("add", ctx, _op("mul", ctx, f, c), _op("mul", ctx, i, g))
    h_new = _op("mul", ctx, o, _op("tanh", ctx, c_new))
    return _op("make_tuple", ctx, h_new, c_new)


def static_qparams(attrs):
    """``((s_x, z_x, dtype), (s_h, z_h, dtype))`` of a static ``qlstm_cell``, or (None, None)."""
    if attrs.get("x_scale") is None:
        return None, None
    dt = attrs.get("dtype") or "uint8"
    return ((attrs["x_scale"], attrs["x_zero_point"], dt),
            (attrs["h_scale"], attrs["h_zero_point"], dt))


def _eval_qlstm_cell(inputs, attrs, ctx):
    x, h, c, w_ih, s_ih, w_hh, s_hh, *biases = (t.numpy() for t in inputs)
    x_qp, h_qp = static_qparams(attrs)
    try:
        gates = reval.qlstm_gates(x, h, w_ih, s_ih, w_hh, s_hh, biases, x_qp, h_qp)
    except (ValueError, OverflowError) as e:
        raise type(e)(f"%{ctx.node.name} (qlstm_cell): {e}") from None
    h_new, c_new = reval.lstm_tail(gates, c, attrs["gate_order"])
    fw = ctx.framework
    return _op("make_tuple", ctx, fw.tensor(h_new, ctx.device, "float32"),
               fw.tensor(c_new, ctx.device, "float32"))


def _eval_layer(cell_op):
    def evaluate(inputs, attrs, ctx):
        xs, h, c, *weights = inputs
        items = _op("split", ctx, xs, axis=0)
        hs = []
        for t in range(xs.shape[0]):
            x = _op("tuple_get_item", ctx, items, index=t)
            step = _op(cell_op, ctx, x, h, c, *weights, **step_attrs(attrs, t))
            h, c = (_op("tuple_get_item", ctx, step, index=k) for k in (0, 1))
            hs.append(h)
        return _op("make_tuple", ctx, _op("stack", ctx, *hs, axis=0), h, c)
    return evaluate


# ----------------------------------------------------------------------------- the rows

_row("lstm_cell", (5, 7), {"gate_order": "str"}, lstm_cell_rule,
     "One LSTM step (x, h, c, W_ih, W_hh[, b_ih, b_hh]) -> (h', c'): gates = "
     "((x W_ih + h W_hh) + b_ih) + b_hh split in gate_order (Needle's ifgo), "
     "c' = f c + i g, h' = o tanh(c'); the decomposed Needle arithmetic.",
     _eval_lstm_cell, gate_order="ifgo",
     traits=Traits(quantizable="fused", module_type="LSTM", weight_input=3))
_row("qlstm_cell", (7, 9),
     {"gate_order": "str", "x_scale": "float?", "x_zero_point": "int?", "h_scale": "float?",
      "h_zero_point": "int?", "dtype": "str?"}, qlstm_cell_rule,
     "int8 LSTM step (ORT DynamicQuantizeLSTM numerics): x and h quantized per call (or with "
     "static x_/h_ qparams), int8 weights per column, exact int32 products, "
     "float32 gates (recurrent_eval's gate functions) -> (h', c') f32.",
     _eval_qlstm_cell, gate_order="ifgo", traits=Traits(integer=True, weight_input=3))
_row("lstm_layer", (5, 7), {"gate_order": "str"}, lstm_layer_rule,
     "One LSTM layer, T chained lstm_cell steps (xs (T, N, I), h0, c0, W_ih, W_hh[, b_ih, "
     "b_hh]) -> (hs (T, N, H), h_T, c_T); evaluates lstm_cell T times (the same bits).",
     _eval_layer("lstm_cell"), gate_order="ifgo",
     traits=Traits(module_type="LSTM", weight_input=3))
_row("qlstm_layer", (7, 9),
     {"gate_order": "str", "x_scale": "any", "x_zero_point": "any", "h_scale": "any",
      "h_zero_point": "any", "dtype": "str?"}, qlstm_layer_rule,
     "int8 LSTM layer, T chained qlstm_cell steps -> (hs, h_T, c_T) f32; static x_/h_ "
     "qparams one per step (T-tuples) or None (dynamic); evaluates qlstm_cell T times.",
     _eval_layer("qlstm_cell"), gate_order="ifgo", x_scale=None, x_zero_point=None,
     h_scale=None, h_zero_point=None, traits=Traits(integer=True, weight_input=3))
