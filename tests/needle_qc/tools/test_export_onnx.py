"""export_onnx: every zoo model, float and every scheme, round trip in ONNX Runtime.

Static schemes (QDQ form): every QuantizeLinear output equals our graph's quantize node bit for
bit, and so do the outputs. The sessions run with ORT_DISABLE_ALL: that executes the QDQ model
as written (float ops between QuantizeLinear/DequantizeLinear, which is what the model means).
With optimizations on, ORT fuses DQ -> MatMul/Conv -> Q into its integer kernels, and on CPUs
without VNNI its u8 x s8 kernels add int16 pairs with saturation, so those results differ from
the exact int32 arithmetic of the ONNX spec (and of ours); test_fused_session_runs only checks
that the fused model loads and keeps the argmax on a CNN.
"""
import functools

import numpy as np
import pytest

import needle_qc as qc
from needle_qc.pipeline import stage_of
from needle_qc.tools.export_onnx import export_onnx, exportable_graph
from needle_qc.tools.report import SCHEMES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MODELS = ("mlp", "small_cnn", "resnet9", "lstm_lm", "transformer_lm")
STATIC = ("int8-static", "uint8-affine")


@functools.cache
def _traced(name):
    model = qc.zoo.load_pretrained(name)
    return qc.trace(model, qc.zoo.example_input(name, 4),
                    batch_dims=qc.zoo.get(name).input.batch_dim)


@functools.cache
def _prepared(name, scheme):
    """The graph export_onnx is given: float (pipeline run) or quantize_pass + calibrate."""
    graph = _traced(name)
    if scheme == "fp32":
        graph = graph.copy()
        qc.run_passes(graph, qc.FLOAT_PIPELINE)
        return graph
    prepared = qc.quantize_pass(graph, SCHEMES[scheme].qconfig())
    qc.calibrate(prepared, [qc.zoo.example_input(name, 4, seed=s) for s in (2, 3)],
                 progress=False)
    return prepared


def _session(model, optimize=False):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    level = ort.GraphOptimizationLevel
    opts.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _with_outputs(model, names_types):
    """A copy of ``model`` that also returns the named intermediate values."""
    extra = onnx.ModelProto()
    extra.CopyFrom(model)
    for name, elem_type in names_types:
        extra.graph.output.append(onnx.helper.make_tensor_value_info(name, elem_type, None))
    return extra


class _Recorder(qc.Interpreter):
    """The interpreter, keeping every node's value as numpy."""

    def call_op(self, node, inputs):
        out = super().call_op(node, inputs)
        if not isinstance(out, tuple) and hasattr(out, "numpy"):
            self.seen[node.name] = out.numpy()
        return out


def _run_ours(graph, x):
    rec = _Recorder(graph)
    rec.seen = {}
    out = rec.run(x)
    return np.asarray(out.numpy()), rec.seen


def _input(name):
    x = qc.zoo.example_input(name, 3, seed=1)
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _qtypes():
    return {"uint8": onnx.TensorProto.UINT8, "int8": onnx.TensorProto.INT8}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("scheme", STATIC)
def test_static_qdq_integers_bit_exact(name, scheme):
    qdq = exportable_graph(_prepared(name, scheme))
    assert stage_of(qdq) == "qdq"
    model = export_onnx(qdq)
    quantizes = qdq.find("quantize")
    probe = _with_outputs(model, [(n.name, _qtypes()[n.attrs["dtype"]]) for n in quantizes])
    x = _input(name)
    got = _session(probe).run(None, {model.graph.input[0].name: x})
    want, seen = _run_ours(qdq, x)
    for node, value in zip(quantizes, got[1:]):
        assert value.dtype == seen[node.name].dtype, node.name
        np.testing.assert_array_equal(value, seen[node.name], err_msg=f"%{node.name}")
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_array_equal(got[0].argmax(-1), want.argmax(-1))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("scheme", STATIC)
def test_integer_stage_exports_as_its_qdq_form(name, scheme):
    cm = qc.compile(_prepared(name, scheme))
    assert {"qlinear", "quantize"} <= {n.op for n in cm.graph.nodes} or name != "mlp"
    x = _input(name)
    from_integer = export_onnx(cm)
    from_qdq = export_onnx(_prepared(name, scheme))
    ops = {n.op_type for n in from_integer.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= ops
    got = _session(from_integer).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, _session(from_qdq).run(None, {"x": x})[0])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("scheme", ["fp32", "fp16", "bf16", "int8-w", "uint8-w", "int4-g32",
                                    "int8-dyn"])
