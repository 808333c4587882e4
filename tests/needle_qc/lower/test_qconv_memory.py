"""A lowered qconv2d holds its weights once, as int8: the runtime's WeightRecord of every conv is
within the documented int8 packing allowance, weight zero points (uint8-affine) included."""

import pytest

from needle_qc.capture.tracer import trace
from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from needle_qc.runtime.memory import packing_allowance
from needle_qc.tools import report, zoo

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")


@pytest.mark.parametrize("scheme", ["int8-static", "uint8-affine"])
def test_small_cnn_conv_weights_cost_their_int8_bytes(scheme):
    entry = zoo.get("small_cnn")
    g = trace(zoo.load_pretrained("small_cnn"), zoo.example_input("small_cnn", 8),
              batch_dims=entry.input.batch_dim)
    p = quantize_pass(g, QConfig(**report.SCHEMES[scheme].qconfig_args))
    cm = compile(p, calibration=[zoo.example_input("small_cnn", 8, seed=s) for s in (2, 3)],
                 force_int8=True)
    convs = [s for s in cm.program.steps if s.op == "qconv2d"]
    assert len(convs) == 3
    zero_points = 0
    for step in convs:
        assert step.active.kind == "int8", step.active.why
        zero_points += "weight zero point" in step.active.why
        (rec,) = step.active.weights
        kh, kw, cin, cout = cm.graph.node(step.node).inputs[1].meta["shape"]
        assert rec.count == kh * kw * cin * cout
        allowed = rec.count + packing_allowance("int8", kh * kw * cin, cout, runs=kh)
        assert rec.count <= rec.measured_bytes <= allowed, (step.node, rec)
    assert zero_points == (3 if scheme == "uint8-affine" else 0)


def test_resnet9_every_packed_weight_is_within_its_own_allowance():
    """Per layer, not only per model: the 7x7x3 stem pads each kernel row's 21 bytes to 24."""
    from needle_qc.runtime.memory import memory_of

    entry = zoo.get("resnet9")
    g = trace(zoo.load_pretrained("resnet9"), zoo.example_input("resnet9", 4),
              batch_dims=entry.input.batch_dim)
    p = quantize_pass(g, QConfig(**report.SCHEMES["int8-static"].qconfig_args))
    cm = compile(p, calibration=[zoo.example_input("resnet9", 4, seed=s) for s in (2, 3)],
                 force_int8=True)
    for step in cm.program.steps:
        if step.op != "qconv2d":
            continue
        (rec,) = step.active.weights
        kh, kw, cin, cout = cm.graph.node(step.node).inputs[1].meta["shape"]
        allowed = rec.count + packing_allowance("int8", kh * kw * cin, cout, runs=kh)
        assert rec.count <= rec.measured_bytes <= allowed, (step.node, rec)
    mem = memory_of(cm, 4)
    assert mem["theoretical_bytes"] <= mem["measured_bytes"] <= mem["max_packed_bytes"]
