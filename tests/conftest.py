"""Shared pytest fixtures: a ``device`` fixture over every enabled device, seeded numpy RNG."""

import numpy as np
import pytest

from tests.devices import DEVICES


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device of tests.devices.DEVICES (C++/CUDA skip visibly when not available)."""
    return request.param


@pytest.fixture(autouse=True)
def _seed_numpy_global_rng():
    # needle's init/dropout/data use numpy's global RNG: every test starts from the same state.
    np.random.seed(0)
