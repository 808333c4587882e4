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

from needle_qc.tools import onnx_ops

__all__ = ["export_onnx", "to_onnx", "DEFAULT_OPSET"]

DEFAULT_OPSET = 21
"""Blocked (int4) DequantizeLinear needs opset 21; the other ops exist since opset 13..17."""


def export_onnx(model_or_graph, path=None, *, example_input=None, batch_dims=0, stage=None,
                opset=DEFAULT_OPSET, check=True):
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

