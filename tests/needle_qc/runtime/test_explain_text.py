"""explain(): plain words first (where each layer runs, its scales and weight format), the
kernel table after."""
import functools

import needle_qc as qc


@functools.cache
def _prepared(preset):
    graph = qc.trace(qc.zoo.load_pretrained("small_cnn"), qc.zoo.example_input("small_cnn", 4))
    prepared = qc.quantize_pass(graph, qc.QConfig.preset(preset))
    qc.calibrate(prepared, [qc.zoo.example_input("small_cnn", 8, seed=2)], progress=False)
    return prepared


def test_plain_words_come_first_with_scales():
    text = str(qc.compile(_prepared("int8-static")).explain())
    lines = text.splitlines()
    assert lines[0].startswith("In plain words (cpu, stage int8): 4 of 4 quantized layers")
    first = next(line for line in lines if line.strip().startswith("layers.modules.0.conv"))
    assert "runs in int8" in first and "weights int8 per channel" in first
    assert "in scale 0.003922 zero point 0" in first  # 1/255, 4 significant digits
    assert lines.index("Details:") < lines.index(next(x for x in lines if "qconv2d" in x))


def test_kept_float_layer_is_said_in_words():
    cm = qc.compile(_prepared("int8-static"),
                    choices={"layers.modules.0.conv": "alternative"})
    text = str(cm.explain())
    assert "kept in float32: layers.modules.0.conv" in text.splitlines()[0]
    assert "runs in float32: its int8 kernel was slower" in text


def test_weight_only_and_dynamic_phrases():
    weight_only = str(qc.compile(_prepared("int4-g32")).explain())
    assert "weights int4 in groups of 32" in weight_only
    assert "computes in float32" in weight_only
    dynamic = str(qc.compile(_prepared("int8-dyn")).explain())
    assert "input quantized at run time" in dynamic
