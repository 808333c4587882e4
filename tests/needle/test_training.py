"""End-to-end training on the embedded MNIST split (slow, seeded, deterministic)."""
import numpy as np
import pytest

from needle import models
from needle.data import load_mnist_split
from tests.needle.training_helpers import fit, training_device


@pytest.mark.slow
def test_mlp_reaches_95_percent_on_heldout():
    device = training_device()
    np.random.seed(0)
    X, y = load_mnist_split("train", flat=True)
    Xh, yh = load_mnist_split("heldout", flat=True)
    model = fit(models.MLP(784, hidden=(256,), device=device), X, y, epochs=5, lr=1e-3,
                batch_size=64, device=device)
    assert models.accuracy(model, Xh, yh, device=device) >= 0.95
