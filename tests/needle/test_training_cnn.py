"""SmallCNN training on the embedded MNIST split (its own file so xdist runs it beside the MLP)."""
import numpy as np
import pytest

import needle as ndl
from needle import models
from needle.data import DataLoader, NDArrayDataset, load_mnist_split


def _device():
    # The numpy backend is always built and is the faster one for these convolutions; the
    # thresholds were measured on it (other backends sum in another order).
    return ndl.cpu_numpy()


def _fit(model, X, y, epochs, lr, batch_size, device):
    opt = ndl.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(NDArrayDataset(X, y), batch_size=batch_size, shuffle=True, device=device)
    for _ in range(epochs):
        models.train_epoch(model, loader, opt)
    return model


def to_nchw(images):
    # C = 1, so (n, 28, 28, 1) and (n, 1, 28, 28) have the same memory order.
    return images.reshape(-1, 1, 28, 28)


@pytest.mark.slow
def test_small_cnn_reaches_97_percent_on_heldout():
    device = _device()
    np.random.seed(0)
    X, y = load_mnist_split("train")
    Xh, yh = load_mnist_split("heldout")
    model = _fit(models.SmallCNN(device=device), to_nchw(X), y, epochs=2, lr=2e-3,
                 batch_size=64, device=device)
    assert models.accuracy(model, to_nchw(Xh), yh, device=device) >= 0.97
