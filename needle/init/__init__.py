"""Parameter initializers (course API): tensors filled from the numpy global RNG."""
from .init_basic import *  # noqa: F401,F403
from .init_initializers import *  # noqa: F401,F403
