"""Fixtures that build tiny ONNX models with onnx.helper and run them with onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

OPSET = 21


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        return set()


ORT_U8S8_EXACT = bool({"avx512_vnni", "avx_vnni"} & _cpu_flags())
"""Whether onnxruntime's u8 x s8 integer kernels are exact on this CPU. Without VNNI they use
``vpmaddubsw``, whose int16 pair sums saturate (2 * 255 * 127 > 32767): ORT then differs from
the ONNX definition (and from us), so the comparisons keep s8 operands within :data:`S8_LIMIT`."""
S8_LIMIT = 127 if ORT_U8S8_EXACT else 64


@pytest.fixture
def ort_node():
    """``ort_node(op_type, inputs, n_outputs=1, **attrs)`` -> list of ORT outputs."""
    _require_ort()
    return run_node


@pytest.fixture
def ort_qdq_4bit():
    """``ort_qdq_4bit(x, scale, zero_point, signed, axis=1, block_size=0)`` -> float32."""
    _require_ort()
    return run_qdq_4bit


def _require_ort():
    # skip (visibly) only the tests that need ORT, not the whole directory
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


def _elem_type(arr: np.ndarray) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(arr.dtype)


def run_node(op_type: str, inputs: list, n_outputs: int = 1, **attrs) -> list[np.ndarray]:
    """Run one ONNX node. ``inputs`` are arrays (None = omitted optional input).

    Non-first inputs are baked in as initializers, so ORT sees constant scales/zero points the
    way a quantized model would present them.
    """
    import onnx
    from onnx import helper, numpy_helper

    names, inits, graph_inputs, feeds = [], [], [], {}
    for i, arr in enumerate(inputs):
        if arr is None:
            names.append("")
            continue
        arr = np.asarray(arr)
        name = f"in{i}"
        names.append(name)
        if i == 0:
            graph_inputs.append(helper.make_tensor_value_info(name, _elem_type(arr), arr.shape))
            feeds[name] = arr
        else:
            inits.append(numpy_helper.from_array(arr, name))
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, **attrs)
    value_infos = [onnx.ValueInfoProto(name=o) for o in outs]
    graph = helper.make_graph([node], "g", graph_inputs, value_infos, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = _session(model, opts)
    return sess.run(None, feeds)


def run_qdq_4bit(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, signed: bool,
                 axis: int = 1, block_size: int = 0) -> np.ndarray:
    """QuantizeLinear to int4/uint4 followed by DequantizeLinear (ORT cannot return 4-bit arrays
    to NumPy, so the 4-bit values are observed through their exact dequantization)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.INT4 if signed else TensorProto.UINT4
    zp = helper.make_tensor("zp", elem, list(np.shape(zero_point)),
                            np.asarray(zero_point).ravel().tolist())
    attrs = {"axis": axis, "block_size": block_size}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], **attrs)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype),
                                                   x.shape)],
        [onnx.ValueInfoProto(name="y")],
        initializer=[numpy_helper.from_array(np.asarray(scale, np.float32), "s"), zp])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return _session(model, None).run(None, {"x": x})[0]


def _session(model, opts):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
