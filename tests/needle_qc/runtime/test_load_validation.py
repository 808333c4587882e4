"""Issue 14: load() refuses every self-contradicting file with one ValueError naming it.

Each test crafts a file with consistent checksums (``_write`` recomputes them) whose content
lies, then asserts the refusal names the file and the node or tensor.
"""

import json
import struct
import zlib

import numpy as np
import pytest

from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from needle_qc.runtime.serialize import HEADER, _read, _write, load, save
from tests.needle_qc.quantize.qpass_models import batches, mlp

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

STATIC = QConfig(weight="int8", activation="static")


@pytest.fixture(scope="module")
def model():
    return compile(quantize_pass(mlp(), STATIC), calibration=batches((5, 4)))


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "m.nqc"
    save(model, path)
    return path


def _rewrite(path, change):
    """Apply ``change(doc, tensors)`` and write the file back with valid checksums."""
    doc, tensors = _read(str(path))
    change(doc, tensors)
    _write(path, doc, tensors)


def _refused(path, pattern):
    with pytest.raises(ValueError, match=r"(?s)m\.nqc: " + pattern):
        load(path)


def _text(doc, old, new):
    assert old in doc["graph"]["text"], old
    doc["graph"]["text"] = doc["graph"]["text"].replace(old, new, 1)


def test_table_dtype_contradicting_the_text_is_refused(saved):
    def change(doc, tensors):
        entry = next(t for t in doc["tensors"] if t["name"] == "fc1.weight_q")
        entry["dtype"] = "uint8"
        tensors["fc1.weight_q"] = tensors["fc1.weight_q"].view(np.uint8)
    _rewrite(saved, change)
    _refused(saved, r".*fc1.weight_q.* has dtype uint8, meta says int8")


def test_negative_scale_in_a_type_is_refused(saved):
    _rewrite(saved, lambda doc, t: _text(doc, "{s=0.005650700069963932, z=178}",
                                         "{s=-1.0, z=178}"))
    _refused(saved, r"%fc2: scale s=-1.0 must be finite and > 0")


@pytest.mark.parametrize("z", ["300", "-1", "2147483648"])
def test_zero_point_out_of_range_is_refused(saved, z):
    _rewrite(saved, lambda doc, t: _text(doc, "z=178}", f"z={z}}}"))
    _refused(saved, rf"%fc2: zero point z={z} is not an int in \[0, 255\]")


def test_zero_scale_is_refused(saved):
    _rewrite(saved, lambda doc, t: _text(doc, "{s=0.005650700069963932, z=178}",
                                         "{s=0.0, z=178}"))
    _refused(saved, r"%fc2: scale s=0.0 must be finite and > 0")


def test_meta_may_not_override_typed_meta(saved):
    def change(doc, tensors):
        doc["graph"]["meta"]["fc2"] = {"qparams": {"s": 1.0, "z": 0}, "shape": [1]}
    _rewrite(saved, change)
    _refused(saved, r"%fc2: meta key '(qparams|shape)' is not one a file may set")


def test_non_positive_weight_scale_is_refused(saved):
    def change(doc, tensors):
        tensors["fc1.weight_scale"] = tensors["fc1.weight_scale"].copy()
        tensors["fc1.weight_scale"][2] = -0.5
    _rewrite(saved, change)
    _refused(saved, r"%fc1: weight scale tensor 'fc1.weight_scale' has 1 values")


def test_deep_json_nesting_is_refused(saved):
    body = b"[" * 100000 + b"]" * 100000
    saved.write_bytes(HEADER.pack(b"NQC1", 1, len(body), zlib.crc32(body), 0) + body)
    _refused(saved, r"the JSON header nests 100000 levels deep")


def test_huge_observer_bins_are_refused(tmp_path):
    path = tmp_path / "m.nqc"
    cfg = QConfig(weight="int8", activation="static", observer="percentile")
    save(quantize_pass(mlp(), cfg), path)

    def change(doc, tensors):
        for obs in doc["graph"]["observers"].values():
            obs["config"]["bins"] = 10 ** 10
    _rewrite(path, change)
    _refused(path, r"observer %\w+: HistogramObserver: bins=10000000000 must be an int in "
                   r"\[256, 65536\]")


def test_float_stride_is_refused(tmp_path):
    from tests.needle_qc.quantize.qpass_models import convnet

    path = tmp_path / "m.nqc"
    save(compile(quantize_pass(convnet(), STATIC), calibration=batches((5, 1, 6, 6))), path)
    _rewrite(path, lambda doc, t: _text(doc, "stride=2", "stride=2.5"))
    _refused(path, r".*stride=2.5 is not of type int")


@pytest.mark.parametrize("field,value,pattern", [
    ("stage", "int4", r"stage 'int4'; valid"),
    ("stage", "qdq", r"stage 'qdq' contradicts the graph"),
    ("target", "tpu", r"target 'tpu'; valid"),
    ("example_batch", -3, r"example_batch=-3 is not an int"),
])
def test_unknown_model_record_values_are_refused(saved, field, value, pattern):
    _rewrite(saved, lambda doc, t: doc["model"].__setitem__(field, value))
    _refused(saved, pattern)


def test_unknown_choice_is_refused(saved):
    _rewrite(saved, lambda doc, t: doc["model"]["steps"]["fc1"].__setitem__("choice", "fast"))
    _refused(saved, r"step %fc1: choice 'fast'; valid")


def test_step_for_an_unknown_node_is_refused(saved):
    def change(doc, tensors):
        doc["model"]["steps"]["ghost"] = {"choice": "alternative", "note": ""}
    _rewrite(saved, change)
    _refused(saved, r"step %ghost: the file records a kernel choice for a node that has none")


def test_duplicate_table_entry_is_refused(saved):
    data = bytearray(saved.read_bytes())
    _, _, json_len, _, _ = HEADER.unpack_from(data)
    doc = json.loads(bytes(data[HEADER.size:HEADER.size + json_len]))
    doc["tensors"].append(dict(doc["tensors"][0]))
    text = json.dumps(doc, sort_keys=True).encode()
    saved.write_bytes(HEADER.pack(b"NQC1", 1, len(text), zlib.crc32(text), 0) + text +
                      bytes(data[HEADER.size + json_len:]))
    _refused(saved, r"tensor 'fc1.weight_q' appears twice in the tensor table")


def test_duplicate_json_key_is_refused(saved):
    data = bytearray(saved.read_bytes())
    _, _, json_len, _, _ = HEADER.unpack_from(data)
    text = bytes(data[HEADER.size:HEADER.size + json_len]).replace(
        b'"kind": "compiled_model"', b'"kind": "graph", "kind": "compiled_model"')
    struct.pack_into("<QI", data, 8, len(text), zlib.crc32(text))
    saved.write_bytes(bytes(data[:HEADER.size]) + text + b"\0" * 64)
    _refused(saved, r"the JSON header repeats the key 'kind'")


def test_weight_only_scale_that_is_not_positive_is_refused(tmp_path):
    path = tmp_path / "m.nqc"
    save(compile(quantize_pass(mlp(), QConfig(weight="int4", group_size=2))), path)

    def change(doc, tensors):
        key = next(k for k in tensors if "scale" in k)
        tensors[key] = tensors[key].copy()
        tensors[key].flat[0] = 0.0
    _rewrite(path, change)
    _refused(path, r"%fc\d: weight scale tensor '.*scale.*' has 1 values that are not finite")
