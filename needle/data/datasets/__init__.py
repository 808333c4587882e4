"""Concrete datasets: MNIST (idx .gz), in-memory arrays, CIFAR-10, Penn Treebank, embedded."""
from .cifar10_dataset import *  # noqa: F401,F403
from .embedded import *  # noqa: F401,F403
from .mnist_dataset import *  # noqa: F401,F403
from .ndarray_dataset import *  # noqa: F401,F403
from .ptb_dataset import *  # noqa: F401,F403
