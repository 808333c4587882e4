"""fp32 conv and linear layers bound once (ConvF32Layer, GemmF32Layer): the same bits as the
unbound kernels followed by numpy's bias add and ReLU, on every remainder and extreme values."""

import numpy as np
import pytest

kernels = pytest.importorskip("needle_qc._quant_cpu")
if not hasattr(kernels, "ConvF32Layer"):
    pytest.skip("_quant_cpu built before the bound fp32 layers", allow_module_level=True)

CONV_CASES = [  # n, h, w, cin, cout, k, stride, pad
    (2, 5, 6, 3, 5, 3, 1, 0), (1, 7, 7, 3, 40, 2, 2, 1), (3, 9, 9, 1, 16, 3, 1, 1),
    (2, 8, 8, 16, 32, 3, 2, 1), (1, 1, 1, 3, 8, 2, 1, 2), (2, 11, 11, 3, 16, 7, 4, 3),
]


def _extremes(a):
    """``a`` with a NaN, infinities, -0 and a huge value planted (where it has room)."""
    flat = a.reshape(-1)
    for i, v in enumerate([np.nan, np.inf, -np.inf, -0.0, 3e38]):
        if i < flat.size:
            flat[(i * 7919) % flat.size] = v
    return a


@pytest.mark.parametrize("n, h, w, cin, cout, k, stride, pad", CONV_CASES)
@pytest.mark.parametrize("bias, relu", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("extreme", [False, True])
def test_bound_conv_equals_the_unbound_kernel(n, h, w, cin, cout, k, stride, pad, bias, relu,
                                              extreme):
    rng = np.random.default_rng(n * h + cin * cout + k)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    x = _extremes(x) if extreme else x
    wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    packed = kernels.pack_conv_f32(wt)
    layer = kernels.ConvF32Layer(packed, k, cin, cout, b, stride, pad, relu)
    want = kernels.conv2d_nhwc_f32(x, packed, k, cout, b, stride, pad, relu)
    np.testing.assert_array_equal(layer(x), want)
    np.testing.assert_array_equal(layer(x), want)  # a layer is reusable


def test_bound_conv_refuses_bad_input_by_name():
    packed = kernels.pack_conv_f32(np.zeros((3, 3, 2, 8), np.float32))
    with pytest.raises(ValueError, match="packed"):
        kernels.ConvF32Layer(packed, 3, 3, 8)
    with pytest.raises(ValueError, match="bias"):
        kernels.ConvF32Layer(packed, 3, 2, 8, np.zeros(7, np.float32))
    layer = kernels.ConvF32Layer(packed, 3, 2, 8, None, 1, 1, False)
    with pytest.raises(ValueError, match="channels"):
        layer(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        kernels.ConvF32Layer(packed, 3, 2, 8)(np.zeros((1, 2, 2, 2), np.float32))


@pytest.mark.parametrize("m", [0, 1, 4, 5, 33])
@pytest.mark.parametrize("k, n", [(1, 8), (31, 13), (257, 64), (20, 10)])
@pytest.mark.parametrize("bias_shape, relu", [((1, -1), True), ((-1,), False), (None, True)])
def test_bound_gemm_equals_gemm_then_numpy_bias_and_relu(m, k, n, bias_shape, relu):
    rng = np.random.default_rng(m * 1000 + k * n)
    a = _extremes(rng.standard_normal((m, k)).astype(np.float32))
    w = rng.standard_normal((k, n)).astype(np.float32)
    w[:, 0] = 0.0  # column 0 sums to +-0 (or NaN): ReLU's -0 and NaN cases
    b = None if bias_shape is None else rng.standard_normal(n).astype(np.float32)
    if b is not None:
        b[1 % n] = -0.0
        b = b.reshape(bias_shape)
    packed = kernels.pack_gemm_f32(w)
    want = kernels.gemm_f32(a, packed, n) if m else np.zeros((0, n), np.float32)
    if b is not None:
        np.add(want, b, out=want)
    if relu:
        want = np.maximum(want, np.float32(0))
    got = kernels.GemmF32Layer(packed, k, n, b, relu)(a)
    assert got.shape == (m, n)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_bound_gemm_refuses_bad_input_by_name():
    packed = kernels.pack_gemm_f32(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="packed"):
        kernels.GemmF32Layer(packed, 4, 4)
    with pytest.raises(ValueError, match="bias"):
        kernels.GemmF32Layer(packed, 4, 3, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="columns"):
        kernels.GemmF32Layer(packed, 4, 3)(np.zeros((2, 5), np.float32))


@pytest.mark.parametrize("activation", ["relu", None])
def test_lowered_linear_takes_the_bound_layer_with_the_numpy_bits(activation, monkeypatch):
    from needle_qc.lower import float_ops

    rng = np.random.default_rng(3)
    w = rng.standard_normal((300, 24)).astype(np.float32)
    b = rng.standard_normal((1, 24)).astype(np.float32)
    x = _extremes(rng.standard_normal((2, 3, 300)).astype(np.float32))
    mm = float_ops.F32Matmul(w)
    assert mm.bound_layer(b, True) is not None
    got = float_ops._linear_f32(mm, b, activation)(x)
    monkeypatch.setattr(mm, "bound_layer", lambda bias, relu: None)
    np.testing.assert_array_equal(got, float_ops._linear_f32(mm, b, activation)(x))
    assert got.shape == (2, 3, 24)
