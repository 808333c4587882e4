"""calibrate: the report, progress bar, batch forms and every error case."""

import math

import numpy as np
import pytest

from needle_qc.quantize import QConfig, choose_qparams
from needle_qc.quantize.api import calibrate, convert, quantize_pass
from tests.needle_qc.quantize.qpass_models import batches, mlp

STATIC = QConfig(weight="int8", activation="static")


def test_report_has_range_drift_and_qparams_per_observer():
    prepared = quantize_pass(mlp(), STATIC)
    data = batches((6, 4), count=10)
    report = calibrate(prepared, data, progress=False)
    assert report.batches == 10
    assert list(report.observers) == ["x_obs", "fc1_obs", "fc2_obs"]
    x = report.observers["x_obs"]
    everything = np.concatenate(data)
    assert x.range == (float(everything.min()), float(everything.max()))
    assert x.n_updates == 10
    s, z = choose_qparams(everything.min(), everything.max(), "uint8")
    assert (x.scale, x.zero_point) == (float(s), int(z))
    # drift over the last 10% (1 batch): range before it vs after it, over the final width
    before = np.concatenate(data[:9])
    lo_d, hi_d = abs(everything.min() - before.min()), abs(everything.max() - before.max())
    width = everything.max() - everything.min()
    assert x.drift == pytest.approx(max(lo_d, hi_d) / width, rel=1e-6)
    assert report.observers["fc1_obs"].range[0] == 0.0  # after the fused relu
    text = str(report)
    assert "calibration: 10 batches, 3 observers" in text and "fc2_obs" in text


def test_one_batch_drift_is_nan_and_printed_as_na():
    prepared = quantize_pass(mlp(), STATIC)
    report = calibrate(prepared, batches((6, 4), count=1), progress=False)
    assert math.isnan(report.observers["x_obs"].drift)
    assert "n/a" in str(report)


def test_tuple_batches_use_the_first_item():
    prepared = quantize_pass(mlp(), STATIC)
    data = [(x, np.zeros(len(x))) for x in batches((6, 4), count=3)]
    report = calibrate(prepared, data, progress=False)
    assert report.batches == 3


def test_progress_bar_goes_to_stderr(capsys):
    prepared = quantize_pass(mlp(), STATIC)
    calibrate(prepared, batches((6, 4), count=2), progress=True)
    assert "calibrate" in capsys.readouterr().err


def test_nan_batch_names_the_observer_node():
    prepared = quantize_pass(mlp(), STATIC)
    bad = batches((6, 4), count=1)[0]
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="'x_obs': 1 NaN/Inf values"):
        calibrate(prepared, [bad], progress=False)


def test_static_config_without_data_is_an_error():
    prepared = quantize_pass(mlp(), STATIC)
    with pytest.raises(ValueError, match="needs calibration data, but `batches` was empty"):
        calibrate(prepared, [], progress=False)


def test_uncalibrated_convert_is_an_error():
    prepared = quantize_pass(mlp(), STATIC)
    with pytest.raises(ValueError, match="observer %x_obs has no calibration data"):
        convert(prepared)


def test_weight_only_needs_no_data():
    prepared = quantize_pass(mlp(), QConfig(weight="int4"))
    report = calibrate(prepared, [], progress=False)
    assert report.batches == 0 and report.observers == {}


def test_degenerate_range_gives_scale_1_zero_point_0():
    prepared = quantize_pass(mlp(), STATIC)
    report = calibrate(prepared, [np.zeros((3, 4), np.float32)], progress=False)
    x = report.observers["x_obs"]
    assert (x.scale, x.zero_point, x.degenerate) == (1.0, 0, True)
    assert "degenerate" in str(report)
    qdq = convert(prepared)
    assert qdq.node("x_q").meta["qparams"] == {"s": 1.0, "z": 0}


def test_batch_with_too_few_items_is_an_error():
    prepared = quantize_pass(mlp(), STATIC)
    with pytest.raises(ValueError, match="a batch holds 0 items, the graph takes 1 inputs"):
        calibrate(prepared, [()], progress=False)


def test_calibrating_twice_accumulates():
    prepared = quantize_pass(mlp(), STATIC)
    calibrate(prepared, batches((6, 4), count=2), progress=False)
    calibrate(prepared, batches((6, 4), count=3, seed=5), progress=False)
    assert prepared.observers["x_obs"].n_updates == 5


