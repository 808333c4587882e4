"""Every needle op: forward against a numpy formula, backward against numerical gradients."""

import numpy as np
import pytest
import torch

import needle as ndl
from needle.backend_ndarray.dtypes import bf16_bits_to_fp32, fp32_to_bf16_bits
from tests.devices import DEVICES
from tests.helpers import gradient_check, tensor

# (id, needle fn, numpy fn, input shapes, positive inputs?)
UNARY_BINARY = [
    ("add", lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (3, 4)], False),
    ("add_scalar", lambda a: a + 1.5, lambda a: a + 1.5, [(3, 4)], False),
    ("sub", lambda a, b: a - b, lambda a, b: a - b, [(3, 4), (3, 4)], False),
    ("rsub", lambda a: 2.0 - a, lambda a: 2.0 - a, [(3, 4)], False),
    ("mul", lambda a, b: a * b, lambda a, b: a * b, [(3, 4), (3, 4)], False),
    ("mul_scalar", lambda a: a * -2.0, lambda a: a * -2.0, [(3, 4)], False),
    ("div", lambda a, b: a / b, lambda a, b: a / b, [(3, 4), (3, 4)], True),
    ("div_scalar", lambda a: a / 4.0, lambda a: a / 4.0, [(3, 4)], False),
    ("rtruediv", lambda a: 3.0 / a, lambda a: 3.0 / a, [(3, 4)], True),
    ("power", ndl.power, np.power, [(3, 4), (3, 4)], True),
    ("power_scalar", lambda a: a**3, lambda a: a**3, [(3, 4)], False),
    ("negate", ndl.negate, np.negative, [(3, 4)], False),
    ("log", ndl.log, np.log, [(3, 4)], True),
    ("exp", ndl.exp, np.exp, [(3, 4)], False),
    ("relu", ndl.relu, lambda a: np.maximum(a, 0), [(3, 4)], False),
    ("tanh", ndl.tanh, np.tanh, [(3, 4)], False),
    ("sigmoid", ndl.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [(3, 4)], False),
    ("maximum", ndl.maximum, np.maximum, [(3, 4), (3, 4)], False),
    ("transpose_default", ndl.transpose, lambda a: np.swapaxes(a, -1, -2), [(2, 3, 4)], False),
    (
        "transpose_02",
        lambda a: ndl.transpose(a, (0, 2)),
        lambda a: np.swapaxes(a, 0, 2),
        [(2, 3, 4)],
        False,
    ),
    (
        "permute",
        lambda a: ndl.permute(a, (2, 0, 1)),
        lambda a: np.transpose(a, (2, 0, 1)),
        [(2, 3, 4)],
        False,
    ),
    ("reshape", lambda a: ndl.reshape(a, (4, 6)), lambda a: a.reshape(4, 6), [(2, 3, 4)], False),
    (
        "broadcast",
        lambda a: ndl.broadcast_to(a, (2, 3, 4)),
        lambda a: np.broadcast_to(a, (2, 3, 4)),
        [(3, 1)],
        False,
    ),
    (
        "broadcast_lead",
        lambda a: ndl.broadcast_to(a, (5, 4)),
        lambda a: np.broadcast_to(a, (5, 4)),
        [(4,)],
        False,
    ),
    ("sum_all", ndl.summation, np.sum, [(3, 4)], False),
    ("sum_0", lambda a: ndl.summation(a, 0), lambda a: a.sum(0), [(2, 3, 4)], False),
    ("sum_12", lambda a: ndl.summation(a, (1, 2)), lambda a: a.sum((1, 2)), [(2, 3, 4)], False),
    ("max_all", ndl.max, np.max, [(3, 4)], False),
    ("max_1", lambda a: ndl.max(a, 1), lambda a: a.max(1), [(3, 4)], False),
    (
        "max_keep",
        lambda a: ndl.max(a, (0,), keepdims=True),
        lambda a: a.max(0, keepdims=True),
        [(3, 4)],
        False,
    ),
    ("matmul", ndl.matmul, np.matmul, [(3, 5), (5, 4)], False),
    ("matmul_batched", ndl.matmul, np.matmul, [(2, 3, 5), (2, 5, 4)], False),
    ("matmul_broadcast", ndl.matmul, np.matmul, [(2, 2, 3, 5), (5, 4)], False),
    ("matmul_broadcast_lhs", ndl.matmul, np.matmul, [(3, 5), (2, 5, 4)], False),
    ("logsumexp_all", ndl.logsumexp, lambda a: np.log(np.exp(a).sum()), [(3, 4)], False),
    (
        "logsumexp_1",
        lambda a: ndl.logsumexp(a, (1,)),
        lambda a: np.log(np.exp(a).sum(1)),
        [(3, 4)],
        False,
    ),
    (
        "logsumexp_int",
        lambda a: ndl.logsumexp(a, 0),
        lambda a: np.log(np.exp(a).sum(0)),
        [(2, 3, 4)],
        False,
    ),
    (
        "logsoftmax",
        ndl.logsoftmax,
        lambda a: a - np.log(np.exp(a).sum(1, keepdims=True)),
        [(3, 5)],
        False,
    ),
    ("flip", lambda a: ndl.flip(a, (0, 2)), lambda a: np.flip(a, (0, 2)), [(2, 3, 4)], False),
    ("getitem", lambda a: a[1, 1:3], lambda a: a[1, 1:3], [(3, 4)], False),
    ("getitem_step", lambda a: a[:, ::2, 1], lambda a: a[:, ::2, 1], [(2, 5, 3)], False),
    (
        "astype_f16",
        lambda a: a.astype("float16").astype("float32"),
        lambda a: a.astype(np.float16).astype(np.float32),
        [(3, 4)],
        False,
    ),
]


