"""save/load: one pickle-free file, bit-identical round trips, clear errors on damage."""

import json
import struct
import zlib

import numpy as np
import pytest

from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import prepare_stages, quantize_pass
from needle_qc.runtime.compiled import CompiledModel
from needle_qc.runtime.serialize import HEADER, load, save
from tests.needle_qc.quantize.qpass_models import batches, convnet, mlp

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

STATIC = QConfig(weight="int8", activation="static")


@pytest.fixture(scope="module")
def stages():
    return prepare_stages(convnet(), STATIC, batches((5, 1, 6, 6)))


def x_of(batch=7):
    return np.random.default_rng(4).standard_normal((batch, 1, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("stage", ["float", "observed", "qdq", "int8"])
def test_graph_round_trip_at_every_stage(stages, stage, tmp_path):
    g = stages[stage]
    path = tmp_path / f"{stage}.nqc"
    save(g, path)
    back = load(path)
    assert str(back) == str(g)
    assert set(back.tensors) == set(g.tensors)
    for key in g.tensors:
        assert back.tensors[key].dtype == g.tensors[key].dtype
        np.testing.assert_array_equal(back.tensors[key], g.tensors[key])
    assert [n.meta for n in back.nodes] == [n.meta for n in g.nodes]
    if stage == "observed":
        assert back.observers["x_obs"].to_dict() == g.observers["x_obs"].to_dict()
        assert back.qconfig == g.qconfig
    else:
        np.testing.assert_array_equal(back(x_of()).numpy(), g(x_of()).numpy())


@pytest.mark.parametrize("target", ["cpu", "reference"])
def test_compiled_model_round_trip_is_bit_identical(stages, target, tmp_path):
    cm = compile(stages["int8"], target=target)
    path = tmp_path / "model.nqc"
    cm.save(path)
    back = load(path)
    assert isinstance(back, CompiledModel)
    assert (back.target, back.stage, back.example_batch) == (cm.target, cm.stage,
                                                             cm.example_batch)
    assert back.choices() == cm.choices()
    assert str(back.explain()) == str(cm.explain())
    for batch in (1, 7, 64):
        np.testing.assert_array_equal(back(x_of(batch)), cm(x_of(batch)))


def test_kept_float_choice_survives_the_round_trip(tmp_path, monkeypatch):
    from needle_qc.lower import driver as lowering

    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 2.0 if kind == "int8" else 1.0)
    with pytest.warns(UserWarning, match="2 layer.* run in float: %fc1"):
        cm = compile(quantize_pass(mlp(), STATIC), calibration=batches((5, 4)), autotune=True)
    save(cm, tmp_path / "m.nqc")
    with pytest.warns(UserWarning, match="run in float"):
        back = load(tmp_path / "m.nqc")
    assert back.choices() == {"fc1": "alternative", "fc2": "alternative"}
    assert b"times" not in (tmp_path / "m.nqc").read_bytes()  # timings stay in cm.tuning
    assert cm.tuning.times["fc1"] == {"int8": 2.0, "float": 1.0}
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    np.testing.assert_array_equal(back(x), cm(x))


def test_file_layout_header_json_aligned_blob(stages, tmp_path):
    path = tmp_path / "g.nqc"
    save(stages["int8"], path)
    data = path.read_bytes()
    magic, version, json_len, json_crc, _ = HEADER.unpack_from(data)
    assert (magic, version) == (b"NQC1", 1)
    doc = json.loads(data[HEADER.size:HEADER.size + json_len])
    assert doc["kind"] == "graph" and zlib.crc32(data[HEADER.size:HEADER.size + json_len]) == \
        json_crc
    blob = -(-(HEADER.size + json_len) // 64) * 64
    for entry in doc["tensors"]:
        assert entry["offset"] % 64 == 0
        raw = data[blob + entry["offset"]:blob + entry["offset"] + entry["nbytes"]]
        assert zlib.crc32(raw) == entry["crc32"]
    assert b"pickle" not in data and not data[:2] == b"\x80\x04"


@pytest.fixture
def saved(stages, tmp_path):
    path = tmp_path / "m.nqc"
    save(compile(stages["int8"], tune_kernels=False), path)
    return path


def test_bad_magic(saved):
    data = bytearray(saved.read_bytes())
    data[:4] = b"PK\x03\x04"
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"m\.nqc: bad magic b'PK\\x03\\x04'; expected b'NQC1'"):
        load(saved)


@pytest.mark.parametrize("keep", [10, HEADER.size + 5, -3])
def test_truncated_file_names_the_byte(saved, keep):
    data = saved.read_bytes()
    cut = data[:keep] if keep > 0 else data[:len(data) + keep]
    saved.write_bytes(cut)
    with pytest.raises(ValueError, match=rf"m\.nqc: truncated at byte {len(cut)}"):
        load(saved)


def test_tampered_tensor_names_the_tensor(saved):
    data = bytearray(saved.read_bytes())
    _, _, json_len, _, _ = HEADER.unpack_from(data)
    doc = json.loads(bytes(data[HEADER.size:HEADER.size + json_len]))
    entry = next(t for t in doc["tensors"] if t["name"] == "conv2.weight_q")
    blob = -(-(HEADER.size + json_len) // 64) * 64
    data[blob + entry["offset"] + 3] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch for tensor 'conv2.weight_q'"):
        load(saved)


def test_tampered_json_is_caught(saved):
    data = bytearray(saved.read_bytes())
    i = data.index(b'"target": "cpu"')
    data[i + 11:i + 14] = b"gpu"
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch for the JSON header"):
        load(saved)


def test_unsupported_version(saved):
    data = bytearray(saved.read_bytes())
    struct.pack_into("<I", data, 4, 99)
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="format version 99 is not supported"):
        load(saved)


def test_save_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="expected a Graph or CompiledModel"):
        save({"a": 1}, tmp_path / "x.nqc")


def test_json_that_does_not_rebuild_names_the_file(stages, tmp_path):
    from needle_qc.runtime.serialize import _read, _write

    path = tmp_path / "g.nqc"
    save(stages["int8"], path)
    doc, tensors = _read(str(path))
    doc["graph"]["text"] = doc["graph"]["text"].replace("qlinear(", "qlinearr(")
    _write(path, doc, tensors)  # consistent checksums, broken content
    with pytest.raises(ValueError, match=r"g\.nqc: .*qlinearr"):
        load(path)