def test_float_weight_only_and_dynamic_round_trip(name, scheme):
    graph = exportable_graph(_prepared(name, scheme))
    model = export_onnx(graph)
    x = _input(name)
    got = _session(model).run(None, {model.graph.input[0].name: x})[0]
    want, _ = _run_ours(graph, x)
    assert got.shape == want.shape and got.dtype == np.float32
    # float ops summed in another order: a few ulps of the largest output
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_dynamic_layers_use_exact_integer_kernels():
    model = export_onnx(_prepared("small_cnn", "int8-dyn"))
    ops = {n.op_type for n in model.graph.node}
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= ops
    x = _input("small_cnn")
    want, _ = _run_ours(_prepared("small_cnn", "int8-dyn"), x)
    got = _session(model, optimize=True).run(None, {model.graph.input[0].name: x})[0]
    np.testing.assert_array_equal(got, want)  # u8 x u8 integer kernels: no saturation


def test_weight_formats_are_stored_as_their_integers():
    for scheme, kind in (("int4-g32", onnx.TensorProto.INT4),
                         ("fp16", onnx.TensorProto.FLOAT16),
                         ("bf16", onnx.TensorProto.BFLOAT16),
                         ("int8-static", onnx.TensorProto.INT8)):
        model = export_onnx(_prepared("mlp", scheme))
        biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        assert biggest.data_type == kind, scheme
    blocked = [n for n in export_onnx(_prepared("mlp", "int4-g32")).graph.node
               if n.op_type == "DequantizeLinear"]
    assert blocked and all(any(a.name == "block_size" and a.i == 32 for a in n.attribute)
                           for n in blocked)


def test_file_is_written_checked_and_deterministic(tmp_path):
    prepared = _prepared("small_cnn", "int8-static")
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    export_onnx(prepared, first)
    export_onnx(prepared, str(second))
    assert first.read_bytes() == second.read_bytes()
    loaded = onnx.load(str(first))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.opset_import[0].version == 21
    ops = {n.op_type for n in loaded.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "MatMul"} <= ops
    assert [d.dim_param for d in loaded.graph.input[0].type.tensor_type.shape.dim][:1] == ["N"]


def test_fused_session_runs():
    model = export_onnx(_prepared("small_cnn", "uint8-affine"))
    x = _input("small_cnn")
    want, _ = _run_ours(exportable_graph(_prepared("small_cnn", "uint8-affine")), x)
    got = _session(model, optimize=True).run(None, {model.graph.input[0].name: x})[0]
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_any_batch_size_and_language_model_ids():
    model = export_onnx(_prepared("lstm_lm", "int8-static"))
    sess = _session(model)
    for batch in (1, 5):
        x = np.asarray(qc.zoo.example_input("lstm_lm", batch, seed=4))
        assert sess.run(None, {"x": x})[0].shape == (20 * batch, qc.zoo._ptb_vocab())


def test_needle_module_and_compiled_model():
    model = qc.zoo.load_pretrained("mlp")
    x = qc.zoo.example_input("mlp", 2)
    assert len(export_onnx(model, example_input=x).graph.node) > 0
    cm = qc.compile(_prepared("mlp", "int8-static"), stop_after="qdq")
    assert "QuantizeLinear" in {n.op_type for n in export_onnx(cm).graph.node}
    with pytest.raises(ValueError, match="example_input"):
        export_onnx(model)


def test_refusals_name_what_to_do():
    prepared = qc.quantize_pass(_traced("mlp"), SCHEMES["int8-static"].qconfig())
    with pytest.raises(ValueError, match="not calibrated.*calibrate"):
        export_onnx(prepared)
    assert "QuantizeLinear" not in {n.op_type for n in
                                    export_onnx(prepared, stage="float").graph.node}
    with pytest.raises(ValueError, match="opset"):
        export_onnx(_prepared("mlp", "fp32"), opset=13)
    with pytest.raises(TypeError, match="Graph"):
        export_onnx("mlp")


def test_unknown_op_is_named():
    g = qc.Graph.parse("%x = placeholder() : f32[N,4]\n"
                       "%y = logsumexp(%x) {axes=(1,)} : f32[N]\nreturn %y")
    with pytest.raises(ValueError, match=r"%y: op 'logsumexp'"):
        export_onnx(g)


def test_cli_export(tmp_path, capsys):
    from needle_qc.tools.cli import main

    path = tmp_path / "mlp.onnx"
    assert main(["export", "mlp", "--out", str(path), "--no-progress",
                 "--calibration-batches", "1"]) == 0
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "QuantizeLinear" in ops and "wrote" in capsys.readouterr().out
    assert main(["export", "mlp", "--float", "--out", str(path), "--no-progress"]) == 0
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert main(["export", "mlp", "--out", str(tmp_path / "no" / "x.onnx")]) == 2