OP_IDS = [c[0] for c in UNARY_BINARY]


def _inputs(shapes, positive, device):
    return [tensor(s, device, seed=i, low=0.5 if positive else None) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,fn,ref,shapes,positive", UNARY_BINARY, ids=OP_IDS)
def test_op_forward_matches_numpy(name, fn, ref, shapes, positive, device):
    args = _inputs(shapes, positive, device)
    out = fn(*args)
    expected = ref(*[a.numpy().astype(np.float64) for a in args])
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,fn,ref,shapes,positive", UNARY_BINARY, ids=OP_IDS)
def test_op_backward_matches_numerical(name, fn, ref, shapes, positive, device):
    if name == "astype_f16":  # fp16 rounding breaks central differences; see test_dtypes
        return
    args = _inputs(shapes, positive, device)
    if name == "relu":  # keep inputs away from the kink at 0
        values = args[0].numpy()
        args = [ndl.Tensor(np.sign(values) * (np.abs(values) + 0.1), device=device)]
    gradient_check(fn, *args)


@pytest.mark.parametrize("device", DEVICES)
def test_stack_split_forward_and_backward(device):
    a, b, c = (tensor((2, 3), device, seed=s) for s in range(3))
    out = ndl.stack([a, b, c], axis=1)
    np.testing.assert_allclose(out.numpy(), np.stack([a.numpy(), b.numpy(), c.numpy()], 1))
    gradient_check(lambda x, y, z: ndl.stack([x, y, z], axis=1), a, b, c)
    parts = ndl.split(out, 1)
    assert len(parts) == 3 and parts[2].shape == (2, 3)
    np.testing.assert_allclose(parts[1].numpy(), b.numpy())
    gradient_check(lambda x: ndl.split(x, 0)[1] * 3.0, tensor((3, 2, 2), device))


@pytest.mark.parametrize("device", DEVICES)
def test_dilate_inserts_zeros_after_each_element(device):
    a = ndl.Tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    out = ndl.dilate(a, (0, 1), 1).numpy()
    expected = np.array([[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(
        ndl.undilate(ndl.Tensor(expected, device=device), (0, 1), 1).numpy(), a.numpy()
    )
    np.testing.assert_array_equal(ndl.dilate(a, (0,), 0).numpy(), a.numpy())
    gradient_check(lambda x: ndl.dilate(x, (1,), 2), tensor((2, 3), device))
    gradient_check(lambda x: ndl.undilate(x, (0,), 1), tensor((4, 3), device))


CONV_CASES = [  # (N, H, W, C_in, C_out, K, stride, padding)
    (2, 5, 5, 3, 4, 3, 1, 1),
    (1, 6, 7, 2, 3, 3, 2, 1),
    (2, 7, 6, 3, 2, 3, 2, 0),
    (1, 5, 5, 2, 2, 1, 1, 0),
    (1, 4, 4, 2, 3, 2, 1, 2),
    (1, 8, 8, 3, 2, 5, 3, 2),
]


def _torch_conv(x, w, stride, padding):
    xt = torch.tensor(x).permute(0, 3, 1, 2)
    wt = torch.tensor(w).permute(3, 2, 0, 1)
    out = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding)
    return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CONV_CASES, ids=[str(c) for c in CONV_CASES])
def test_conv_matches_torch_forward_and_backward(case, device):
    n, h, w, ci, co, k, s, p = case
    x, wt = tensor((n, h, w, ci), device, seed=1), tensor((k, k, ci, co), device, seed=2)
    out = ndl.conv(x, wt, stride=s, padding=p)
    expected = _torch_conv(x.numpy(), wt.numpy(), s, p)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)
    gradient_check(lambda a, b: ndl.conv(a, b, stride=s, padding=p), x, wt)


def test_conv_helper_defaults_to_padding_1_class_to_0():
    x, w = tensor((1, 5, 5, 1), ndl.cpu_numpy()), tensor((3, 3, 1, 1), ndl.cpu_numpy())
    assert ndl.conv(x, w).shape == (1, 5, 5, 1)
    assert ndl.ops.Conv()(x, w).shape == (1, 3, 3, 1)


def test_conv_rejects_bad_shapes():
    x, w = tensor((1, 5, 5, 2), ndl.cpu_numpy()), tensor((3, 3, 3, 1), ndl.cpu_numpy())
    with pytest.raises(ValueError, match=r"\(1, 5, 5, 2\) and \(3, 3, 3, 1\)"):
        ndl.conv(x, w)


def test_transpose_swaps_two_axes_not_a_permutation():
    a = tensor((2, 3, 4), ndl.cpu_numpy())
    assert ndl.transpose(a, (0, 2)).shape == (4, 3, 2)
    assert a.transpose().shape == (2, 4, 3)
    with pytest.raises(ValueError, match="swaps two axes"):
        ndl.transpose(a, (2, 0, 1))


@pytest.mark.parametrize("device", DEVICES)
def test_max_gradient_splits_ties_evenly(device):
    a = ndl.Tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]], device=device)
    ndl.max(a, 1).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [[0, 0.5, 0.5], [1, 0, 0]])


