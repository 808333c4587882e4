"""MNIST from idx .gz files: images float32 in [0, 1] of shape (28, 28, 1), int32 labels."""
import gzip
import os
import struct
import zlib

import numpy as np

from .image_dataset import ImageArrayDataset

__all__ = ["MNISTDataset", "parse_mnist", "read_idx"]

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def _read_gz(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"idx file not found: {path}")
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: not a readable gzip file ({err})") from err


def read_idx(path, magic):
    """Read a gzip idx file with the given big-endian ``magic`` (2051 images, 2049 labels).

    Returns
    -------
    numpy.ndarray of uint8 with shape (count,) or (count, rows, cols).
    """
    raw = _read_gz(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        found = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
        raise ValueError(f"{path}: expected idx magic {magic}, found {found}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise ValueError(f"{path}: idx header says {dims} ({expected} bytes of data), "
                         f"file has {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def parse_mnist(image_filename, label_filename):
    """(X float32 (n, 784) in [0, 1], y int32 (n,)) from idx .gz files (hw0/hw1 helper)."""
    images = read_idx(image_filename, IMAGES_MAGIC)
    labels = read_idx(label_filename, LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{image_filename} has {len(images)} images but {label_filename} "
                         f"has {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return X, labels.astype(np.int32)


class MNISTDataset(ImageArrayDataset):
    """MNIST samples ``(image (28, 28, 1) float32, label int32)``; index arrays give batches."""

    def __init__(self, image_filename, label_filename, transforms=None):
        super().__init__(transforms)
        X, self.y = parse_mnist(image_filename, label_filename)
        self.X = X.reshape(-1, 28, 28, 1)
