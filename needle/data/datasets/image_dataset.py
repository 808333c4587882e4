"""Base of the image datasets held in memory as ``self.X`` (n, 3-d image) and ``self.y`` (n,)."""
import numpy as np

from ..data_basic import Dataset

__all__ = ["ImageArrayDataset"]


class ImageArrayDataset(Dataset):
    """``dataset[i]`` -> ``(X[i], y[i])``; transforms apply per image, also inside a batch.

    Subclasses set ``self.X`` (n images, each 3-d) and ``self.y`` (n labels) in ``__init__``.
    """

    def __getitem__(self, index):
        X = self.X[index]
        if self.transforms:
            # an index array gives a batch: the transforms take one image at a time
            if X.ndim == 3:
                X = self.apply_transforms(X)
            else:
                X = np.stack([self.apply_transforms(x) for x in X])
        return X, self.y[index]

    def __len__(self):
        return len(self.y)
