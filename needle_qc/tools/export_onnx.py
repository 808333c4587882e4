"""``export_onnx(model_or_graph, path)``: a float, QDQ or weight-only graph as an ONNX model.

The result is a standard ONNX model (default opset 21) that ONNX Runtime, TensorRT or OpenVINO
load: QuantizeLinear / DequantizeLinear around float MatMul, Conv, Relu, Add, ... (the QDQ
form those runtimes fuse into integer kernels), weights stored as their integers with their
scales and zero points, int4 weights as ONNX int4 with ``block_size``, fp16/bf16 weights as
their 16-bit values followed by a Cast.

Example
-------
>>> prepared = qc.quantize_pass(g, qc.QConfig(weight="int8", activation="static"))
>>> qc.calibrate(prepared, batches)
>>> qc.export_onnx(prepared, "model.onnx")      # converted to QDQ, checked by onnx.checker

What can be exported: a Needle module (with ``example_input``), a float graph, an observed
graph (calibrated: exported as its QDQ graph; ``stage="float"`` drops the observers instead), a
QDQ graph, an integer graph (``qlinear``, ``qconv2d``, ``qadd``... written back in their QDQ
form; weight-only and dynamic layers as below), or a CompiledModel of any of these.
"""
from __future__ import annotations

import numpy as np

from needle_qc.tools import onnx_ops

__all__ = ["export_onnx", "to_onnx", "shift_int8_weights", "DEFAULT_OPSET"]

DEFAULT_OPSET = 21
"""Blocked (int4) DequantizeLinear needs opset 21; the other ops exist since opset 13..17."""


def export_onnx(model_or_graph, path=None, *, example_input=None, batch_dims=0, stage=None,
                opset=DEFAULT_OPSET, check=True, uint8_weights=False):
    """Write ``model_or_graph`` to ``path`` as ONNX (if ``path`` is given); returns the
    ``onnx.ModelProto``.

    Parameters
    ----------
    model_or_graph : Graph, CompiledModel or needle.nn.Module
        See the module docstring for the stages that can be exported.
    path : str or os.PathLike, optional
        Where to write the ``.onnx`` file (bytes are the same for the same graph).
    example_input : array or Tensor, optional
        Needed only for a Needle module (traced with ``batch_dims``).
    stage : {None, "float", "qdq"}
        For an observed graph: ``"qdq"`` (the default when it is calibrated) or ``"float"``.
    opset : int
        ONNX opset of the default domain (at least 21).
    check : bool
        Run ``onnx.checker.check_model(full_check=True)`` on the result.
    uint8_weights : bool
        Store symmetric int8 weights as uint8 ``q + 128`` with zero point 128: the same real
        values, but ONNX Runtime then fuses them into its u8 x u8 kernels, which are exact on
        CPUs without VNNI, where its u8 x s8 kernels add int16 pairs with saturation. Off by
        default (TensorRT and OpenVINO expect symmetric int8 weights).

    Raises
    ------
    ImportError
        The ``onnx`` package is missing (``pip install onnx``).
    ValueError
        A stage or op that has no ONNX form here; the message names the node and what to do.
    """
    onnx = _import_onnx()
    if opset < DEFAULT_OPSET:
        raise ValueError(f"export_onnx: opset={opset}; at least {DEFAULT_OPSET} is needed "
                         "(blocked DequantizeLinear, int4)")
    graph = exportable_graph(model_or_graph, example_input, batch_dims, stage)
    model = to_onnx(graph, opset=opset)
    if uint8_weights:
        shift_int8_weights(model)
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    return model


def to_onnx(graph, *, opset=DEFAULT_OPSET, name="needle_qc"):
    """The ``onnx.ModelProto`` of a float / QDQ / weight-only graph (no checks, no file)."""
    from onnx import helper

    builder = onnx_ops.builder(graph)
    for node in graph.nodes:
        builder.emit(node)
    body = helper.make_graph(builder.nodes, name, builder.inputs, builder.outputs,
                             builder.initializers)
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="needle_qc")
    model.ir_version = min(model.ir_version, 10)  # what onnxruntime 1.2x reads
    return model


