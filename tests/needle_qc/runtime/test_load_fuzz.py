"""Issue 14: loader fuzz. Every damaged file gives ValueError or a model that is exactly right.

Cases (seeded): a truncation at every offset of a small saved model; random bit flips anywhere
(checksums left stale); random bit flips in the JSON header with its checksum recomputed; and
random bit flips in a tensor with its table checksum and the header checksum recomputed.

With stale checksums the only outcomes allowed are ValueError or an output bit-identical to
the original (a flip in unchecked padding). With recomputed checksums the file may legitimately
describe another model (a digit of a scale changed): then it must load as a model whose graph
passes the checks and whose compiled output equals its own graph's reference evaluation bit for
bit, and the call must not raise. Anything else (another exception type, a crash at the first
call, a compiled output that differs from what the loaded graph says) fails the test.
"""

import json
import zlib

import numpy as np
import pytest

from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from needle_qc.quantize.qparams import qrange
from needle_qc.runtime.serialize import HEADER, load, save
from tests.needle_qc.quantize.qpass_models import batches, mlp

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

FLIPS = 300
X = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "m.nqc"
    save(compile(quantize_pass(mlp(), QConfig(weight="int8", activation="static")),
                 calibration=batches((5, 4))), path)
    return path.read_bytes(), load(path)(X)


def _outcome(data, path, want):
    """"refused", "identical" or "other model" (checked); raises AssertionError otherwise."""
    path.write_bytes(bytes(data))
    try:
        cm = load(path)
    except ValueError:
        return "refused"
    got = cm(X)
    if np.array_equal(got, want) and got.dtype == want.dtype:
        return "identical"
    _assert_sound(cm.graph)
    reference = cm.graph(X).numpy()
    np.testing.assert_array_equal(got, reference)
    return "other model"


def _assert_sound(graph):
    """What any accepted file must satisfy, checked here without the loader's own code."""
    graph.lint()
    for node in graph.nodes:
        qp = node.meta.get("qparams")
        if qp is not None:
            qmin, qmax = qrange(node.meta["dtype"])
            assert np.isfinite(qp["s"]) and np.float32(qp["s"]) > 0, (node.name, qp)
            assert isinstance(qp["z"], int) and qmin <= qp["z"] <= qmax, (node.name, qp)
        if node.op == "qlinear":
            scale = graph.tensors[node.inputs[2].attrs["tensor"]]
            assert np.all(np.isfinite(scale) & (scale > 0)), node.name


def _json_span(data):
    _, _, json_len, _, _ = HEADER.unpack_from(data)
    return HEADER.size, HEADER.size + json_len


def _recompute_json_crc(data):
    start, end = _json_span(data)
    data[16:20] = zlib.crc32(bytes(data[start:end])).to_bytes(4, "little")


def test_truncation_at_every_offset_is_refused(original, tmp_path):
    data, want = original
    outcomes = {_outcome(data[:cut], tmp_path / "t.nqc", want) for cut in range(len(data))}
    assert outcomes == {"refused"}


def test_random_flips_with_stale_checksums(original, tmp_path):
    data, want = original
    rng = np.random.default_rng(14)
    counts = {}
    for _ in range(FLIPS):
        damaged = bytearray(data)
        damaged[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        kind = _outcome(damaged, tmp_path / "f.nqc", want)
        counts[kind] = counts.get(kind, 0) + 1
    assert set(counts) <= {"refused", "identical"}, counts
    assert counts["refused"] > FLIPS // 2


def test_random_json_flips_with_recomputed_checksum(original, tmp_path):
    data, want = original
    start, end = _json_span(data)
    rng = np.random.default_rng(15)
    counts = {}
    for _ in range(FLIPS):
        damaged = bytearray(data)
        damaged[int(rng.integers(start, end))] ^= 1 << int(rng.integers(8))
        _recompute_json_crc(damaged)
        kind = _outcome(damaged, tmp_path / "j.nqc", want)
        counts[kind] = counts.get(kind, 0) + 1
    assert counts.get("refused", 0) > FLIPS // 2, counts


def test_random_tensor_flips_with_recomputed_checksums(original, tmp_path):
    data, want = original
    start, end = _json_span(data)
    blob = -(-end // 64) * 64
    rng = np.random.default_rng(16)
    counts = {}
    for _ in range(FLIPS // 3):
        doc = json.loads(data[start:end])
        entry = doc["tensors"][int(rng.integers(len(doc["tensors"])))]
        damaged = bytearray(data)
        at = blob + entry["offset"] + int(rng.integers(entry["nbytes"]))
        damaged[at] ^= 1 << int(rng.integers(8))
        raw = bytes(damaged[blob + entry["offset"]:blob + entry["offset"] + entry["nbytes"]])
        entry["crc32"] = zlib.crc32(raw)
        text = json.dumps(doc, sort_keys=True).encode()  # the crc may change length
        head = HEADER.pack(b"NQC1", 1, len(text), zlib.crc32(text), 0) + text
        rebuilt = head + b"\0" * (-len(head) % 64) + bytes(damaged[blob:])
        kind = _outcome(rebuilt, tmp_path / "w.nqc", want)
        counts[kind] = counts.get(kind, 0) + 1
    assert set(counts) <= {"refused", "identical", "other model"}, counts
