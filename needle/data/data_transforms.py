"""Random image augmentations on H x W x C numpy images (numpy global RNG)."""
import numpy as np

__all__ = ["Transform", "RandomFlipHorizontal", "RandomCrop"]


class Transform:
    """Callable on one H x W x C image."""

    def __call__(self, x):
        raise NotImplementedError


def _check_image(img, where):
    if np.ndim(img) != 3:
        raise ValueError(f"{where}: expected an H x W x C image, got shape {np.shape(img)}")


class RandomFlipHorizontal(Transform):
    """Mirror left-right with probability ``p`` (decided by ``np.random.rand() < p``)."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        _check_image(img, "RandomFlipHorizontal")
        flip_img = np.random.rand() < self.p
        return img[:, ::-1, :] if flip_img else img


class RandomCrop(Transform):
    """Zero-pad by ``padding`` then crop back to H x W at a random shift in [-pad, pad]^2."""

    def __init__(self, padding=3):
        self.padding = padding

    def __call__(self, img):
        _check_image(img, "RandomCrop")
        pad = self.padding
        shift_x, shift_y = np.random.randint(low=-pad, high=pad + 1, size=2)
        h, w, _ = img.shape
        padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
        return padded[pad + shift_x: pad + shift_x + h, pad + shift_y: pad + shift_y + w, :]