@pytest.mark.parametrize("device", DEVICES)
def test_maximum_gradient_goes_to_first_input_on_ties(device):
    a = ndl.Tensor([1.0, 2.0, 3.0], device=device)
    b = ndl.Tensor([1.0, 5.0, 0.0], device=device)
    ndl.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1, 0, 1])
    np.testing.assert_array_equal(b.grad.numpy(), [0, 1, 0])


@pytest.mark.parametrize("device", DEVICES)
def test_logsumexp_is_stable_for_large_inputs(device):
    a = ndl.Tensor([[1000.0, 1000.0], [-1000.0, -1000.0]], device=device)
    expected = [1000 + np.log(2), -1000 + np.log(2)]
    np.testing.assert_allclose(ndl.logsumexp(a, (1,)).numpy(), expected)
    assert np.isfinite(ndl.logsoftmax(a).numpy()).all()
    assert np.isfinite(ndl.sigmoid(a).numpy()).all()


def test_fused_add_scalars_and_tuple_get_item():
    x = tensor((2, 2), ndl.cpu_numpy())
    a, b = ndl.fused_add_scalars(x, 1.0, 2.0)
    np.testing.assert_allclose(b.numpy() - a.numpy(), np.ones((2, 2)))
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 3, rtol=1e-5)
    t = ndl.make_tuple(x, x + 1)
    assert t[0] is x  # make_tuple(...)[i] folds to the input


@pytest.mark.parametrize("device", DEVICES)
def test_elementwise_shape_mismatch_names_both_shapes(device):
    a, b = tensor((3, 4), device), tensor((4, 3), device)
    with pytest.raises(ValueError, match=r"shape mismatch in add: \(3, 4\) vs \(4, 3\)"):
        a + b
    with pytest.raises(ValueError, match=r"shape mismatch in matmul: \(3, 4\) vs \(3, 4\)"):
        a @ tensor((3, 4), device)


@pytest.mark.parametrize("device", DEVICES)
def test_mixing_dtypes_in_a_tensor_op_raises(device):
    a = tensor((2, 2), device)
    b = ndl.Tensor(np.ones((2, 2)), device=device, dtype="int8")
    with pytest.raises(TypeError, match="dtype mismatch in EWiseAdd: float32 vs int8"):
        a + b


def test_getitem_rejects_negative_steps_and_bad_indices():
    a = tensor((3, 4), ndl.cpu_numpy())
    with pytest.raises(ValueError, match="positive steps"):
        a[::-1]
    with pytest.raises(IndexError, match="out of bounds"):
        a[3]
    with pytest.raises(TypeError, match="int or slice"):
        a[[0, 1]]


@pytest.mark.parametrize("device", DEVICES)
def test_ops_on_half_precision_round_once_per_op(device):
    values = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    for dtype, to_half in (
        ("float16", lambda v: v.astype(np.float16).astype(np.float32)),
        ("bfloat16", _round_bf16),
    ):
        a = ndl.Tensor(values, device=device, dtype=dtype)
        expected = to_half(np.exp(to_half(values)) * 2.0)
        np.testing.assert_array_equal((ndl.exp(a) * 2.0).numpy(), expected)
        assert (a @ ndl.transpose(a)).dtype == dtype


def _round_bf16(v):
    return bf16_bits_to_fp32(fp32_to_bf16_bits(v.astype(np.float32)))


@pytest.mark.parametrize("device", DEVICES)
def test_cnn_step_gradients_match_torch(device):
    """conv -> relu -> flatten-matmul -> logsumexp: gradients agree with torch autograd."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    v = rng.standard_normal((6 * 6 * 4, 5)).astype(np.float32)
    tw, tv = (torch.tensor(a, requires_grad=True) for a in (w, v))
    tx = torch.tensor(x).permute(0, 3, 1, 2)
    h = torch.relu(torch.nn.functional.conv2d(tx, tw.permute(3, 2, 0, 1), padding=1))
    torch.logsumexp(h.permute(0, 2, 3, 1).reshape(2, -1) @ tv, 1).sum().backward()
    nw, nv = ndl.Tensor(w, device=device), ndl.Tensor(v, device=device)
    hn = ndl.relu(ndl.conv(ndl.Tensor(x, device=device), nw, padding=1))
    ndl.logsumexp(hn.reshape((2, 6 * 6 * 4)) @ nv, (1,)).sum().backward()
    np.testing.assert_allclose(nw.grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(nv.grad.numpy(), tv.grad.numpy(), rtol=1e-4, atol=1e-4)
