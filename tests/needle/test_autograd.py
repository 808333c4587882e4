"""Autograd machinery: graph building, topological order, detaching, counters, dtypes."""

import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
from needle import autograd
from tests.devices import DEVICES
from tests.helpers import tensor


def test_find_topo_sort_is_forward_post_order():
    a = ndl.Tensor([[1.0]])
    b = ndl.Tensor([[2.0]])
    c = a * b
    d = c + a
    e = ndl.exp(d) * c
    order = autograd.find_topo_sort([e])
    assert order.index(a) < order.index(c) < order.index(d) < order.index(e)
    assert order.index(b) < order.index(c)
    assert len(order) == len(set(order)) == 6


def test_gradient_accumulates_over_shared_nodes():
    x = ndl.Tensor([1.0, 2.0, 3.0])
    y = (x * x + x * 3.0).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 3)


def test_deep_graph_does_not_hit_the_recursion_limit():
    x = ndl.Tensor([1.0])
    y = x
    for _ in range(3000):
        y = y + 1.0
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0])


def test_make_from_op_detaches_when_no_input_requires_grad():
    a = ndl.Tensor([1.0, 2.0], requires_grad=False)
    b = a * 2.0
    assert b.is_leaf() and not b.requires_grad and b.inputs == []
    c = ndl.Tensor([1.0, 2.0]) * 2.0
    assert not c.is_leaf() and c.requires_grad


def test_tensor_defaults():
    t = ndl.Tensor([[1, 2], [3, 4]])
    assert t.requires_grad
    assert t.dtype == "float32"
    assert t.device == ndl.default_device() == ndl.cpu_numpy()
    assert repr(ndl.cpu_numpy()) == "cpu_numpy()"
    assert repr(t).startswith("needle.Tensor(")


def test_tensor_counter_tracks_live_values():
    before = autograd.TENSOR_COUNTER
    a = ndl.Tensor([1.0, 2.0])
    b = a + 1.0
    assert autograd.TENSOR_COUNTER == before + 2
    del a, b
    assert autograd.TENSOR_COUNTER == before


def test_detach_and_data_setter():
    a = ndl.Tensor([1.0, 2.0])
    d = a.data
    assert d.is_leaf() and not d.requires_grad
    a.data = ndl.Tensor([5.0, 6.0])
    np.testing.assert_array_equal(a.numpy(), [5.0, 6.0])
    with pytest.raises(TypeError, match="dtype mismatch in Tensor.data: float32 vs int8"):
        a.data = ndl.Tensor([1, 2], dtype="int8")


@pytest.mark.parametrize("device", DEVICES)
def test_integer_tensors_never_require_grad(device):
    i = ndl.Tensor([1, 2, 3], device=device, dtype="int8", requires_grad=True)
    assert not i.requires_grad and i.dtype == "int8"
    f = ndl.Tensor([1.0, 2.0, 3.0], device=device)
    cast = f.astype("int32")
    assert cast.dtype == "int32" and not cast.requires_grad
    with pytest.raises(TypeError, match=r"backward through an integer tensor \(int32\)"):
        cast.backward()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_astype_gradient_casts_back(dtype, device):
    x = tensor((3, 4), device)
    y = x.astype(dtype)
    assert y.dtype == dtype
    (y * 2.0).sum().backward()
    assert x.grad.dtype == "float32"
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 4), 2.0, np.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_dtype_is_honoured_by_tensor_construction_and_ops(device):
    t = ndl.Tensor(np.ones((2, 3)), device=device, dtype="float16")
    assert t.dtype == "float16"
    assert (t + t).dtype == "float16"
    assert ndl.Tensor(t, dtype="float32").dtype == "float32"
    assert ndl.Tensor(t).realize_cached_data() is t.realize_cached_data()


def test_tensor_tuple_add_and_repr():
    x = tensor((2,), ndl.cpu_numpy())
    t = ndl.make_tuple(x, x * 2.0)
    s = t + t
    assert isinstance(s, ndl.TensorTuple) and len(s) == 2
    np.testing.assert_allclose(s[1].numpy(), 4 * x.numpy())
    assert repr(t).startswith("needle.TensorTuple(")


def test_lazy_mode_defers_computation():
    autograd.LAZY_MODE = True
    try:
        y = ndl.Tensor([1.0]) + 1.0
        assert y.cached_data is None
        np.testing.assert_array_equal(y.numpy(), [2.0])
    finally:
        autograd.LAZY_MODE = False


def _run_with_backend(backend, code):
    env = {"NEEDLE_BACKEND": backend, "PATH": ""}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_unknown_backend_is_a_runtime_error_naming_valid_values():
    res = _run_with_backend("tf", "import needle")
    assert res.returncode != 0
    assert "RuntimeError" in res.stderr and "valid values: nd, np" in res.stderr


def test_numpy_backend_trains_a_linear_model():
    code = (
        "import numpy as np, needle as ndl\n"
        "assert ndl.array_api is np and ndl.BACKEND == 'np'\n"
        "x = ndl.Tensor(np.random.randn(4, 3)); w = ndl.Tensor(np.random.randn(3, 2))\n"
        "(ndl.relu(x @ w)).sum().backward()\n"
        "assert w.grad.shape == (3, 2) and w.dtype == 'float32'\n"
        "assert repr(x.device) == 'needle.cpu()'\n"
        "print('ok')\n"
    )
    res = _run_with_backend("np", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
