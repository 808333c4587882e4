"""Activation fake-quant for QAT: the op table's quantize->dequantize, clipped STE, LSQ.

Forward is exactly what ``convert`` puts at an observer point: ``dequantize(quantize(x))``
with one fp32 scale and an integer zero point (ONNX formulas, :mod:`needle_qc.quantize.
reference`). Backward, with ``v = x / s`` and the grid ``[qmin, qmax]``:

* ``d/dx``: 1 where ``qmin - z <= v <= qmax - z`` (inside the range), 0 outside: the clipped
  straight-through estimator (Bengio et al. 2013, arXiv 1308.3432; as in LSQ).
* ``d/ds`` (LSQ: Esser, McKinley, Bablani, Appuswamy, Modha, *Learned Step Size
  Quantization*, ICLR 2020, arXiv 1902.08153, eq. 3): ``rint(v) - v`` inside, ``qmin - z``
  below, ``qmax - z`` above, times the gradient scale ``g = 1 / sqrt(N * Qp)`` (section 2.2)
  with ``N`` the features per sample of the tensor and ``Qp = qmax`` (255 for uint8, 127 for
  int8), summed over the tensor. The zero point stays fixed (an integer).
"""

import numpy as np

from needle_qc.quantize.qparams import CONTAINER, qrange
from needle_qc.quantize.reference import dequantize_linear, quantize_linear


def fake_quantize(x, scale, zero_point, dtype="uint8"):
    """``dequantize(quantize(x))`` as the op table evaluates it (float32 out)."""
    s, z = np.float32(scale), np.asarray(int(zero_point), CONTAINER[dtype])
    q = quantize_linear(np.asarray(x, np.float32), s, z)
    return dequantize_linear(q, s, z).astype(np.float32)


def _position(x, scale, zero_point, dtype):
    """``(v, below, above)``: ``x / s`` (fp32 division) and where it leaves the grid."""
    qmin, qmax = qrange(dtype)
    v = np.divide(np.asarray(x, np.float32), np.float32(scale), dtype=np.float32)
    return v, v < qmin - zero_point, v > qmax - zero_point


def clipped_ste_grad(out_grad, x, scale, zero_point, dtype="uint8"):
    """``d loss / d x``: ``out_grad`` inside the range, 0 outside."""
    _, below, above = _position(x, scale, zero_point, dtype)
    return np.where(below | above, np.float32(0), out_grad).astype(np.float32)


def lsq_grad_scale(features, dtype="uint8"):
    """LSQ's ``g = 1 / sqrt(N * Qp)`` for a tensor of ``features`` values per sample."""
    return float(1.0 / np.sqrt(float(features) * qrange(dtype)[1]))


def lsq_scale_grad(out_grad, x, scale, zero_point, dtype="uint8", grad_scale=1.0):
    """``d loss / d s`` (a float): LSQ's step-size gradient summed over ``x``, times
    ``grad_scale``."""
    qmin, qmax = qrange(dtype)
    v, below, above = _position(x, scale, zero_point, dtype)
    local = np.where(below, qmin - zero_point,
                     np.where(above, qmax - zero_point, np.rint(v) - v))
    return float(grad_scale * np.sum(np.asarray(out_grad, np.float64) * local))


def activation_fake_quant_op(ndl):
    """The Needle TensorOp class ``FakeQuantize(zero_point, dtype, grad_scale)`` called on
    ``(x, scale)``: ``scale`` a shape-(1,) Tensor (a Parameter when it is learned)."""

    class FakeQuantize(ndl.autograd.TensorOp):
        """Forward: the op table's quantize->dequantize; backward: clipped STE and LSQ."""

        def __init__(self, zero_point, dtype, grad_scale, device):
            self.z, self.dtype, self.g, self.device = int(zero_point), dtype, grad_scale, device

        def _array(self, out):
            return ndl.Tensor._array_from_numpy(out, device=self.device, dtype="float32")

        def compute(self, x, s):
            out = fake_quantize(x.numpy(), s.numpy().reshape(-1)[0], self.z, self.dtype)
            return self._array(out)

        def gradient(self, out_grad, node):
            x, s = (t.realize_cached_data().numpy() for t in node.inputs)
            s0, g = s.reshape(-1)[0], out_grad.numpy()
            dx = clipped_ste_grad(g, x, s0, self.z, self.dtype)
            ds = np.full(s.shape, lsq_scale_grad(g, x, s0, self.z, self.dtype, self.g),
                         np.float32)
            return (ndl.Tensor(dx, device=self.device, dtype="float32", requires_grad=False),
                    ndl.Tensor(ds, device=self.device, dtype="float32", requires_grad=False))

    return FakeQuantize


__all__ = ["fake_quantize", "clipped_ste_grad", "lsq_grad_scale", "lsq_scale_grad",
           "activation_fake_quant_op"]
