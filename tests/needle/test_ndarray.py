"""NDArray: views share buffers, strides, setitem in place, reductions, matmul paths, errors."""

import numpy as np
import pytest

import needle as ndl
from needle import backend_ndarray as nd
from tests.devices import DEVICES


def _arr(shape, device, seed=0):
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return values, nd.array(values, device=device)


def _numpy_strides(a):
    return tuple(s // a.itemsize for s in a.strides)


VIEWS = [
    ("reshape", lambda a: a.reshape((4, 6)), lambda a: a.reshape(4, 6)),
    ("permute", lambda a: a.permute((2, 0, 1)), lambda a: np.transpose(a, (2, 0, 1))),
    (
        "broadcast",
        lambda a: a[:, :1, :].broadcast_to((2, 5, 4)),
        lambda a: np.broadcast_to(a[:, :1, :], (2, 5, 4)),
    ),
    ("getitem", lambda a: a[1, 0:3:2, 1:], lambda a: a[1:2, 0:3:2, 1:]),
    ("getitem_neg", lambda a: a[-1, -2:, :], lambda a: a[-1:, -2:, :]),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,view,ref", VIEWS, ids=[v[0] for v in VIEWS])
def test_views_share_the_buffer_and_match_numpy_strides(name, view, ref, device):
    values, a = _arr((2, 3, 4), device)
    v, expected = view(a), ref(values)
    assert v._handle.ptr() == a._handle.ptr()
    assert v.shape == expected.shape
    assert v.strides == _numpy_strides(expected)
    np.testing.assert_array_equal(v.numpy(), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_getitem_never_drops_rank(device):
    _, a = _arr((2, 3, 4), device)
    assert a[0].shape == (1, 3, 4)
    assert a[1, 2, 3].shape == (1, 1, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_setitem_writes_in_place(device):
    values, a = _arr((4, 5), device)
    ptr = a._handle.ptr()
    _, b = _arr((2, 2), device, seed=1)
    a[1:3, 2:4] = b
    a[0, :] = 7.0
    values[1:3, 2:4] = b.numpy()
    values[0, :] = 7.0
    assert a._handle.ptr() == ptr
    np.testing.assert_array_equal(a.numpy(), values)


@pytest.mark.parametrize("device", DEVICES)
def test_compact_copies_only_non_compact_arrays(device):
    _, a = _arr((3, 4), device)
    assert a.is_compact() and a.compact() is a
    t = a.permute((1, 0))
    assert not t.is_compact()
    c = t.compact()
    assert c.is_compact() and c._handle.ptr() != a._handle.ptr()
    np.testing.assert_array_equal(c.numpy(), a.numpy().T)
    assert not a[1:, :].is_compact()  # a view of part of the buffer is not compact


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, (1,)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(axis, keepdims, device):
    values, a = _arr((2, 3, 4), device)
    np_axis = axis[0] if isinstance(axis, tuple) else axis
    for got, want in (
        (a.sum(axis, keepdims), values.sum(np_axis, keepdims=keepdims)),
        (a.max(axis, keepdims), values.max(np_axis, keepdims=keepdims)),
    ):
        if axis is None:  # course rule: the full reduction is shape (1,) (or all-ones keepdims)
            assert got.shape == ((1,) * 3 if keepdims else (1,))
        else:
            assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy().reshape(np.shape(want)), want, rtol=1e-5)


def test_reduce_view_out_rejects_multiple_axes():
    _, a = _arr((2, 3), nd.cpu_numpy())
    with pytest.raises(ValueError, match="one axis"):
        a.reduce_view_out((0, 1))
    with pytest.raises(ValueError, match="empty axis"):
        a.sum(())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("m,n,p", [(1, 1, 1), (8, 8, 8), (16, 32, 8), (72, 73, 74), (3, 64, 5)])
def test_matmul_matches_numpy(m, n, p, device):
    a_np, a = _arr((m, n), device)
    b_np, b = _arr((n, p), device, seed=1)
    np.testing.assert_allclose((a @ b).numpy(), a_np @ b_np, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_matmul_broadcasts_leading_dims(device):
    a_np, a = _arr((2, 1, 3, 4), device)
    b_np, b = _arr((3, 4, 5), device, seed=1)
    np.testing.assert_allclose((a @ b).numpy(), a_np @ b_np, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"shape mismatch in matmul: \(2, 1, 3, 4\)"):
        a @ _arr((2, 5, 5), device)[1]


def test_cpu_matmul_skips_the_tiled_layout_but_matmul_tiled_still_works(monkeypatch):
    """`@` on cpu() takes the packed matmul; the course's matmul_tiled stays callable and right."""
    device = nd.cpu()
    if not device.enabled() or not hasattr(device, "matmul_tiled"):
        pytest.skip("C++ backend with matmul_tiled not built")
    calls = []
    real = device.mod.matmul_tiled
    monkeypatch.setattr(device.mod, "matmul_tiled", lambda *a: calls.append(a) or real(*a))
    a_np, a = _arr((16, 24), device)
    b_np, b = _arr((24, 8), device, seed=1)
    np.testing.assert_allclose((a @ b).numpy(), a_np @ b_np, rtol=1e-4, atol=1e-4)
    assert calls == []
    tiled = nd.ndarray._matmul_tiled(a, b, device.__tile_size__)
    np.testing.assert_allclose(tiled.numpy(), a_np @ b_np, rtol=1e-4, atol=1e-4)
    assert len(calls) == 1


@pytest.mark.parametrize("device", DEVICES)
def test_elementwise_and_comparisons_match_numpy(device):
    x, a = _arr((3, 4), device)
    y, b = _arr((3, 4), device, seed=1)
    cases = [
        (a + b, x + y),
        (a - b, x - y),
        (a * b, x * y),
        (a / b, x / y),
        (-a, -x),
        (a + 2.0, x + 2.0),
        (2.0 - a, 2.0 - x),
        (3.0 / a, 3.0 / x),
        (a**2, x**2),
        (a.maximum(b), np.maximum(x, y)),
        (a.maximum(0.0), np.maximum(x, 0)),
        (a == a, x == x),
        (a >= b, x >= y),
        (a > b, x > y),
        (a < b, x < y),
        (a <= b, x <= y),
        (a != b, x != y),
        (a.tanh(), np.tanh(x)),
        (a.exp(), np.exp(x)),
        (abs_ := a.maximum(-a), np.abs(x)),
        (abs_.log(), np.log(np.abs(x))),
    ]
    for got, want in cases:
        np.testing.assert_allclose(got.numpy(), want.astype(np.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_flip_and_pad_match_numpy(device):
    x, a = _arr((2, 3, 4), device)
    np.testing.assert_array_equal(a.flip((0, 2)).numpy(), np.flip(x, (0, 2)))
    np.testing.assert_array_equal(a[:, 1:, :].flip((1,)).numpy(), np.flip(x[:, 1:, :], 1))
    pads = ((0, 0), (1, 2), (2, 0))
    np.testing.assert_array_equal(a.pad(pads).numpy(), np.pad(x, pads))


@pytest.mark.parametrize("device", DEVICES)
def test_shape_errors_name_both_shapes(device):
    _, a = _arr((2, 3), device)
    _, b = _arr((3, 2), device)
    with pytest.raises(ValueError, match=r"shape mismatch in add: \(2, 3\) vs \(3, 2\)"):
        a + b
    with pytest.raises(ValueError, match=r"cannot reshape array of shape \(2, 3\) into shape"):
        a.reshape((4, 2))
    with pytest.raises(ValueError, match=r"cannot broadcast shape \(2, 3\) to \(2, 4\)"):
        a.broadcast_to((2, 4))
    with pytest.raises(ValueError, match="non-compact"):
        a.permute((1, 0)).reshape((6,))
    with pytest.raises(IndexError, match="out of bounds"):
        a[2, 0]


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_round_trip_and_repr(device):
    x, a = _arr((2, 2), device)
    back = a.to(nd.cpu_numpy()).to(device)
    np.testing.assert_array_equal(back.numpy(), x)
    assert repr(a).startswith("NDArray(") and f"device={device!r}" in repr(a)


def test_devices_and_delegation():
    assert repr(nd.cpu()) == "cpu()" and repr(nd.cuda()) == "cuda()"
    assert nd.default_device() == nd.cpu_numpy()
    assert [repr(d) for d in nd.all_devices()] == ["cpu()", "cuda()", "cpu_numpy()"]
    assert nd.cpu_numpy().enabled()
    assert nd.cpu_numpy().ewise_add is nd.ndarray_backend_numpy.ewise_add
    assert not hasattr(nd.cpu_numpy(), "matmul_tiled")
    assert ndl.cuda().enabled() in (True, False)  # never raises, GPU or not
    if not nd.cuda().enabled():
        assert not hasattr(nd.cuda(), "ewise_add")


def test_device_constructors():
    d = nd.cpu_numpy()
    assert d.full((2, 2), 3.0).numpy().tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert d.empty((3,), dtype="int8").dtype == "int8"
    assert d.one_hot(3, [2, 0]).numpy().tolist() == [[0, 0, 1], [1, 0, 0]]
    np.random.seed(1)
    r = d.randn(2, 3)
    np.random.seed(1)
    np.testing.assert_array_equal(r.numpy(), np.random.randn(2, 3).astype(np.float32))
    assert d.rand(4, dtype="float16").dtype == "float16"


@pytest.mark.parametrize("device", DEVICES)
def test_setitem_broadcasts_or_rejects_mismatched_shapes(device):
    _, a = _arr((2, 3), device)
    _, row = _arr((1, 3), device, seed=1)
    a[:, :] = row
    np.testing.assert_array_equal(a.numpy(), np.repeat(row.numpy(), 2, axis=0))
    _, wrong = _arr((3, 2), device, seed=2)
    with pytest.raises(ValueError, match=r"cannot broadcast shape \(3, 2\) to \(2, 3\)"):
        a[:, :] = wrong
    with pytest.raises(TypeError, match="dtype mismatch in setitem: float32 vs int8"):
        a[0, :] = row.astype("int8")
