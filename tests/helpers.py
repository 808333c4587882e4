"""Numerical-gradient checking and small comparison helpers for the needle tests."""

import numpy as np

import needle as ndl


def _objective(fn, args, weights):
    out = fn(*args)
    return float((out.numpy().astype(np.float64) * weights).sum())


def numerical_gradients(fn, args, weights, eps=1e-3):
    """Central differences of sum(fn(*args) * weights) w.r.t. every element of every arg."""
    grads = []
    for arg in args:
        base = arg.numpy().astype(np.float64).copy()
        grad = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            grad[idx] = _difference(fn, args, weights, arg, base, idx, eps)
        _set_values(arg, base)
        grads.append(grad)
    return grads


def _difference(fn, args, weights, arg, base, idx, eps):
    values = base.copy()
    values[idx] += eps
    _set_values(arg, values)
    plus = _objective(fn, args, weights)
    values[idx] -= 2 * eps
    _set_values(arg, values)
    minus = _objective(fn, args, weights)
    return (plus - minus) / (2 * eps)


def _set_values(tensor, values):
    fresh = ndl.Tensor(values, device=tensor.device, dtype=tensor.dtype)
    tensor.cached_data = fresh.realize_cached_data()


def gradient_check(fn, *args, atol=1e-2, rtol=1e-2, seed=0):
    """Assert that backward() of ``fn`` matches central differences for every Tensor argument.

    ``fn`` maps Tensors to one Tensor. The scalar objective is sum(fn(*args) * W) with a fixed
    random W, so every output element contributes with a distinct weight.
    Returns the analytic gradients (numpy) for further checks.
    """
    out = fn(*args)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    w = ndl.Tensor(weights, device=out.device, dtype=out.dtype, requires_grad=False)
    for arg in args:
        arg.grad = None
    (out * w).sum().backward()
    analytic = [arg.grad.numpy().astype(np.float64) for arg in args]
    numeric = numerical_gradients(fn, args, weights)
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        np.testing.assert_allclose(a, n, atol=atol, rtol=rtol, err_msg=f"gradient of arg {i}")
    return analytic


def tensor(shape, device, seed=0, dtype="float32", low=None):
    """A seeded standard-normal Tensor (shifted to be > ``low`` when given)."""
    values = np.random.default_rng(seed).standard_normal(shape)
    if low is not None:
        values = np.abs(values) + low
    return ndl.Tensor(values.astype(np.float32), device=device, dtype=dtype)
