"""The proposal's API (needle.quantization): Module.quantize, insert_observer, quantize."""
import runpy
from pathlib import Path

import numpy as np
import pytest

import needle as ndl
from needle import quantization
from needle.data import DataLoader, NDArrayDataset, load_mnist_split
from needle.models import MLP, LanguageModel
from needle_qc.tools.compare import deviation


@pytest.fixture(scope="module")
def mlp():
    np.random.seed(0)
    return MLP(784, (64,), 10, device=ndl.cpu()).eval()


@pytest.fixture(scope="module")
def digits():
    X, y = load_mnist_split("train")
    return X[:512], y[:512]


def _loader(digits, batch_size=128):
    return DataLoader(NDArrayDataset(*digits), batch_size=batch_size)


def _calibrate(model, dataloader):
    # The proposal's calibration loop, verbatim apart from taking the loader.
    for batch in dataloader:
        _ = model(batch)  # internally gathers statistics
    return model


def test_module_quantize_is_weight_only_and_traced_lazily(mlp, digits):
    qm = mlp.quantize(data_type="int8")
    assert isinstance(qm, quantization.QuantizedModel) and qm.compiled is None
    with pytest.raises(RuntimeError, match="not built yet"):
        _ = qm.graph
    x = ndl.Tensor(digits[0][:64], device=ndl.cpu())
    out = qm(x)
    assert isinstance(out, ndl.Tensor) and out.shape == (64, 10)
    assert {n.op for n in qm.graph.nodes} >= {"linear_weight_only"}
    assert deviation(mlp(x).numpy(), out.numpy())["sqnr_db"] > 35
    assert qm.parameters() == [] and qm.eval() is qm


def test_weight_only_memory_is_exactly_a_quarter(mlp, digits):
    qm = mlp.quantize(data_type="int8")
    qm(digits[0][:8])
    row = qm.memory_report().rows["int8"]
    assert row["weights"] == 784 * 64 + 64 * 10
    assert row["bytes"] * 4 == row["float32_bytes"]
    assert row["qparam_bytes"] == 4 * (64 + 10)  # one fp32 scale per output channel
    assert "as allocated by the compiled kernels" in str(qm.memory_report())


def test_static_affine_uint8_memory_counts_zero_points_as_qparams(mlp, digits):
    # A qlinear's 4th input is the weight zero point here, not the bias.
    qm = quantization.quantize(mlp, "uint8", activation="static", weight_symmetric=False,
                               calibration_data=[digits[0][:128]], example_input=digits[0][:8])
    row = qm.memory_report().rows["uint8"]
    assert row["bytes"] == 784 * 64 + 64 * 10
    assert row["qparam_bytes"] == (4 + 1) * (64 + 10)  # per channel: fp32 scale, u8 zero point
    assert row["bias_bytes"] == 4 * (64 + 10)  # int32 biases


def test_a_new_batch_size_after_tracing(mlp, digits):
    qm = quantization.quantize(mlp, "float16", example_input=digits[0][:8])
    assert qm.compiled is not None
    assert qm(digits[0][:3]).shape == (3, 10)


def test_seed_snippet_two_static_int8(mlp, digits):
    recipe = quantization.quantize(data_type="int8")
    assert isinstance(recipe, quantization.Quantizer)
    observed = quantization.insert_obserserver(mlp)  # the proposal's spelling works too
    observed = _calibrate(observed, _loader(digits))
    assert observed.calls == 4
    qm = quantization.convert(observed)
    assert "qlinear" in {n.op for n in qm.graph.nodes}
    x = ndl.Tensor(digits[0][:256], device=ndl.cpu())
    d = deviation(mlp(x).numpy(), qm(x).numpy())
    assert d["sqnr_db"] > 25 and d["top1_agreement"] >= 0.98


def test_observed_model_computes_the_float_model(mlp, digits):
    observed = quantization.insert_observer(mlp, example_input=digits[0][:4])
    x = ndl.Tensor(digits[0][:16], device=ndl.cpu())
    np.testing.assert_allclose(observed(x).numpy(), mlp(x).numpy(), rtol=1e-5, atol=1e-5)
    assert observed.parameters() == mlp.parameters()
    assert "observer" in {n.op for n in observed.graph.nodes}