def shift_int8_weights(model):
    """In place: every int8 initializer read only by DequantizeLinear nodes with zero point 0
    (or none) becomes uint8 ``q + 128``, and their zero points 128. Returns the count."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    readers = {}
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, slot))
    count = 0
    for q in list(model.graph.initializer):
        group = readers.get(q.name, [])
        if q.data_type != TensorProto.INT8 or not group or not all(
                n.op_type == "DequantizeLinear" and slot == 0 and _zero_point_ok(n, inits, readers)
                for n, slot in group):
            continue
        shifted = numpy_helper.to_array(q).astype(np.int16) + 128
        q.CopyFrom(numpy_helper.from_array(shifted.astype(np.uint8), q.name))
        for node, _ in group:
            _set_zero_point_128(model, node, inits)
        count += 1
    return count


def _zero_point_ok(node, inits, readers):
    """No zero point, or an all-zero int8 initializer read only by DequantizeLinear nodes."""
    from onnx import numpy_helper

    if len(node.input) < 3:
        return node.input[1] in inits  # a zero point of the scale's shape will be added
    zero = inits.get(node.input[2])
    return zero is not None and not numpy_helper.to_array(zero).any() and all(
        n.op_type == "DequantizeLinear" and slot == 2 for n, slot in readers[zero.name])


def _set_zero_point_128(model, node, inits):
    from onnx import TensorProto, numpy_helper

    if len(node.input) < 3:  # the zero point must have the scale's shape (per axis or not)
        shape = tuple(inits[node.input[1]].dims)
        name = f"{node.input[0]}_zp128" + ("" if not shape else f"_{'x'.join(map(str, shape))}")
        if name not in inits:
            inits[name] = numpy_helper.from_array(np.full(shape, 128, np.uint8), name)
            model.graph.initializer.append(inits[name])
        node.input.append(name)
        return
    zero = inits[node.input[2]]
    if zero.data_type == TensorProto.INT8:  # not yet rewritten through another reader
        shape = numpy_helper.to_array(zero).shape
        zero.CopyFrom(numpy_helper.from_array(np.full(shape, 128, np.uint8), zero.name))


def exportable_graph(obj, example_input=None, batch_dims=0, stage=None):
    """The graph ``export_onnx`` writes for ``obj`` (see the module docstring)."""
    from needle_qc.ir.graph import Graph
    from needle_qc.pipeline import stage_of

    if stage not in (None, "float", "qdq"):
        raise ValueError(f"export_onnx: stage={stage!r}; valid: None, 'float', 'qdq'")
    graph = _graph_of(obj, example_input, batch_dims)
    if not isinstance(graph, Graph):
        raise TypeError(f"export_onnx: expected a Graph, CompiledModel or Needle module, got "
                        f"{type(obj).__name__}")
    have = stage_of(graph)
    if have == "observed":
        return _from_observed(graph, stage)
    if stage is not None and stage != have:
        raise ValueError(f"export_onnx: the graph is at stage {have!r}, not {stage!r}")
    return graph


def _graph_of(obj, example_input, batch_dims):
    from needle_qc.runtime.compiled import CompiledModel

    if isinstance(obj, CompiledModel):
        return obj.graph
    if hasattr(obj, "parameters") and callable(obj):  # a Needle module
        if example_input is None:
            raise ValueError("export_onnx: a Needle module needs example_input= (an input "
                             "batch) to be traced; or pass qc.trace(model, x)")
        from needle_qc.capture.tracer import trace

        return trace(obj, example_input, batch_dims=batch_dims)
    return obj


def _from_observed(graph, stage):
    from needle_qc.pipeline import _strip_observers
    from needle_qc.quantize.api import convert

    if stage == "float":
        return _strip_observers(graph)
    empty = [n for n, obs in graph.observers.items() if obs.n_updates == 0]
    if empty:
        raise ValueError(f"export_onnx: the observed graph is not calibrated (observer "
                         f"%{empty[0]} saw 0 batches): run qc.calibrate(graph, batches) to "
                         "export its QDQ form, or pass stage='float' to export the float model")
    return convert(graph)


def _import_onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError("export_onnx needs the 'onnx' package: pip install onnx (or the "
                          "needle_qc[onnx] extra)") from e
    return onnx

