"""The data shipped inside the package: an MNIST train/held-out split and PTB text."""
import os

import numpy as np

from .mnist_dataset import parse_mnist
from .ptb_dataset import Corpus

__all__ = ["EMBEDDED_DIR", "load_mnist_split", "embedded_ptb", "MNIST_TRAIN_SIZE"]

EMBEDDED_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "embedded")
MNIST_TRAIN_SIZE = 8000  # first 8,000 of the 10,000 test images; the last 2,000 are held out


def load_mnist_split(split="train", flat=False):
    """Embedded MNIST subset.

    Parameters
    ----------
    split : {"train", "heldout"}
        "train": the first 8,000 MNIST test images; "heldout": the last 2,000.
    flat : bool
        Return X as (n, 784) instead of (n, 28, 28, 1).

    Returns
    -------
    (X float32 in [0, 1], y int32 (n,))
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"load_mnist_split: split must be 'train' or 'heldout', got {split!r}")
    X, y = parse_mnist(os.path.join(EMBEDDED_DIR, "t10k-images-idx3-ubyte.gz"),
                       os.path.join(EMBEDDED_DIR, "t10k-labels-idx1-ubyte.gz"))
    part = slice(0, MNIST_TRAIN_SIZE) if split == "train" else slice(MNIST_TRAIN_SIZE, None)
    X, y = X[part], y[part]
    return (X if flat else X.reshape(-1, 28, 28, 1)), np.ascontiguousarray(y)


def embedded_ptb(max_lines=None):
    """Corpus whose ``train`` is ptb.valid.txt and ``test`` is ptb.test.txt (shared dictionary).

    Parameters
    ----------
    max_lines : int, optional
        Read at most this many lines of each file.
    """
    return Corpus(EMBEDDED_DIR, max_lines=max_lines, train_file="ptb.valid.txt",
                  test_file="ptb.test.txt")