def test_stages_copy_the_observers():
    prepared = quantize_pass(mlp(), STATIC)
    calibrate(prepared, batches((6, 4), count=2), progress=False)
    qdq = convert(prepared)
    assert not qdq.find("observer") and qdq.observers == {}
    assert sorted(prepared.observers) == ["fc1_obs", "fc2_obs", "x_obs"]
    assert prepared.observers["x_obs"].n_updates == 2


# ----------------------------------------------------------------------------- issue 14

def test_nan_in_a_later_batch_leaves_the_observers_as_before():
    prepared = quantize_pass(mlp(), STATIC)
    calibrate(prepared, batches((6, 4), count=2), progress=False)
    before = {k: v.to_dict() for k, v in prepared.observers.items()}
    data = batches((6, 4), count=3, seed=7)
    data[2][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"batch 2: input %x holds NaN/Inf.*left as they were"):
        calibrate(prepared, data, progress=False)
    assert {k: v.to_dict() for k, v in prepared.observers.items()} == before


def test_overflowing_input_names_the_layer_and_the_input_size():
    prepared = quantize_pass(mlp(), STATIC)
    data = batches((6, 4), count=2)
    sign = np.sign(mlp().tensors["fc1.weight"][:, 3])  # sum |w| = 1.54 in that column
    data[1][:] = 3e38 * sign  # finite, but fc1 overflows float32 on it
    with pytest.raises(ValueError, match=r"batch 1: %fc1 produced NaN/Inf values \(observer "
                                         r"%fc1_obs.*largest \|input\| is 3e\+38"):
        calibrate(prepared, data, progress=False)
    assert all(obs.n_updates == 0 for obs in prepared.observers.values())


def test_constant_activations_warn_naming_the_observer():
    from needle_qc.quantize.calibration_checks import CalibrationWarning

    prepared = quantize_pass(mlp(), STATIC)
    with pytest.warns(CalibrationWarning, match=r"observer %x_obs \(values of %x\) saw only "
                                                r"the constant 0.*representative data"):
        calibrate(prepared, [np.zeros((3, 4), np.float32)] * 2, progress=False)


def test_a_graph_constant_such_as_a_zero_initial_state_does_not_warn():
    """An LSTM's zero initial state is constant by construction: one level holds it exactly."""
    import warnings

    import needle_qc as qc
    from needle_qc.quantize.calibration_checks import CalibrationWarning

    model = qc.zoo.load_pretrained("lstm_lm")
    graph = qc.trace(model, qc.zoo.example_input("lstm_lm", 4), batch_dims=1)
    prepared = quantize_pass(graph, STATIC)
    assert any(n.op == "full" for n in prepared.nodes)  # the zero state is observed
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        calibrate(prepared, [qc.zoo.example_input("lstm_lm", 4, seed=s) for s in (1, 2)],
                  progress=False)


def test_one_huge_outlier_warns_and_names_the_fix():
    from needle_qc.quantize.calibration_checks import CalibrationWarning

    prepared = quantize_pass(mlp(), STATIC)
    data = batches((64, 4), count=4)
    data[1][5, 2] = 1e30
    with pytest.warns(CalibrationWarning, match=r"observer %x_obs .*reaches .*x beyond the "
                                                r"typical 99.9th percentile.*percentile"):
        calibrate(prepared, data, progress=False)


def test_ordinary_data_gives_no_calibration_warning():
    import warnings

    from needle_qc.quantize.calibration_checks import CalibrationWarning

    prepared = quantize_pass(mlp(), STATIC)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        calibrate(prepared, batches((64, 4), count=4), progress=False)


def test_saturation_is_counted_only_in_debug_mode():
    from needle_qc.pipeline import compile

    prepared = quantize_pass(mlp(), STATIC)
    cm = compile(prepared, calibration=batches((64, 4), count=2))
    x = batches((8, 4), count=1, seed=3)[0]
    x[0, :] = 1e3  # far outside the calibrated input range
    assert cm.saturation is None
    plain = cm(x)
    cm.count_saturation()
    np.testing.assert_array_equal(cm(x), plain)  # same numbers, counted on the side
    counts = cm.saturation_report()
    assert counts["x_q"]["clipped"] >= 4 and counts["x_q"]["total"] == 32
    assert "saturated" in cm.explain().row("x_q")["why"]
    cm.count_saturation(False)
    with pytest.raises(ValueError, match="counting is off"):
        cm.saturation_report()
