"""SmallCNN training on the embedded MNIST split (its own file so xdist runs it beside the MLP)."""
import numpy as np
import pytest

from needle import models
from needle.data import load_mnist_split
from tests.needle.training_helpers import fit, to_nchw, training_device


@pytest.mark.slow
def test_small_cnn_reaches_97_percent_on_heldout():
    device = training_device()
    np.random.seed(0)
    X, y = load_mnist_split("train")
    Xh, yh = load_mnist_split("heldout")
    model = fit(models.SmallCNN(device=device), to_nchw(X), y, epochs=2, lr=2e-3,
                batch_size=64, device=device)
    assert models.accuracy(model, to_nchw(Xh), yh, device=device) >= 0.97
