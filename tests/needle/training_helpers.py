"""Shared helpers of the MNIST training tests (device choice, a seeded fit, NHWC -> NCHW)."""
import needle as ndl
from needle import models
from needle.data import DataLoader, NDArrayDataset


def training_device():
    """The device the training thresholds were measured on."""
    # The numpy backend is always built and is the faster one for these convolutions; the
    # thresholds were measured on it (other backends sum in another order).
    return ndl.cpu_numpy()


def fit(model, X, y, epochs, lr, batch_size, device):
    """Train ``model`` with Adam for ``epochs`` shuffled passes over (X, y); returns it."""
    opt = ndl.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(NDArrayDataset(X, y), batch_size=batch_size, shuffle=True, device=device)
    for _ in range(epochs):
        models.train_epoch(model, loader, opt)
    return model


def to_nchw(images):
    """(n, 28, 28, 1) MNIST images as (n, 1, 28, 28)."""
    # C = 1, so (n, 28, 28, 1) and (n, 1, 28, 28) have the same memory order.
    return images.reshape(-1, 1, 28, 28)
