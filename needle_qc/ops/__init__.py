"""Public quantized ops with ONNX opset 21 names and signatures (NumPy in, NumPy out).

Every function takes ``backend=`` ("reference" = the NumPy reference in
``needle_qc.quantize.reference``). Native kernels plug in with :func:`register_backend` and must
return bit-identical results (contract §2.10).
"""
from __future__ import annotations

from typing import Callable

from needle_qc.quantize import reference as _ref

OP_NAMES = ("quantize_linear", "dequantize_linear", "dynamic_quantize_linear", "qlinear_matmul",
            "qlinear_conv", "matmul_integer", "conv_integer")
_BACKENDS: dict[str, dict[str, Callable]] = {
    "reference": {name: getattr(_ref, name) for name in OP_NAMES},
}


def register_backend(name: str, impls: dict[str, Callable]) -> None:
    """Register (or replace) a backend: ``impls`` maps op names from ``OP_NAMES`` to callables
    with the reference signature. Ops a backend lacks are reported when called, never rerouted."""
    unknown = sorted(set(impls) - set(OP_NAMES))
    if unknown:
        raise ValueError(f"register_backend: unknown ops {unknown}; valid: {list(OP_NAMES)}")
    if name == "reference":
        raise ValueError("register_backend: 'reference' is built in and cannot be replaced")
    _BACKENDS[name] = dict(impls)


def available_backends() -> list[str]:
    """Names of registered backends."""
    return sorted(_BACKENDS)


def _impl(op: str, backend: str) -> Callable:
    if backend not in _BACKENDS:
        raise ValueError(f"{op}: backend={backend!r}; valid: {available_backends()}")
    table = _BACKENDS[backend]
    if op not in table:
        raise NotImplementedError(f"{op}: backend {backend!r} does not implement this op")
    return table[op]


def quantize_linear(x, y_scale, y_zero_point=None, axis=1, block_size=0, saturate=1,
                    output_dtype=None, *, backend="reference"):
    """ONNX QuantizeLinear; see :func:`needle_qc.quantize.reference.quantize_linear`."""
    return _impl("quantize_linear", backend)(x, y_scale, y_zero_point, axis=axis,
                                              block_size=block_size, saturate=saturate,
                                              output_dtype=output_dtype)


def dequantize_linear(x, x_scale, x_zero_point=None, axis=1, block_size=0, *,
                      backend="reference"):
    """ONNX DequantizeLinear; see :func:`needle_qc.quantize.reference.dequantize_linear`."""
    return _impl("dequantize_linear", backend)(x, x_scale, x_zero_point, axis=axis,
                                                block_size=block_size)


def dynamic_quantize_linear(x, *, backend="reference"):
    """ONNX DynamicQuantizeLinear -> ``(y, y_scale, y_zero_point)``."""
    return _impl("dynamic_quantize_linear", backend)(x)


def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point, *,
                   backend="reference"):
    """ONNX QLinearMatMul; see :func:`needle_qc.quantize.reference.qlinear_matmul`."""
    return _impl("qlinear_matmul", backend)(a, a_scale, a_zero_point, b, b_scale, b_zero_point,
                                             y_scale, y_zero_point)


def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                 B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                 pads=None, strides=None, *, backend="reference"):
    """ONNX QLinearConv (2-D NCHW); see :func:`needle_qc.quantize.reference.qlinear_conv`."""
    return _impl("qlinear_conv", backend)(
        x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B,
        auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
        pads=pads, strides=strides)


def matmul_integer(A, B, a_zero_point=None, b_zero_point=None, *, backend="reference"):
    """ONNX MatMulInteger -> int32."""
    return _impl("matmul_integer", backend)(A, B, a_zero_point, b_zero_point)


def conv_integer(x, w, x_zero_point=None, w_zero_point=None, auto_pad="NOTSET", dilations=None,
                 group=1, kernel_shape=None, pads=None, strides=None, *, backend="reference"):
    """ONNX ConvInteger (2-D NCHW) -> int32."""
    return _impl("conv_integer", backend)(
        x, w, x_zero_point, w_zero_point, auto_pad=auto_pad, dilations=dilations, group=group,
        kernel_shape=kernel_shape, pads=pads, strides=strides)


from needle_qc.ops.native import register as _register_native  # noqa: E402

_register_native()
