"""Xavier/Kaiming initializers (course API): shape (fan_in, fan_out) unless ``shape`` is given."""
import math

from .init_basic import rand, randn

__all__ = ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]


def _relu_gain(nonlinearity):
    if nonlinearity != "relu":
        raise ValueError(f"kaiming init supports nonlinearity='relu' only, got {nonlinearity!r}")
    return math.sqrt(2.0)


def _check_fan(fan_in, name="fan_in"):
    if fan_in <= 0:
        raise ValueError(f"{name} must be positive, got {fan_in}")


def xavier_uniform(fan_in, fan_out, gain=1.0, shape=None, **kwargs):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    _check_fan(fan_in + fan_out, "fan_in + fan_out")
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rand(*(shape or (fan_in, fan_out)), low=-a, high=a, **kwargs)


def xavier_normal(fan_in, fan_out, gain=1.0, shape=None, **kwargs):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check_fan(fan_in + fan_out, "fan_in + fan_out")
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return randn(*(shape or (fan_in, fan_out)), mean=0.0, std=std, **kwargs)


def kaiming_uniform(fan_in, fan_out, shape=None, nonlinearity="relu", **kwargs):
    """U(-b, b) with b = sqrt(2) * sqrt(3 / fan_in); ``shape`` overrides (fan_in, fan_out)."""
    _check_fan(fan_in)
    bound = _relu_gain(nonlinearity) * math.sqrt(3.0 / fan_in)
    return rand(*(shape or (fan_in, fan_out)), low=-bound, high=bound, **kwargs)


def kaiming_normal(fan_in, fan_out, shape=None, nonlinearity="relu", **kwargs):
    """N(0, std^2) with std = sqrt(2) / sqrt(fan_in); ``shape`` overrides (fan_in, fan_out)."""
    _check_fan(fan_in)
    std = _relu_gain(nonlinearity) / math.sqrt(fan_in)
    return randn(*(shape or (fan_in, fan_out)), mean=0.0, std=std, **kwargs)
