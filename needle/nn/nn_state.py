"""Loading a state dict into a Module: key/shape checks with errors that name the keys."""
import numpy as np

from needle.autograd import Tensor


def _targets(module):
    """name -> Tensor for every parameter and buffer of ``module``."""
    targets = {name: t for name, t in module.named_parameters()}
    targets.update(module.named_buffers())
    return targets


def _check_keys(targets, state_dict, strict):
    missing = [k for k in targets if k not in state_dict]
    unexpected = [k for k in state_dict if k not in targets]
    if strict and (missing or unexpected):
        raise KeyError(
            f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
        )
    return missing, unexpected


def _checked_value(name, tensor, value):
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"load_state_dict: key {name!r} holds non-numeric dtype {array.dtype}")
    if tuple(array.shape) != tuple(tensor.shape):
        raise ValueError(
            f"load_state_dict: key {name!r} has shape {tuple(array.shape)}, "
            f"the module expects {tuple(tensor.shape)}"
        )
    return array


def _assign(tensor, array):
    # Swap the data in place so optimizers holding this Parameter keep working.
    new = Tensor(array, device=tensor.device, dtype=tensor.dtype, requires_grad=False)
    tensor.cached_data = new.realize_cached_data()


def load_into(module, state_dict, strict):
    """Implementation of Module.load_state_dict."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"load_state_dict expects a dict, got {type(state_dict).__name__}")
    targets = _targets(module)
    missing, unexpected = _check_keys(targets, state_dict, strict)
    present = [k for k in targets if k in state_dict]
    arrays = {k: _checked_value(k, targets[k], state_dict[k]) for k in present}
    for name, array in arrays.items():
        _assign(targets[name], array)
    return missing, unexpected
