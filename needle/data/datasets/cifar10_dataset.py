"""CIFAR-10 from the python batches (``cifar-10-batches-py``), read by a restricted unpickler.

The course format is a pickled dict per batch. Plain ``pickle.load`` would run arbitrary code
from a tampered file, so only the globals needed to rebuild numpy arrays are allowed; anything
else is refused with an error naming the file and the global.
"""
import os
import pickle

import numpy as np

from .image_dataset import ImageArrayDataset

__all__ = ["CIFAR10Dataset", "load_cifar_batch"]

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 spell bytes this way
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self.path}: refusing to load global {module}.{name}; CIFAR-10 batches "
                "contain only dicts, lists, bytes and numpy arrays")
        return super().find_class(module, name)


def _key(batch, name):
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    raise KeyError(name)


def load_cifar_batch(path):
    """(X uint8 (n, 3, 32, 32), y int32 (n,)) from one pickled CIFAR-10 batch file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-10 batch not found: {path}")
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnlyUnpickler(f, path).load()
        data, labels = np.asarray(_key(batch, "data")), np.asarray(_key(batch, "labels"))
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({err})") from err
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' must be uint8 (n, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int32)


class CIFAR10Dataset(ImageArrayDataset):
    """CIFAR-10 images (3, 32, 32) float32 in [0, 1] and int32 labels.

    Parameters
    ----------
    base_folder : str
        The extracted ``cifar-10-batches-py`` folder.
    train : bool
        data_batch_1..5 if True, else test_batch.
    p : float
        Unused; kept for the course signature.
    transforms : list, optional
        Applied to each (3, 32, 32) image.
    """

    def __init__(self, base_folder, train, p=0.5, transforms=None):
        super().__init__(transforms)
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        parts = [load_cifar_batch(os.path.join(base_folder, n)) for n in names]
        self.X = np.concatenate([x for x, _ in parts]).astype(np.float32) / 255.0
        self.y = np.concatenate([y for _, y in parts])
