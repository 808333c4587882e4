"""needle.init: exact numpy-RNG semantics, bounds, one_hot checks."""
import math

import numpy as np
import pytest

import needle as ndl
from tests.devices import DEVICES


@pytest.mark.parametrize("device", DEVICES)
def test_rand_uses_numpy_global_rng_in_order(device):
    np.random.seed(3)
    expected = np.random.rand(4, 5).astype(np.float32) * 4.0 - 2.0
    np.random.seed(3)
    t = ndl.init.rand(4, 5, low=-2.0, high=2.0, device=device)
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert t.dtype == "float32" and not t.requires_grad


@pytest.mark.parametrize("device", DEVICES)
def test_randn_mean_std(device):
    np.random.seed(4)
    expected = np.random.randn(3, 2).astype(np.float32) * 2.0 + 1.0
    np.random.seed(4)
    t = ndl.init.randn(3, 2, mean=1.0, std=2.0, device=device)
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_constant_ones_zeros_like(device):
    c = ndl.init.constant(2, 3, c=2.5, device=device)
    np.testing.assert_array_equal(c.numpy(), np.full((2, 3), 2.5, np.float32))
    np.testing.assert_array_equal(ndl.init.zeros_like(c).numpy(), np.zeros((2, 3)))
    ones = ndl.init.ones_like(c)
    assert ones.shape == (2, 3) and ones.dtype == "float32" and ones.device == device
    np.testing.assert_array_equal(ones.numpy(), np.ones((2, 3)))


@pytest.mark.parametrize("device", DEVICES)
def test_randb_is_rand_le_p(device):
    np.random.seed(5)
    expected = (np.random.rand(100) <= 0.3).astype(np.float32)
    np.random.seed(5)
    mask = ndl.init.randb(100, p=0.3, device=device)
    np.testing.assert_array_equal(mask.numpy(), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("id_dtype", ["float32", "int32"])
def test_one_hot_accepts_float_and_int_ids(device, id_dtype):
    ids = ndl.Tensor(np.array([2, 0, 1]), device=device, dtype=id_dtype)
    got = ndl.init.one_hot(4, ids, device=device).numpy()
    np.testing.assert_array_equal(got, np.eye(4, dtype=np.float32)[[2, 0, 1]])


def test_one_hot_rejects_out_of_range_and_fractional_ids():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ndl.init.one_hot(3, ndl.Tensor(np.array([0.0, 3.0], np.float32)), device=ndl.cpu_numpy())
    with pytest.raises(ValueError, match="whole numbers"):
        ndl.init.one_hot(3, ndl.Tensor(np.array([0.5], np.float32)), device=ndl.cpu_numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_kaiming_uniform_exact_values_and_shape_override(device):
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 6)
    np.random.seed(0)
    expected = np.random.rand(6, 4).astype(np.float32) * 2 * bound - bound
    np.random.seed(0)
    w = ndl.init.kaiming_uniform(6, 4, device=device)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5, atol=1e-6)
    conv = ndl.init.kaiming_uniform(27, 48, shape=(3, 3, 3, 16), device=device)
    assert conv.shape == (3, 3, 3, 16)
    assert np.abs(conv.numpy()).max() <= math.sqrt(2.0) * math.sqrt(3.0 / 27)


@pytest.mark.parametrize("device", DEVICES)
def test_xavier_and_kaiming_normal_scales(device):
    np.random.seed(1)
    expected = np.random.randn(5, 7).astype(np.float32) * (0.5 * math.sqrt(2.0 / 12))
    np.random.seed(1)
    got = ndl.init.xavier_normal(5, 7, gain=0.5, device=device).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.random.seed(1)
    big = ndl.init.kaiming_normal(400, 300, device=device).numpy()
    assert abs(big.std() - math.sqrt(2.0 / 400)) < 0.002
    a = math.sqrt(6.0 / 12)
    assert np.abs(ndl.init.xavier_uniform(5, 7, device=device).numpy()).max() <= a


def test_kaiming_rejects_other_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity"):
        ndl.init.kaiming_uniform(3, 3, nonlinearity="tanh", device=ndl.cpu_numpy())
