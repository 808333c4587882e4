"""Shared helpers for the pass tests: graphs from text, numbers before vs after, BN models."""

import numpy as np
import pytest

import needle as ndl
from needle_qc.ir.graph import Graph


def parse(text, **tensors):
    """A linted graph from ``text`` with ``tensors`` given by key."""
    return Graph.parse(text, {k: np.asarray(v, np.float32) for k, v in tensors.items()}).lint()


def run(graph, *inputs):
    """The graph's single result as float64 numpy, on the numpy backend (deterministic)."""
    return graph(*inputs, device=ndl.cpu_numpy()).numpy().astype(np.float64)


def assert_same_numbers(before, after, *inputs, rtol=1e-6, atol=1e-6):
    np.testing.assert_allclose(run(after, *inputs), run(before, *inputs), rtol=rtol, atol=atol)


def randomize_batchnorms(model, seed=0):
    """Give every BatchNorm non-trivial running stats and affine params (eval mode)."""
    rng = np.random.default_rng(seed)
    for module in _modules(model):
        if isinstance(module, ndl.nn.BatchNorm1d):
            c, device = module.dim, module.weight.device
            for name, values in (("running_mean", rng.standard_normal(c)),
                                 ("running_var", rng.uniform(0.5, 2.0, c)),
                                 ("weight", rng.uniform(0.5, 1.5, c)),
                                 ("bias", rng.standard_normal(c))):
                setattr(module, name, ndl.Tensor(values.astype(np.float32), device=device))
    model.eval()
    return model


def _modules(module):
    found = [module]
    for value in vars(module).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, ndl.nn.Module):
                found += _modules(item)
    return found


@pytest.fixture
def rng():
    return np.random.default_rng(0)
