"""Zoo registry, committed checkpoints (size, provenance, mismatch errors) and zoo data."""
import os

import numpy as np
import pytest

import needle as ndl
import needle_qc as qc
from needle_qc.tools import zoo

ZOO_INPUT = zoo.InputSpec(("N", 6))


def tiny_factory():
    """A user model for the ``module:factory`` form."""
    return ndl.nn.Sequential(ndl.nn.Linear(6, 4), ndl.nn.ReLU(), ndl.nn.Linear(4, 2))


def test_registry_lists_the_five_models():
    assert zoo.list_models() == ["mlp", "small_cnn", "resnet9", "lstm_lm", "transformer_lm"]


def test_unknown_name_lists_the_zoo():
    with pytest.raises(KeyError, match="unknown model 'vgg'.*mlp.*small_cnn"):
        zoo.get("vgg")


@pytest.mark.parametrize("name", ["mlp", "small_cnn", "resnet9", "lstm_lm", "transformer_lm"])
def test_pretrained_model_traces_and_matches_its_graph(name):
    model = zoo.load_pretrained(name)
    x = zoo.example_input(name, batch=4)
    entry = zoo.get(name)
    assert x.shape == entry.input.concrete(4)
    graph = qc.trace(model, x, batch_dims=entry.input.batch_dim)
    eager = model(ndl.Tensor(x, device=ndl.cpu())).numpy()
    np.testing.assert_array_equal(graph(x).numpy(), eager)


def test_checkpoints_are_small_and_all_present():
    sizes = {}
    for name in zoo.list_models():
        path = os.path.join(zoo.CHECKPOINT_DIR, zoo.get(name).checkpoint)
        sizes[name] = os.path.getsize(path)
        assert sizes[name] < 2_000_000, f"{name}: {sizes[name]} bytes"
    assert sum(sizes.values()) < 6_000_000, sizes


@pytest.mark.parametrize("name", ["mlp", "small_cnn"])
def test_checkpoint_record_matches_a_fresh_evaluation(name):
    info = zoo.checkpoint_info(name)
    assert info["model"] == name and info["seed"] == 0
    model = zoo.load_pretrained(name)
    score = zoo.evaluate(name, lambda x: model(ndl.Tensor(x, device=ndl.cpu())))
    assert score["accuracy"] == pytest.approx(info["heldout"]["accuracy"], abs=1e-3)
    assert score["accuracy"] > 0.95


def test_checkpoint_of_another_model_names_both():
    other = os.path.join(zoo.CHECKPOINT_DIR, "small_cnn.npz")
    with pytest.raises(ValueError, match="'small_cnn', not 'mlp'"):
        zoo.load_pretrained("mlp", path=other)


def test_checkpoint_without_record_that_does_not_fit_names_the_keys(tmp_path):
    path = str(tmp_path / "odd.npz")
    ndl.save({"weight": np.zeros((2, 2), np.float32)}, path)
    with pytest.raises(ValueError, match="odd.npz.*does not fit 'mlp'.*unexpected keys"):
        zoo.load_pretrained("mlp", path=path)


def test_missing_checkpoint_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        zoo.load_pretrained("mlp", path=str(tmp_path / "nothere.npz"))


def test_save_and_load_checkpoint_round_trip(tmp_path):
    model = zoo.build("mlp")
    path = str(tmp_path / "mlp.npz")
    meta = zoo.save_checkpoint(model, "mlp", path, note="test")
    assert meta["parameters"] == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    again = zoo.load_pretrained("mlp", path=path)
    for a, b in zip(model.parameters(), again.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_user_model_by_module_and_factory():
    entry = zoo.get("tests.needle_qc.tools.test_zoo:tiny_factory")
    assert entry.input == ZOO_INPUT and entry.checkpoint is None
    x = zoo.example_input("tests.needle_qc.tools.test_zoo:tiny_factory", batch=3)
    assert x.shape == (3, 6)
    model = zoo.build("tests.needle_qc.tools.test_zoo:tiny_factory")
    assert model(ndl.Tensor(x, device=ndl.cpu())).shape == (3, 2)
    with pytest.raises(ValueError, match="has no committed checkpoint"):
        zoo.load_pretrained("tests.needle_qc.tools.test_zoo:tiny_factory")


def test_bad_user_model_names_are_clear_errors():
    with pytest.raises(ValueError, match="cannot import 'no_such_pkg'"):
        zoo.get("no_such_pkg:make")
    with pytest.raises(ValueError, match="no callable 'nothing'"):
        zoo.get("tests.needle_qc.tools.test_zoo:nothing")


def test_resnet9_digits_are_padded_and_repeated():
    X, y = zoo.dataset("resnet9", "heldout")
    assert X.shape == (2000, 3, 32, 32) and y.shape == (2000,)
    assert np.all(X[:, :, :2, :] == 0) and np.all(X[:, :, :, -2:] == 0)
    np.testing.assert_array_equal(X[:, 0], X[:, 2])
    flat, _ = zoo.dataset("mlp", "heldout")
    np.testing.assert_array_equal(X[:, 1, 2:30, 2:30].reshape(2000, -1), flat)


def test_language_model_batches_are_shifted_ids():
    batches = zoo.batches("lstm_lm", "heldout", batch_size=4, limit=2)
    x, y = batches[0]
    assert x.shape == (zoo.LM_SEQ_LEN, 4) and y.shape == (zoo.LM_SEQ_LEN * 4,)
    np.testing.assert_array_equal(x[1:].reshape(-1), y[: (zoo.LM_SEQ_LEN - 1) * 4])


def test_evaluate_perplexity_of_uniform_logits_is_the_vocabulary():
    vocab = zoo.build("lstm_lm").linear.weight.shape[1]
    score = zoo.evaluate("lstm_lm", lambda x: np.zeros((x.size, vocab), np.float32), limit=2)
    assert score["perplexity"] == pytest.approx(vocab, rel=1e-9)


def test_dataset_split_is_checked():
    with pytest.raises(ValueError, match="split must be 'train' or 'heldout'"):
        zoo.dataset("mlp", "test")
