"""QConfig habits of torch.ao / ORT users: overrides checked against the graph (did-you-mean),
exclusion by op and by path regex, presets by scheme name, dtype spellings, early refusals."""
import functools
import json

import pytest

import needle_qc as qc
from needle_qc.quantize import QConfig
from needle_qc.tools.report import SCHEMES

STATIC = dict(weight="int8", activation="static")


@functools.cache
def _graph(name):
    return qc.trace(qc.zoo.load_pretrained(name), qc.zoo.example_input(name, 2),
                    batch_dims=qc.zoo.get(name).input.batch_dim)


def _quantized_layers(prepared):
    return sorted(n.name for n in prepared.nodes if "qconfig" in n.meta)


# ----------------------------------------------------------------------------- spellings

@pytest.mark.parametrize("spelling, ours", [("float16", "fp16"), ("fp16", "fp16"),
                                            ("half", "fp16"), ("bfloat16", "bf16"),
                                            ("bf16", "bf16")])
def test_weight_dtype_spellings(spelling, ours):
    cfg = QConfig(weight=spelling)
    assert cfg.weight == ours
    assert QConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ----------------------------------------------------------------------------- presets

@pytest.mark.parametrize("name", [s for s in SCHEMES if SCHEMES[s].qconfig_args])
def test_preset_is_the_report_scheme(name):
    assert QConfig.preset(name) == SCHEMES[name].qconfig()


def test_preset_with_changes_and_bad_names():
    cfg = QConfig.preset("int8-static", exclude_ops=("conv2d",))
    assert cfg.activation == "static" and cfg.exclude_ops == ("conv2d",)
    with pytest.raises(ValueError, match="did you mean 'int8-static'"):
        QConfig.preset("int8-statik")
    with pytest.raises(ValueError, match="float baseline"):
        QConfig.preset("fp32")


# ----------------------------------------------------------------------------- early refusals

@pytest.mark.parametrize("kwargs, message", [
    (dict(weight="int4", activation="static", weight_granularity="per_group"),
     "W4A8 .* per_channel"),
    (dict(weight="uint4", activation="static"), "static activations need int8/uint8"),
    (dict(weight="int8", activation="static", weight_granularity="per_group"),
     "static activations need .* per tensor or per channel"),
    (dict(weight="int4", activation="dynamic"), "dynamic activations need symmetric int8"),
    (dict(weight="int8", activation="dynamic", weight_symmetric=False),
     "weight_symmetric=False"),
    (dict(weight="int8", activation="dynamic", weight_granularity="per_group"),
     "dynamic activations need"),
    (dict(weight="int4", weight_granularity="per_tensor"), "per_group or per_channel"),
    (dict(exclude_ops=("Conv",)), "'Conv' is a module type: exclude_ops=\\('conv2d',\\)"),
    (dict(exclude_ops=("conv",)), "did you mean 'conv2d'"),
    (dict(exclude_ops="linear"), "must be a tuple of str"),
    (dict(exclude_paths=("layers.(",)), "not a valid regex"),
])
def test_bad_combinations_refused_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QConfig(**kwargs)


def test_every_refused_combination_used_to_fail_only_later():
    # the combinations refused above are exactly those the passes refuse: the accepted
    # neighbours still quantize (and compile) the small CNN
    graph = _graph("small_cnn")
    batches = [qc.zoo.example_input("small_cnn", 2, seed=s) for s in (1, 2)]
    for kwargs in (dict(weight="int4"), dict(weight="int4", weight_granularity="per_channel"),
                   dict(weight="uint8", activation="static", weight_symmetric=False),
                   dict(weight="int8", activation="dynamic", weight_granularity="per_tensor")):
        qc.compile(qc.quantize_pass(graph, QConfig(**kwargs)), calibration=batches)


# ----------------------------------------------------------------------------- overrides

@pytest.mark.parametrize("kwargs, message", [
    (dict(module_types={"Conv2d": None}), "'Conv2d' matches no layer.*did you mean 'Conv'"),
    (dict(module_paths={"layers.0.conv": None}),
     "'layers.0.conv' matches no quantizable layer; did you mean 'layers.modules.0.conv'"),
    (dict(exclude_ops=("matmul",)), "'matmul' matches no layer.*ops here: conv2d, linear"),
    (dict(exclude_paths=(r"layers\.0\..*",)), "matches no layer path or node name"),
])
def test_overrides_matching_nothing_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        qc.quantize_pass(_graph("small_cnn"), QConfig(**STATIC, **kwargs))


