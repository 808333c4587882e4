"""fuse-qdq with affine weights: u8 (and i8) weights with a zero point become qlinear/qconv2d.

The layers here are written as QDQ text with chosen zero points (0, 255, odd, even, per channel)
and weights over the whole u8 range; the fused node must equal the integer reference of the QDQ
graph's own params (``qlinear_ref`` / ONNX ``QLinearConv``) bit for bit.
"""

import numpy as np
import pytest

from needle_qc.ir.graph import Graph
from needle_qc.passes import get_pass
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import calibrate, convert, quantize_pass, to_integer
from needle_qc.quantize.reference import qlinear_conv, qlinear_ref, quantize_linear
from tests.needle_qc.quantize.qpass_models import batches, convnet, mlp, node_values

AFFINE = QConfig(weight="uint8", activation="static", weight_symmetric=False)
UINT8_AFFINE = AFFINE.replace(weight_granularity="per_tensor")  # the report's "uint8-affine"

LINEAR = """\
%x = placeholder() : f32[N,{k}]
%x_q = quantize(%x) {{dtype="{xdt}"}} : {xt}[N,{k}]{{s=0.03125, z={zx}}}
%x_dq = dequantize(%x_q) {{axis=-1, group_size=0}} : f32[N,{k}]
%fc.w_q = param() {{tensor="fc.w_q"}} : {wt}[{k},{n}]
%fc.w_scale = param() {{tensor="fc.w_scale"}} : f32[{c}]
%fc.w_zp = param() {{tensor="fc.w_zp"}} : {wt}[{c}]
%fc.w_dq = dequantize(%fc.w_q, %fc.w_scale, %fc.w_zp) {{axis=-1, group_size=0}} : f32[{k},{n}]
%fc.b_q = param() {{tensor="fc.b_q"}} : i32[{n}]
%fc.b_scale = param() {{tensor="fc.b_scale"}} : f32[{n}]
%fc.b_dq = dequantize(%fc.b_q, %fc.b_scale) {{axis=0, group_size=0}} : f32[{n}]
%fc = linear(%x_dq, %fc.w_dq, %fc.b_dq){act} : f32[N,{n}]
{tail}"""

CONV = """\
%x = placeholder() : f32[N,{cin},7,7]
%x_q = quantize(%x) {{dtype="uint8"}} : u8[N,{cin},7,7]{{s=0.03125, z={zx}}}
%x_dq = dequantize(%x_q) {{axis=-1, group_size=0}} : f32[N,{cin},7,7]
%fc.w_q = param() {{tensor="fc.w_q"}} : {wt}[3,3,{cin},{n}]
%fc.w_scale = param() {{tensor="fc.w_scale"}} : f32[{c}]
%fc.w_zp = param() {{tensor="fc.w_zp"}} : {wt}[{c}]
%fc.w_dq = dequantize(%fc.w_q, %fc.w_scale, %fc.w_zp) {{axis=-1, group_size=0}} : \
f32[3,3,{cin},{n}]
%fc.b_q = param() {{tensor="fc.b_q"}} : i32[{n}]
%fc.b_scale = param() {{tensor="fc.b_scale"}} : f32[{n}]
%fc.b_dq = dequantize(%fc.b_q, %fc.b_scale) {{axis=0, group_size=0}} : f32[{n}]
%fc = conv2d(%x_dq, %fc.w_dq, %fc.b_dq) {{stride={stride}, padding=1{act}}} : \
f32[N,{n},{hw},{hw}]
{tail}"""

QUANT_TAIL = """\
%fc_q = quantize(%fc) {{dtype="uint8"}} : u8{shape}{{s={sy}, z={zy}}}
%fc_dq = dequantize(%fc_q) {{axis=-1, group_size=0}} : f32{shape}
return %fc_dq"""

SHORT = {"uint8": "u8", "int8": "i8"}

# weight zero points: u8 per tensor at both ends, odd, even; per channel mixing all of them
ZERO_POINTS = {
    "u8 z=0": ("uint8", 0), "u8 z=255": ("uint8", 255), "u8 z=77": ("uint8", 77),
    "u8 z=128": ("uint8", 128),
    "u8 per-channel": ("uint8", [0, 255, 1, 128, 77, 254, 3]),
    "i8 z=-128": ("int8", -128), "i8 z=127": ("int8", 127),
    "i8 per-channel": ("int8", [-128, 127, 0, -3, 64, 9, -77]),
}


