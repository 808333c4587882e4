"""Save/load state dicts as .npz (numpy arrays only, never pickle)."""
import os
import zipfile

import numpy as np

__all__ = ["save", "load"]


def save(obj, path):
    """Write a state dict (or a Module's ``state_dict()``) to ``path`` as an uncompressed .npz.

    The file is written to exactly ``path`` (no ``.npz`` suffix is appended).
    """
    state = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if not isinstance(state, dict):
        raise TypeError(f"save expects a Module or a dict, got {type(obj).__name__}")
    arrays = {}
    for key, value in state.items():
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"save: key {key!r} has non-numeric dtype {array.dtype}")
        arrays[str(key)] = array
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path):
    """Read a state dict written by :func:`save`: dict name -> numpy array."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: not a readable needle .npz checkpoint ({err})") from err
