"""2-D convolution module with NCHW input and output ("same" padding k // 2)."""
import math

import needle.init as init
from needle import ops

from .nn_module import Module, Parameter

__all__ = ["Conv"]


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


class Conv(Module):
    """Square-kernel convolution, NCHW in/out, zero padding ``kernel_size // 2``.

    Weight (k, k, in, out) is kaiming-uniform with fan_in = in*k*k; bias (out,) is
    U(+-1/sqrt(in*k*k)); the weight is drawn before the bias (course RNG order).
    Tuple ``kernel_size``/``stride`` use their first element (course behaviour).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, bias=True,
                 device=None, dtype="float32"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _first(kernel_size), _first(stride)
        k = self.kernel_size
        self.weight = Parameter(init.kaiming_uniform(
            in_channels * k * k, out_channels * k * k, shape=(k, k, in_channels, out_channels),
            device=device, dtype=dtype, requires_grad=True))
        self.bias = None
        if bias:
            bound = 1.0 / math.sqrt(in_channels * k * k)
            self.bias = Parameter(init.rand(
                out_channels, low=-bound, high=bound, device=device, dtype=dtype,
                requires_grad=True))

    def forward(self, x):
        if len(x.shape) != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv({self.in_channels}->{self.out_channels}): expected NCHW input with "
                f"{self.in_channels} channels, got shape {x.shape}")
        nhwc = ops.transpose(ops.transpose(x, (1, 2)), (2, 3))
        out = ops.conv(nhwc, self.weight, stride=self.stride, padding=self.kernel_size // 2)
        if self.bias is not None:
            b = ops.reshape(self.bias, (1, 1, 1, self.out_channels))
            out = out + ops.broadcast_to(b, out.shape)
        return ops.transpose(ops.transpose(out, (2, 3)), (1, 2))