def test_quantizer_recipe_applies_to_a_model(mlp, digits):
    recipe = quantization.quantize(data_type="int8", activation="static")
    qm = recipe(mlp, calibration_data=_loader(digits))
    assert qm.qconfig.activation == "static"
    observed = recipe.insert_observer(mlp)
    _calibrate(observed, _loader(digits))
    assert quantization.convert(observed).qconfig == qm.qconfig


def test_one_shot_dynamic_and_static(mlp, digits):
    x = digits[0][:128]
    ref = mlp(ndl.Tensor(x, device=ndl.cpu())).numpy()
    dyn = quantization.quantize(mlp, data_type="int8", activation="dynamic")
    assert deviation(ref, dyn(x))["sqnr_db"] > 30
    assert "linear_dynamic" in {n.op for n in dyn.graph.nodes}
    static = quantization.quantize(mlp, "int8", "static", calibration_data=_loader(digits),
                                   weight_granularity="per_tensor")
    assert deviation(ref, static(x))["sqnr_db"] > 25


def test_qconfig_keywords_reach_the_graph(mlp, digits):
    qm = quantization.quantize(mlp, "int4", group_size=16, example_input=digits[0][:4])
    node = qm.graph.find("linear_weight_only")[0]
    assert node.attrs["weight_dtype"] == "int4" and node.attrs["group_size"] == 16


def test_language_model_batch_is_dim_one():
    np.random.seed(0)
    lm = LanguageModel(8, 30, 8, 1, "lstm", device=ndl.cpu()).eval()
    ids = np.random.default_rng(0).integers(0, 30, (5, 3)).astype(np.float32)
    qm = quantization.quantize(lm, "int8", "dynamic")
    logits, _ = qm(ndl.Tensor(ids, device=ndl.cpu()))
    ref, _ = lm(ndl.Tensor(ids, device=ndl.cpu()))
    assert deviation(ref.numpy(), logits.numpy())["sqnr_db"] > 30
    wider = np.concatenate([ids, ids], axis=1)
    assert qm(ndl.Tensor(wider, device=ndl.cpu()))[0].shape == (5 * 6, 30)


def test_inputs_on_another_device_are_moved_to_the_models(mlp, digits):
    x = ndl.Tensor(digits[0][:8], device=ndl.cpu_numpy())
    observed = quantization.insert_observer(mlp)
    assert observed(x).shape == (8, 10)


def test_train_warns_that_nothing_changes(mlp):
    qm = mlp.quantize(data_type="float16")
    with pytest.warns(UserWarning, match="inference mode"):
        assert qm.train() is qm


def test_bad_arguments_are_clear_errors(mlp, digits):
    with pytest.raises(ValueError, match="data_type='int7' is not supported"):
        quantization.quantize(mlp, "int7")
    with pytest.raises(ValueError, match="activation='always'"):
        quantization.quantize(mlp, "int8", "always")
    with pytest.raises(ValueError, match="needs calibration_data="):
        quantization.quantize(mlp, "int8", "static")
    with pytest.raises(ValueError, match="calibration_data is empty"):
        quantization.quantize(mlp, "int8", "static", calibration_data=[])
    with pytest.raises(TypeError, match="expected a needle.nn.Module"):
        quantization.insert_observer("mlp")
    with pytest.raises(ValueError, match="never called"):
        quantization.convert(quantization.insert_observer(mlp))
    with pytest.raises(ValueError, match="has seen no batches"):
        quantization.convert(quantization.insert_observer(mlp, example_input=digits[0][:4]))
    with pytest.raises(TypeError, match="expected the ObservedModel"):
        quantization.convert(mlp)
    with pytest.raises(ValueError, match="weight-only"):
        quantization.quantize(mlp, "float16", "dynamic")


def _example(name):
    return str(Path(__file__).resolve().parents[2] / "examples" / name)


def test_the_seed_api_example_runs_the_proposal_snippets(capsys):
    runpy.run_path(_example("seed_api.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "case 1: weight-only int8" in out and "case 2: static int8" in out
    assert "output vs float32: SQNR" in out


def test_the_quickstart_example_runs(tmp_path, capsys):
    module = runpy.run_path(_example("quickstart.py"))
    assert module["main"](["--model", "mlp", "--out", str(tmp_path)]) == 0
    assert "held-out top-1: float32" in capsys.readouterr().out
    assert len(list(tmp_path.iterdir())) >= 2
