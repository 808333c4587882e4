"""The ONNX graph under construction for :mod:`needle_qc.tools.export_onnx` (names, constants,
shapes holding N); the per-op emitters live in :mod:`~needle_qc.tools.onnx_ops` and
:mod:`~needle_qc.tools.onnx_quant_ops`."""
from __future__ import annotations

import numpy as np

from needle_qc.opset import dim_parts, is_symbolic

OIHW = (3, 2, 0, 1)
"""Our conv weights are (K, K, Cin, Cout); ONNX Conv wants (Cout, Cin, K, K)."""


class Builder:
    """Collects ONNX nodes, initializers, inputs and outputs while walking a graph."""

    def __init__(self, graph, emitters, lazy):
        self.graph = graph
        self.emitters, self.lazy = emitters, lazy  # op -> emitter; op -> lazy emitter
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self.values = {}  # Node -> ONNX name (or list of names for tuple values)
        self._lazy = {}  # (Node, perm) -> ONNX name of a param/weight emitted on demand
        self._used = set()
        self._batch = None

    # ------------------------------------------------------------------ names and values

    def fresh(self, base):
        """A value name not used yet, ``base`` itself when free."""
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def value(self, node, perm=None):
        """ONNX name of ``node``'s value, optionally with its axes permuted by ``perm``."""
        if node.op in ("param", "constant") or is_weight_dequantize(node):
            key = (node, perm)
            if key not in self._lazy:
                self._lazy[key] = self.lazy[node.op](self, node, perm)
            return self._lazy[key]
        name = self.values[node]
        if perm is None:
            return name
        return self.op("Transpose", [name], f"{node.name}_t", perm=list(perm))

    def op(self, op_type, inputs, base, n_out=1, **attrs):
        """Append one ONNX node; its output name (a list of ``n_out`` names if > 1)."""
        from onnx import helper

        outs = [self.fresh(base if n_out == 1 else f"{base}_{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs,
                                           name=self.fresh(f"{base}/{op_type}"), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, array, base):
        """An initializer holding ``array`` (numpy, dtype kept)."""
        from onnx import numpy_helper

        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def int4_const(self, values, signed, base):
        """An ONNX int4/uint4 initializer: the row-major values, two per byte, low nibble
        first (the ONNX packing; ours packs along the reduction axis instead)."""
        from onnx import TensorProto, helper

        flat = (np.asarray(values).astype(np.int64).ravel() & 0xF).astype(np.uint8)
        if flat.size % 2:
            flat = np.append(flat, np.uint8(0))
        packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
        name = self.fresh(base)
        kind = TensorProto.INT4 if signed else TensorProto.UINT4
        self.initializers.append(helper.make_tensor(name, kind, list(np.shape(values)),
                                                    packed.tobytes(), raw=True))
        return name

    def scalar(self, value, dtype, base):
        return self.const(np.array(value, dtype=dtype), base)

    # ------------------------------------------------------------------ shapes with N

    def batch_size(self):
        """A 1-D int64 tensor holding N, read from the first input with a batch dim."""
        if self._batch is None:
            for p in self.graph.placeholders:
                for axis, dim in enumerate(p.meta["shape"]):
                    if is_symbolic(dim):
                        self._batch = self._batch_from(p, axis, dim)
                        return self._batch
            raise ValueError("export_onnx: a shape holds N but no graph input has a batch dim")
        return self._batch

    def _batch_from(self, placeholder, axis, dim):
        dims = self.op("Shape", [self.values[placeholder]], "batch_dims", start=axis,
                       end=axis + 1)
        k, _ = dim_parts(dim)
        if k == 1:
            return dims
        return self.op("Div", [dims, self.const(np.array([k], np.int64), "batch_k")], "batch")

    def shape(self, dims, base):
        """A 1-D int64 shape tensor for ``dims`` (ints, -1, ``N`` or ``k*N``)."""
        if not any(is_symbolic(d) for d in dims):
            return self.const(np.array(dims, np.int64), f"{base}_shape")
        parts = []
        for d in dims:
            if is_symbolic(d):
                k, _ = dim_parts(d)
                n = self.batch_size()
                parts.append(n if k == 1 else self.op(
                    "Mul", [n, self.const(np.array([k], np.int64), f"{base}_k")], f"{base}_kN"))
            else:
                parts.append(self.const(np.array([d], np.int64), f"{base}_d"))
        return self.op("Concat", parts, f"{base}_shape", axis=0)

    # ------------------------------------------------------------------ walking

    def emit(self, node):
        """Translate one node (placeholders and the output node included)."""
        if node.op in ("param", "constant") or is_weight_dequantize(node):
            return  # emitted on first use, in the layout its user asks for
        emitter = self.emitters.get(node.op)
        if emitter is None:
            raise ValueError(f"export_onnx: %{node.name}: op {node.op!r} has no ONNX form here "
                             f"(exportable ops: {', '.join(sorted(self.emitters))})")
        self.values[node] = emitter(self, node)


def is_weight_dequantize(node):
    return node.op == "dequantize" and node.inputs[0].op in ("param", "constant")


def value_info(name, dtype, shape):
    """ONNX ValueInfo with symbolic dims written as ``N`` / ``20*N``."""
    from onnx import helper

    dims = None if shape is None else [d if isinstance(d, int) else str(d) for d in shape]
    return helper.make_tensor_value_info(name, onnx_dtype(dtype), dims)


def onnx_dtype(dtype):
    from onnx import TensorProto

    special = {"bfloat16": TensorProto.BFLOAT16, "bool": TensorProto.BOOL}
    if dtype in special:
        return special[dtype]
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def conv_attrs(node, k):
    """ONNX Conv attributes of a conv node with a k x k kernel."""
    p, s = node.attrs["padding"], node.attrs["stride"]
    return {"kernel_shape": [k, k], "pads": [p] * 4, "strides": [s, s]}


def bf16_const(b, bits, perm, base):
    """A BFLOAT16 initializer from raw uint16 bits (optionally permuted)."""
    from onnx import TensorProto, helper

    bits = bits if perm is None else np.transpose(bits, perm)
    name = b.fresh(base)
    tensor = helper.make_tensor(name, TensorProto.BFLOAT16, list(bits.shape),
                                np.ascontiguousarray(bits).tobytes(), raw=True)
    b.initializers.append(tensor)
    return name


def int_dtype(name):
    """numpy dtype of an integer tensor dtype name."""
    return {"uint8": np.uint8, "int8": np.int8, "int32": np.int32}[name]
