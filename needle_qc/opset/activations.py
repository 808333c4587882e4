"""Fused activations: the values a layer's ``activation`` attr may take, and how each stage
applies them (Needle evaluation, numpy float evaluation, the quantized output stage's clamp)."""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from needle_qc.errors import IRError


@dataclass(frozen=True)
class Activation:
    """One fused activation.

    Attributes
    ----------
    name : str
        The attr value (``activation="relu"``).
    on_tensor : callable
        ``on_tensor(ops, t)`` with the framework's ``ops`` module: what the interpreter applies.
    on_array : callable
        ``on_array(y)`` on float32 numpy arrays: what fp32 kernels' outputs get.
    clamp : callable or None
        ``clamp(s_y, z_y, qmin, qmax) -> (qmin, qmax)``: the activation as the clamp of a
        quantized output. Exact for monotone activations that are the identity between two
        bounds (rounding is monotone, so ``q(min(max(y, lo), hi)) == clamp(q(y), q(lo), q(hi))``).
        None: no integer form (a layer with it keeps a float output).
    """

    name: str
    on_tensor: Callable
    on_array: Callable
    clamp: Callable | None = None


_ACTIVATIONS: dict[str, Activation] = {}


def register_activation(activation, *, replace=False):
    """Add ``activation`` to the table; re-registering a name needs ``replace=True``."""
    if not isinstance(activation, Activation):
        raise IRError(f"register_activation expects an Activation, got {activation!r}")
    if activation.name in _ACTIVATIONS and not replace:
        raise IRError(f"activation {activation.name!r} is already registered")
    _ACTIVATIONS[activation.name] = activation
    return activation


def unregister_activation(name):
    """Remove activation ``name`` (for tests that add throwaway activations)."""
    get_activation(name)
    del _ACTIVATIONS[name]


def get_activation(name):
    """The Activation called ``name`` (None for None); IRError naming the valid ones."""
    if name is None:
        return None
    try:
        return _ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise IRError(f"unknown activation {name!r}; valid: {', '.join(_ACTIVATIONS)} "
                      "or None") from None


def apply_to_array(name, y):
    """``y`` (float32 numpy) through activation ``name`` (unchanged for None)."""
    act = get_activation(name)
    return y if act is None else act.on_array(y)


def apply_to_tensor(name, ops, t):
    """Needle tensor ``t`` through activation ``name`` with the framework's ``ops``."""
    act = get_activation(name)
    return t if act is None else act.on_tensor(ops, t)


def output_clamp(name, s_y, z_y, qmin, qmax):
    """The ``(qmin, qmax)`` of a quantized output fused with activation ``name``."""
    act = get_activation(name)
    if act is None:
        return qmin, qmax
    if act.clamp is None:
        raise IRError(f"activation {name!r} has no integer form (not a clamp): its layer must "
                      "keep a float output")
    return act.clamp(s_y, z_y, qmin, qmax)


register_activation(Activation(
    "relu",
    on_tensor=lambda ops, t: ops.relu(t),
    on_array=lambda y: np.maximum(y, np.float32(0)),
    clamp=lambda s_y, z_y, qmin, qmax: (z_y, qmax),  # q(0) == z_y
))
