"""Parameter and Module: parameter discovery by attribute walk, naming and state dicts."""
import numpy as np

from needle.autograd import Tensor

__all__ = ["Parameter", "Module"]


class Parameter(Tensor):
    """A Tensor that a Module reports as trainable."""


def _walk(value, prefix, want):
    """Yield (dotted_name, obj) for objects of type ``want`` in attribute order.

    The walk follows Module attributes, list/tuple indices and dict keys, and stops at
    Modules when ``want`` is Parameter (the child reports its own parameters), which gives
    the same order as the course's ``parameters()``.
    """
    if isinstance(value, want):
        yield prefix, value
    if isinstance(value, Module):
        for key, child in value.__dict__.items():
            yield from _walk(child, _join(prefix, key), want)
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, _join(prefix, str(key)), want)
    elif isinstance(value, (list, tuple)):
        for index, child in enumerate(value):
            yield from _walk(child, _join(prefix, str(index)), want)


def _join(prefix, key):
    return f"{prefix}.{key}" if prefix else key


class Module:
    """Base class: subclasses set attributes in ``__init__`` and implement ``forward``.

    Parameters are found by walking attributes (Parameters, Modules, lists, tuples, dicts).
    Non-trainable state that belongs in a state dict (BatchNorm running statistics) is named
    in the class attribute ``_buffer_names``.
    """

    _buffer_names = ()

    def __init__(self):
        self.training = True

    def parameters(self):
        """All Parameters, in attribute order (duplicates kept, as in the course)."""
        return [p for _, p in self.named_parameters()]

    def named_parameters(self):
        """List of (dotted_name, Parameter), e.g. ``("modules.0.weight", p)``."""
        return [(n, p) for n, p in _walk(self, "", Parameter) if isinstance(p, Parameter)]

    def named_modules(self):
        """List of (dotted_name, Module) including ``("", self)`` first."""
        return list(_walk(self, "", Module))

    def _children(self):
        return [m for name, m in self.named_modules() if name]

    def named_buffers(self):
        """List of (dotted_name, Tensor) of every module's ``_buffer_names`` attributes."""
        out = []
        for name, module in self.named_modules():
            for buf in module._buffer_names:
                out.append((_join(name, buf), getattr(module, buf)))
        return out

    def eval(self):
        """Switch this module and all children to inference mode."""
        for _, m in self.named_modules():
            m.training = False
        return self

    def quantize(self, data_type="int8", **kwargs):
        """Weight-only quantized copy of this module (see ``needle.quantization.quantize``)."""
        from needle import quantization

        return quantization.quantize(self, data_type=data_type, **kwargs)

    def train(self):
        """Switch this module and all children to training mode."""
        for _, m in self.named_modules():
            m.training = True
        return self

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def state_dict(self):
        """Dict name -> numpy array copy of every Parameter and buffer."""
        items = self.named_parameters() + self.named_buffers()
        return {name: np.array(t.numpy(), copy=True) for name, t in items}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        Parameters
        ----------
        state_dict : dict[str, array-like]
            As returned by :meth:`state_dict` or :func:`needle.load`.
        strict : bool
            If True, missing or unexpected keys raise KeyError naming them.

        Returns
        -------
        (missing, unexpected) : tuple of lists of key names.
        """
        from . import nn_state

        return nn_state.load_into(self, state_dict, strict)
