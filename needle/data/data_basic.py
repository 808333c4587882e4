"""Dataset base class and DataLoader (course batching and shuffling order)."""
import numpy as np

from needle.autograd import Tensor

__all__ = ["Dataset", "DataLoader"]


class Dataset:
    """Abstract dataset: ``__getitem__`` returns a tuple of numpy arrays, ``__len__`` a count.

    Parameters
    ----------
    transforms : list of callables, optional
        Applied in order to each sample by :meth:`apply_transforms`.
    """

    def __init__(self, transforms=None):
        self.transforms = transforms

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError

    def apply_transforms(self, x):
        for transform in self.transforms or ():
            x = transform(x)
        return x


def _to_backend_dtype(array):
    """NDArray has no 64-bit dtypes: float64 -> float32, int64 -> int32 (range-checked)."""
    array = np.asarray(array)
    if array.dtype == np.float64:
        return array.astype(np.float32)
    if array.dtype.kind in "iu" and array.itemsize == 8:
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError("DataLoader: int64 batch values do not fit int32")
        return array.astype(np.int32)
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    return array


def _batch_tensor(array, device):
    # Tensor(dtype=None) means float32 for numpy input; keep integer labels integer.
    array = _to_backend_dtype(array)
    return Tensor(array, device=device, dtype=array.dtype.name, requires_grad=False)


class DataLoader:
    """Iterates over ``dataset`` in batches, each a tuple of Tensors.

    Without shuffling the batches are ``np.array_split(arange(n), range(bs, n, bs))``; with
    shuffling a fresh ``np.random.permutation(n)`` is split the same way at every
    ``__iter__`` (numpy global RNG, so seeded runs repeat).

    Parameters
    ----------
    dataset : Dataset
    batch_size : int
    shuffle : bool
    device : Device, optional
        Where batches are placed (default: ``Tensor``'s default device).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, device=None):
        if batch_size < 1:
            raise ValueError(f"DataLoader batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.device = device
        n = len(dataset)
        self.ordering = np.array_split(np.arange(n), range(batch_size, n, batch_size))

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.permutation(n)
            self.ordering = np.array_split(order, range(self.batch_size, n, self.batch_size))
        self._next_batch = 0
        return self

    def __next__(self):
        if self._next_batch >= len(self.ordering):
            raise StopIteration
        index = self.ordering[self._next_batch]
        self._next_batch += 1
        return tuple(_batch_tensor(a, self.device) for a in self.dataset[index])

    def __len__(self):
        return len(self.ordering)
