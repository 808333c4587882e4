"""State dicts: names, round trips through needle.save/load, and errors that name keys/files."""
import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle.serialization import load, save


def _model():
    dev = ndl.cpu_numpy()
    return nn.Sequential(nn.Linear(4, 3, device=dev), nn.BatchNorm1d(3, device=dev), nn.ReLU(),
                         nn.Linear(3, 2, device=dev))


def _x():
    return ndl.Tensor(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))


def test_named_parameters_and_buffers_follow_attribute_paths():
    model = _model()
    assert [n for n, _ in model.named_parameters()] == [
        "modules.0.weight", "modules.0.bias", "modules.1.weight", "modules.1.bias",
        "modules.3.weight", "modules.3.bias"]
    assert [n for n, _ in model.named_buffers()] == ["modules.1.running_mean",
                                                     "modules.1.running_var"]
    assert [n for n, _ in model.named_modules()][:3] == ["", "modules.0", "modules.1"]
    assert len(model.parameters()) == 6


def test_state_dict_round_trip_restores_outputs(tmp_path):
    np.random.seed(0)
    src = _model()
    src(_x())  # moves the BatchNorm running statistics away from their init
    src.eval()
    path = tmp_path / "ckpt.npz"
    save(src, str(path))
    np.random.seed(1)
    dst = _model().eval()
    assert not np.allclose(dst(_x()).numpy(), src(_x()).numpy())
    missing, unexpected = dst.load_state_dict(load(str(path)))
    assert missing == [] and unexpected == []
    np.testing.assert_array_equal(dst(_x()).numpy(), src(_x()).numpy())
    assert set(load(str(path))) == set(src.state_dict())


def test_load_state_dict_keeps_parameter_objects_for_optimizers():
    model = _model()
    first = model.parameters()[0]
    model.load_state_dict(_model().state_dict())
    assert model.parameters()[0] is first and first.dtype == "float32"


def test_load_state_dict_errors_name_the_keys():
    model = _model()
    sd = model.state_dict()
    extra = dict(sd, **{"modules.9.weight": np.zeros(1)})
    with pytest.raises(KeyError, match=r"unexpected keys \['modules\.9\.weight'\]"):
        model.load_state_dict(extra)
    missing = {k: v for k, v in sd.items() if k != "modules.1.running_var"}
    with pytest.raises(KeyError, match=r"missing keys \['modules\.1\.running_var'\]"):
        model.load_state_dict(missing)
    assert model.load_state_dict(missing, strict=False) == (["modules.1.running_var"], [])
    bad = dict(sd, **{"modules.3.weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"modules\.3\.weight.*\(2, 3\).*\(3, 2\)"):
        model.load_state_dict(bad)


def test_load_reports_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(str(tmp_path / "nope.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load(str(bad))
    with pytest.raises(TypeError, match="Module or a dict"):
        save([1, 2], str(tmp_path / "x.npz"))


def test_save_accepts_plain_dict_and_writes_exact_path(tmp_path):
    path = tmp_path / "weights.bin"
    save({"a": np.arange(3, dtype=np.int32)}, str(path))
    assert path.exists()
    np.testing.assert_array_equal(load(str(path))["a"], [0, 1, 2])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_state_dict_round_trip(tmp_path, dtype):
    dev = ndl.cpu_numpy()
    src = nn.Linear(3, 2, device=dev, dtype=dtype)
    save(src, str(tmp_path / "half.npz"))
    dst = nn.Linear(3, 2, device=dev, dtype=dtype)
    dst.load_state_dict(load(str(tmp_path / "half.npz")))
    assert dst.weight.dtype == dtype
    np.testing.assert_array_equal(dst.weight.numpy(), src.weight.numpy())