def test_unknown_fused_activation_is_named():
    g = qc.Graph.parse("%x = placeholder() : f32[N,4]\n"
                       "%y = activation(%x) {name=\"relu\"} : f32[N,4]\nreturn %y")
    assert "Relu" in {n.op_type for n in export_onnx(g).graph.node}
    g.node("y").attrs["name"] = "gelu"
    with pytest.raises(ValueError, match="%y: activation 'gelu' has no ONNX form"):
        export_onnx(g)


def test_cli_reads_other_dtype_spellings(tmp_path, capsys):
    from needle_qc.tools.cli import main

    path = tmp_path / "mlp.onnx"
    assert main(["export", "mlp", "--data-type", "bfloat16", "--out", str(path),
                 "--no-progress"]) == 0
    assert "weight bf16" in capsys.readouterr().out


@pytest.mark.parametrize("name", MODELS)
def test_uint8_weights_same_model_exact_in_fused_kernels(name):
    prepared = _prepared(name, "int8-static")
    plain, shifted = export_onnx(prepared), export_onnx(prepared, uint8_weights=True)
    kinds = {t.data_type for t in shifted.graph.initializer if len(t.dims) >= 2}
    assert onnx.TensorProto.INT8 not in kinds and onnx.TensorProto.UINT8 in kinds
    x = _input(name)
    want = _session(plain).run(None, {"x": x})[0]
    np.testing.assert_array_equal(_session(shifted).run(None, {"x": x})[0], want)  # same values
    if name in ("mlp", "small_cnn", "resnet9"):
        # fused u8 x u8 integer kernels: exact, where u8 x s8 saturates on CPUs without VNNI
        fused = _session(shifted, optimize=True).run(None, {"x": x})[0]
        np.testing.assert_array_equal(fused, want)


def test_cli_uint8_weights(tmp_path):
    from needle_qc.tools.cli import main

    path = tmp_path / "cnn.onnx"
    assert main(["export", "small_cnn", "--uint8-weights", "--out", str(path), "--no-progress",
                 "--calibration-batches", "1"]) == 0
    weights = [t for t in onnx.load(str(path)).graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.UINT8 for t in weights)


def _lstm_gate_probe(model, step_name):
    """``model`` also returning the pre-activation gates of the cell named ``step_name``."""
    node = next(n for n in model.graph.node if n.op_type == "Split" and
                n.name.startswith(f"{step_name}_gate/"))
    return _with_outputs(model, [(node.input[0], onnx.TensorProto.FLOAT)]), node.input[0]


def test_dynamic_lstm_cells_export_their_exact_integer_parts():
    from needle_qc.opset import recurrent_eval as reval

    graph = exportable_graph(_prepared("lstm_lm", "int8-dyn"))
    model = export_onnx(graph)
    ops = [n.op_type for n in model.graph.node]
    # 2 products x 20 cells + the output layer, all integer; the cell's weights stored once
    assert ops.count("MatMulInteger") == ops.count("DynamicQuantizeLinear") == 41
    assert "MatMul" not in ops and ops.count("Sigmoid") == 60
    cell_weights = [t for t in model.graph.initializer if list(t.dims) == [32, 128]]
    assert [t.data_type for t in cell_weights] == [onnx.TensorProto.UINT8] * 2
    probe, gates_name = _lstm_gate_probe(model, "lstm_cell")
    x = _input("lstm_lm")
    got = _session(probe, optimize=True).run([gates_name], {"x": x})[0]
    _, seen = _run_ours(graph, x)
    cell = graph.node("lstm_cell")
    w_ih, s_ih, w_hh, s_hh, b_ih, b_hh = (graph.tensors[n.attrs["tensor"]]
                                          for n in cell.inputs[3:])
    x0 = seen[cell.inputs[0].name]
    want = reval.qlstm_gates(x0, np.zeros((x0.shape[0], 32), np.float32), w_ih, s_ih, w_hh,
                             s_hh, [b_ih, b_hh])
    np.testing.assert_array_equal(got, want)  # the float gate functions are ORT's own after


def test_static_lstm_cells_keep_int8_weights():
    for stage in (_prepared("lstm_lm", "int8-static"), qc.compile(_prepared("lstm_lm",
                                                                            "int8-static"))):
        model = export_onnx(stage)
        cell_weights = [t for t in model.graph.initializer if list(t.dims) == [32, 128]]
        assert [t.data_type for t in cell_weights] == [onnx.TensorProto.INT8] * 2
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("QuantizeLinear") >= 40 and ops.count("MatMul") == 41