def test_overrides_that_match_still_work():
    graph = _graph("small_cnn")
    every = _quantized_layers(qc.quantize_pass(graph, QConfig(**STATIC)))
    no_conv = qc.quantize_pass(graph, QConfig(**STATIC, module_types={"Conv": None}))
    assert _quantized_layers(no_conv) == ["layers.modules.4"]
    prefix = qc.quantize_pass(graph, QConfig(**STATIC, module_paths={"layers": None}))
    assert _quantized_layers(prefix) == []
    assert len(every) == 4


def test_exclude_ops_keeps_that_op_float():
    prepared = qc.quantize_pass(_graph("small_cnn"), QConfig(**STATIC, exclude_ops=("linear",)))
    assert _quantized_layers(prepared) == ["layers.modules.0.conv", "layers.modules.1.conv",
                                           "layers.modules.2.conv"]


def test_exclude_paths_matches_whole_paths_and_node_names():
    cfg = QConfig(**STATIC, exclude_paths=(r"layers\.modules\.[01]\.conv",))
    assert _quantized_layers(qc.quantize_pass(_graph("small_cnn"), cfg)) == \
        ["layers.modules.2.conv", "layers.modules.4"]
    by_name = QConfig(**STATIC, exclude_paths=("layers.modules.4",))
    assert "layers.modules.4" not in _quantized_layers(qc.quantize_pass(_graph("small_cnn"),
                                                                        by_name))


def _float_cells(graph):
    return len(graph.find("lstm_cell")), len(graph.find("qlstm_cell"))


def _dynamic_layers(graph):
    return len(graph.find("linear_dynamic"))


def test_language_model_matmuls_are_linear_layers():
    # the LSTM's two products are fused into lstm_cell; configs written for them as linear
    # layers (exclude_ops "linear" / "matmul", module_types "Linear") still apply to the cell
    graph = _graph("lstm_lm")
    kept = qc.quantize_pass(graph, QConfig(weight="int8", activation="dynamic",
                                           exclude_ops=("linear",)))
    assert _dynamic_layers(kept) == 0 and _float_cells(kept) == (20, 0)
    with pytest.raises(ValueError, match="did you mean 'seq_model'"):
        qc.quantize_pass(graph, QConfig(weight="int8", module_paths={"seq_modl": None}))


@pytest.mark.parametrize("exclude", [("lstm_cell",), ("matmul",)])
def test_exclude_ops_keeps_the_lstm_cell_float(exclude):
    graph = _graph("lstm_lm")
    prepared = qc.quantize_pass(graph, QConfig(weight="int8", activation="dynamic",
                                               exclude_ops=exclude))
    assert _float_cells(prepared) == (20, 0) and _dynamic_layers(prepared) == 1
    every = qc.quantize_pass(graph, QConfig(weight="int8", activation="dynamic"))
    assert _float_cells(every) == (0, 20)


def test_lstm_cell_module_type_and_its_old_linear_name():
    graph = _graph("lstm_lm")
    dyn = QConfig(weight="int8", activation="dynamic")
    by_type = qc.quantize_pass(graph, QConfig(weight="int8", activation="dynamic",
                                              module_types={"LSTM": None}))
    assert _float_cells(by_type) == (20, 0) and _dynamic_layers(by_type) == 1
    # written before the fusion: "Linear" configured the cell's products, and still does
    old = qc.quantize_pass(graph, QConfig(weight="int8", activation="dynamic",
                                          module_types={"Linear": None}))
    assert _float_cells(old) == (20, 0) and _dynamic_layers(old) == 0
    # an entry for the cell's own type wins over the old name
    both = qc.quantize_pass(graph, QConfig(weight="int8", activation="dynamic",
                                           module_types={"Linear": None, "LSTM": dyn}))
    assert _float_cells(both) == (0, 20) and _dynamic_layers(both) == 0
    by_path = qc.quantize_pass(graph, QConfig(weight="int8", activation="dynamic",
                                              module_paths={"seq_model": None}))
    assert _float_cells(by_path) == (20, 0)


def test_lstm_cell_names_in_messages():
    with pytest.raises(ValueError, match="'lstm_cel' is not a quantizable op.*'lstm_cell'"):
        QConfig(weight="int8", exclude_ops=("lstm_cel",))
    with pytest.raises(ValueError, match="'lstm_cell' matches no layer.*ops here: conv2d, "
                                         "linear"):
        qc.quantize_pass(_graph("small_cnn"), QConfig(weight="int8", exclude_ops=("lstm_cell",)))
    with pytest.raises(ValueError, match="'LSTMCell' matches no layer.*did you mean 'LSTM'"):
        qc.quantize_pass(_graph("lstm_lm"), QConfig(weight="int8",
                                                    module_types={"LSTMCell": None}))


def test_exclusions_round_trip_through_json():
    cfg = QConfig(**STATIC, exclude_ops=["linear"], exclude_paths=[r"head\..*"])
    assert cfg.exclude_ops == ("linear",)
    assert QConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
