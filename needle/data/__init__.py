"""Datasets, loaders and transforms (course API) plus the embedded MNIST/PTB subsets."""
from .data_basic import *  # noqa: F401,F403
from .data_transforms import *  # noqa: F401,F403
from .datasets import *  # noqa: F401,F403
