"""QConfig(reduce_range=True): 7-bit activations carried in the value types, clamped by every
op that writes them, and the AVX2 u8s8 fast path proven on every conv and linear."""

import numpy as np
import pytest

import needle_qc as qc
from needle_qc.quantize.qparams import choose_qparams, qrange, range_qparams, value_qrange


def test_reduced_ranges_and_qparams():
    assert qrange("uint8", reduce_range=True) == (0, 127)
    assert qrange("int8", reduce_range=True) == (-64, 63)
    with pytest.raises(ValueError, match="reduce_range"):
        qrange("int4", reduce_range=True)
    s, z = choose_qparams(-1.0, 3.0, "uint8", reduce_range=True)
    assert s == np.float32(np.float32(4.0) / np.float32(127)) and 0 <= z <= 127
    assert range_qparams("uint8", False) == {}
    assert value_qrange("uint8", {"s": 1.0, "z": 0, **range_qparams("uint8", True)}) == (0, 127)
    assert value_qrange("uint8", {"s": 1.0, "z": 0}) == (0, 255)


def test_reduce_range_needs_quantized_activations():
    with pytest.raises(ValueError, match="reduce_range"):
        qc.QConfig(weight="int8", activation=None, reduce_range=True)
    for mode in ("static", "dynamic"):
        cfg = qc.QConfig(weight="int8", activation=mode, reduce_range=True)
        assert qc.QConfig.from_dict(cfg.to_dict()) == cfg
    assert not qc.QConfig().reduce_range


def _compiled(name, reduce_range):
    model, entry = qc.zoo.load_pretrained(name), qc.zoo.get(name)
    g = qc.trace(model, qc.zoo.example_input(name, 8), batch_dims=entry.input.batch_dim)
    cfg = qc.QConfig(weight="int8", activation="static", reduce_range=reduce_range)
    p = qc.quantize_pass(g, cfg)
    qc.calibrate(p, [qc.zoo.example_input(name, 8, seed=s) for s in range(2, 4)], progress=False)
    return qc.compile(p, autotune=False)


@pytest.mark.parametrize("name", ["small_cnn", "resnet9"])
def test_reduce_range_compiles_bit_exact_with_7_bit_activations(name):
    cm = _compiled(name, True)
    quantized = [n for n in cm.graph.nodes if n.meta.get("qparams")]
    assert quantized
    for n in quantized:  # every activation: 7 bits, zero point inside them
        qp = n.meta["qparams"]
        assert (qp["qmin"], qp["qmax"]) == (0, 127) and 0 <= qp["z"] <= 127, n.name
    assert "qmax=127" in str(cm.graph)
    x = qc.zoo.example_input(name, 5, seed=9) * 3  # well past the calibrated ranges
    np.testing.assert_array_equal(cm(x), cm.graph(x).numpy())
    values = cm.node_values(x)  # the compiled kernels' integers, every step
    for n in quantized:
        if n.name in values and n.meta["dtype"] == "uint8":
            assert int(np.max(values[n.name])) <= 127, n.name


def test_reduce_range_proves_the_fast_path_on_small_cnn_convs():
    rows = {r["node"]: r for r in _compiled("small_cnn", True).explain().rows
            if r["op"] in ("qconv2d", "qlinear")}
    assert rows and all("fast path proven" in r["why"] for r in rows.values()), rows
    rows = {r["node"]: r for r in _compiled("small_cnn", False).explain().rows
            if r["op"] == "qconv2d"}
    assert all("fast path proven" not in r["why"] for r in rows.values())