def zero_point(case, n):
    """(weight dtype, zero point array: [] per tensor or [n] per channel) of a ZERO_POINTS key."""
    dtype, z = ZERO_POINTS[case]
    z = np.asarray(z)
    z = z if z.ndim == 0 else np.resize(z, n)
    return dtype, z.astype(dtype)


def _weights(rng, dtype, shape, zp, n):
    """Weights over the whole range, a per-tensor or per-channel scale, an int32 bias."""
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    w = rng.integers(lo, hi + 1, shape).astype(dtype)
    w.reshape(-1, n)[:2] = [[lo] * n, [hi] * n]  # both ends of the range in every channel
    scale = np.float32(0.004) if zp.ndim == 0 else rng.uniform(0.002, 0.006, n).astype(np.float32)
    bias = rng.integers(-3000, 3000, n).astype(np.int32)
    return w, scale, bias


def _output_qparams(acc, s_in, relu):
    """An output step/zero point that spreads the layer's real outputs over u8."""
    y = acc.astype(np.float64) * s_in
    lo, hi = (0.0 if relu else min(y.min(), 0.0)), max(y.max(), 1e-3)
    s_y = np.float32((hi - lo) / 255)
    return float(s_y), int(np.clip(np.rint(-lo / s_y), 0, 255))


def affine_layer(kind="linear", case="u8 z=77", *, k=37, n=7, cin=3, stride=1, relu=True,
                 float_out=False, act_dtype="uint8", zx=131, seed=0):
    """``(QDQ graph of one static linear/conv2d with an affine weight, x)``; annotated static."""
    rng = np.random.default_rng(seed)
    wdt, zp = zero_point(case, n)
    c = "" if zp.ndim == 0 else str(n)
    wshape = (k, n) if kind == "linear" else (3, 3, cin, n)
    w, scale, bias = _weights(rng, wdt, wshape, zp, n)
    if kind == "linear":
        x = rng.uniform(-4.5, 4, (32, k)).astype(np.float32)
        hw, shape = None, f"[N,{n}]"
    else:
        x = rng.uniform(-4.5, 4, (2, cin, 7, 7)).astype(np.float32)
        hw = (7 + 2 - 3) // stride + 1
        shape = f"[N,{n},{hw},{hw}]"
    s_x = np.float32(0.03125)
    if act_dtype == "int8":
        zx = min(zx, 127) - 128
    s_y, z_y = _output_qparams(_float_acc(kind, x, s_x, zx, act_dtype, w, zp, bias, stride),
                               np.float64(s_x) * np.max(scale), relu)
    tail = "return %fc" if float_out else QUANT_TAIL.format(shape=shape, sy=s_y, zy=z_y)
    if kind == "linear":
        text = LINEAR.format(k=k, n=n, c=c, wt=SHORT[wdt], xdt=act_dtype, xt=SHORT[act_dtype],
                             zx=zx, act=' {activation="relu"}' if relu else "", tail=tail)
    else:
        text = CONV.format(cin=cin, n=n, c=c, wt=SHORT[wdt], zx=zx, stride=stride, hw=hw,
                           act=', activation="relu"' if relu else "", tail=tail)
    b_scale = np.broadcast_to(np.multiply(s_x, scale, dtype=np.float32), (n,)).copy()
    g = Graph.parse(text, {"fc.w_q": w, "fc.w_scale": scale, "fc.w_zp": zp, "fc.b_q": bias,
                           "fc.b_scale": b_scale}).lint()
    g.node("fc").meta["qconfig"] = AFFINE.replace(
        weight=wdt, activation_dtype=act_dtype,
        weight_granularity="per_tensor" if zp.ndim == 0 else "per_channel").to_dict()
    return g, x


