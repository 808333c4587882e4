"""Needle: the CMU Deep Learning Systems framework, clean-room, with dtype extensions."""

# ruff: noqa: F401, F403, I001 (re-exports; init/nn/data/optim build on ops and autograd)
from needle._defer import yield_to_user_needle as _yield_to_user_needle

# A user's own Needle on sys.path wins over this bundled one (see needle/_defer.py).
if not _yield_to_user_needle():
    from . import ops
    from .autograd import Tensor, TensorTuple, all_devices, cpu
    from .ops import *

    from . import init
    from .init import ones, ones_like, zeros, zeros_like

    from . import data, nn, optim
    from .backend_selection import *

    # Additions beyond the course API: model zoo and .npz state dicts (never pickle).
    from . import models, serialization
    from .serialization import load, save