def _float_acc(kind, x, s_x, zx, act_dtype, w, zp, bias, stride):
    """The exact int accumulator of the layer (used only to pick output qparams)."""
    xq = quantize_linear(x, s_x, np.asarray(zx, act_dtype)).astype(np.int64) - zx
    wc = w.astype(np.int64) - zp.astype(np.int64)
    if kind == "linear":
        return xq @ wc + bias
    xp = np.pad(xq, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    cols = cols[:, :, ::stride, ::stride]
    return np.einsum("bchwij,ijco->bohw", cols, wc) + bias[:, None, None]


def fused(g):
    integer = g.copy()
    assert get_pass("fuse-qdq")(integer) is True
    return integer.lint()


def integer_reference(qdq, integer, x):
    """The fused layer's output recomputed from the QDQ graph's params by the reference ops."""
    t = qdq.tensors
    node = integer.node("fc")
    x_q = node_values(integer, x)["x_q"]
    s_x, z_x = (qdq.node("x_q").meta["qparams"][key] for key in ("s", "z"))
    z_x = np.asarray(z_x, x_q.dtype)
    if node.attrs["dtype"] == "float32":
        return None
    qp = node.meta["qparams"]
    s_y, z_y = np.float32(qp["s"]), np.asarray(qp["z"], np.uint8)
    if node.op == "qlinear":
        return qlinear_ref(x_q, np.float32(s_x), z_x, t["fc.w_q"], t["fc.w_scale"], t["fc.w_zp"],
                           t["fc.b_q"], s_y, z_y, relu=node.attrs.get("activation") == "relu")
    y = qlinear_conv(x_q, np.float32(s_x), z_x, np.transpose(t["fc.w_q"], (3, 2, 0, 1)),
                     t["fc.w_scale"], t["fc.w_zp"], s_y, z_y, t["fc.b_q"],
                     pads=[1] * 4, strides=[node.attrs["stride"]] * 2)
    return np.maximum(y, z_y) if node.attrs.get("activation") == "relu" else y


# ----------------------------------------------------------------------------- IR text

LINEAR_FUSED = """\
%x = placeholder() : f32[N,37]
%x_q = quantize(%x) {dtype="uint8"} : u8[N,37]{s=0.03125, z=131}
%fc.w_q = param() {tensor="fc.w_q"} : u8[37,7]
%fc.w_scale = param() {tensor="fc.w_scale"} : f32[]
%fc.w_zp = param() {tensor="fc.w_zp"} : u8[]
%fc.b_q = param() {tensor="fc.b_q"} : i32[7]
%fc = qlinear(%x_q, %fc.w_q, %fc.w_scale, %fc.w_zp, %fc.b_q) {dtype="uint8", activation="relu"} : \
u8[N,7]{s=S, z=0}
%fc_dq = dequantize(%fc) {axis=-1, group_size=0} : f32[N,7]
return %fc_dq"""

CONV_FUSED_LAYER = (
    '%fc = qconv2d(%x_q, %fc.w_q, %fc.w_scale, %fc.w_zp, %fc.b_q) {stride=2, padding=1, '
    'dtype="uint8"} : u8[N,7,4,4]{s=S, z=Z}')


def _masked(text, node):
    """``text`` with the layer's output qparams (picked from the data) as ``S`` and ``Z``."""
    qp = node.meta["qparams"]
    return text.replace(f"s={qp['s']},", "s=S,").replace(f"z={qp['z']}}}", "z=Z}")


def test_linear_text_before_and_after_keeps_the_u8_weight_and_its_zero_point():
    g, _ = affine_layer("linear", "u8 z=77")
    assert ('%fc.w_dq = dequantize(%fc.w_q, %fc.w_scale, %fc.w_zp) {axis=-1, group_size=0} : '
            'f32[37,7]') in str(g).splitlines()
    integer = fused(g)
    assert integer.node("fc").meta["qparams"]["z"] == 0  # relu: the output starts at 0
    assert _masked(str(integer), integer.node("fc")).replace("z=Z", "z=0") == LINEAR_FUSED
    assert set(integer.tensors) >= {"fc.w_q", "fc.w_zp"}  # the very QDQ params, no new copy
    assert integer.tensors["fc.w_q"].dtype == np.uint8


def test_conv_text_after_shows_the_per_channel_zero_point():
    g, _ = affine_layer("conv", "u8 per-channel", stride=2, relu=False)
    integer = fused(g)
    lines = str(integer).splitlines()
    assert _masked(lines[-3], integer.node("fc")) == CONV_FUSED_LAYER
    assert '%fc.w_zp = param() {tensor="fc.w_zp"} : u8[7]' in lines
    assert [n.op for n in integer.nodes] == ["placeholder", "quantize", "param", "param",
                                             "param", "param", "qconv2d", "dequantize", "output"]


# ----------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("case", list(ZERO_POINTS))
@pytest.mark.parametrize("kind,k", [("linear", 37), ("linear", 64), ("conv", None)])
def test_fused_layer_is_the_integer_reference_of_the_qdq_graph(kind, k, case, relu):
    kw = {"k": k} if k else {"stride": 2}
    g, x = affine_layer(kind, case, seed=len(case), relu=relu, **kw)
    integer = fused(g)
    assert integer.node("fc").op == ("qlinear" if kind == "linear" else "qconv2d")
    got = node_values(integer, x)["fc"]
    want = integer_reference(g, integer, x)
    np.testing.assert_array_equal(got, want)
    assert np.unique(got).size > (8 if relu else 20), "the outputs are spread, not all clamped"
    # the QDQ graph computes the same layer in fp32: within one output step of it
    qdq_q = node_values(g, x)["fc_q"]
    assert np.abs(got.astype(np.int64) - qdq_q.astype(np.int64)).max() <= 1


@pytest.mark.parametrize("case", ["u8 z=255", "u8 per-channel", "i8 z=-128"])
def test_float_output_and_int8_activations(case):
    g, x = affine_layer("linear", case, float_out=True, relu=False)
    integer = fused(g)
    assert integer.node("fc").attrs["dtype"] == "float32"
    np.testing.assert_allclose(integer(x).numpy(), g(x).numpy(), rtol=1e-5, atol=1e-4)
    g, x = affine_layer("linear", case, act_dtype="int8")
    integer = fused(g)
    np.testing.assert_array_equal(node_values(integer, x)["fc"],
                                  integer_reference(g, integer, x))


def test_weight_scaled_along_the_reduction_axis_stays_qdq():
    """The integer ops scale per output channel only: per-input-row qparams stay float."""
    g, x = affine_layer("linear", "u8 z=0", relu=False)
    text = str(g).replace(": f32[]\n", ": f32[37]\n").replace(": u8[]\n", ": u8[37]\n").replace(
        "{axis=-1, group_size=0} : f32[37,7]", "{axis=0, group_size=0} : f32[37,7]")
    tensors = dict(g.tensors, **{"fc.w_scale": np.full(37, 0.004, np.float32),
                                 "fc.w_zp": np.arange(37, dtype=np.uint8) * 7})
    rows = Graph.parse(text, tensors).lint()
    rows.node("fc").meta["qconfig"] = g.node("fc").meta["qconfig"]
    before = rows.copy()
    get_pass("fuse-qdq")(rows)
    assert not rows.find("qlinear") and rows.node("fc").op == "linear"
    np.testing.assert_array_equal(rows(x).numpy(), before(x).numpy())


# ----------------------------------------------------------------------------- pipeline

def stages(graph, shape, cfg):
    prepared = quantize_pass(graph, cfg)
    calibrate(prepared, batches(shape), progress=False)
    qdq = convert(prepared)
    return qdq, to_integer(qdq)


@pytest.mark.parametrize("cfg", [
    UINT8_AFFINE, AFFINE, AFFINE.replace(weight="int8"),
    QConfig(weight="uint8", activation="static")], ids=["u8-affine-tensor", "u8-affine-channel",
                                                       "i8-affine-channel", "u8-symmetric"])
@pytest.mark.parametrize("model,shape", [(mlp, (4,)), (convnet, (1, 6, 6))], ids=["mlp", "conv"])
def test_pipeline_fuses_every_layer_with_its_zero_point(model, shape, cfg):
    qdq, integer = stages(model(), (8,) + shape, cfg)
    layers = integer.find(("qlinear", "qconv2d"))
    assert len(layers) == len(qdq.find(("linear", "conv2d"))) >= 2
    assert not integer.find(("linear", "conv2d"))
    for node in layers:
        w, zp = node.inputs[1], node.inputs[3]
        assert zp.name == f"{w.name[:-2]}_zp" and zp.meta["dtype"] == w.meta["dtype"]
    x = batches((16,) + shape, count=1, seed=7)[0] * 1.5
    step = integer.output_node.inputs[0].inputs[0].meta["qparams"]["s"]
    np.testing.assert_allclose(integer(x).numpy(), qdq(x).numpy(), atol=step * 1.001)
