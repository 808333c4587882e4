"""Observers: formulas against NumPy, exact merges, range choices, drift, errors, JSON."""
import json

import numpy as np
import pytest

from needle_qc.quantize import (
    OBSERVER_KINDS,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PerChannelMinMaxObserver,
    choose_qparams,
    make_observer,
    observer_from_dict,
)


def _batches(seed=0, n=6, shape=(32, 16), scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * scale * (1 + i / 4)).astype(np.float32)
            for i in range(n)]


def test_minmax_matches_numpy_and_qparams():
    obs = MinMaxObserver(name="relu_1")
    data = _batches()
    for b in data:
        obs.update(b)
    allx = np.concatenate([b.ravel() for b in data])
    assert obs.range() == (float(allx.min()), float(allx.max()))
    assert obs.qparams("uint8") == choose_qparams(allx.min(), allx.max(), "uint8")
    assert len(obs.history) == len(data)


def test_moving_average_formula():
    obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    data = _batches(n=3)
    lo, hi = float(data[0].min()), float(data[0].max())
    for b in data[1:]:
        lo += 0.5 * (float(b.min()) - lo)
        hi += 0.5 * (float(b.max()) - hi)
    for b in data:
        obs.update(b)
    assert obs.range() == pytest.approx((lo, hi), rel=1e-12)
    with pytest.raises(ValueError, match="averaging_constant=0"):
        MovingAverageMinMaxObserver(averaging_constant=0)


def test_per_channel_matches_numpy():
    obs = PerChannelMinMaxObserver(axis=1)
    data = _batches()
    for b in data:
        obs.update(b)
    allx = np.concatenate(data)
    lo, hi = obs.range()
    np.testing.assert_array_equal(lo, allx.min(axis=0))
    np.testing.assert_array_equal(hi, allx.max(axis=0))
    s, z = obs.qparams("int8", symmetric=True)
    assert s.shape == (16,) and not z.any()
    with pytest.raises(ValueError, match="batch has 3 channels on axis 1, earlier batches had 16"):
        obs.update(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("make", [
    lambda: MinMaxObserver(), lambda: PerChannelMinMaxObserver(axis=0),
    lambda: HistogramObserver("percentile"), lambda: HistogramObserver("entropy"),
    lambda: HistogramObserver("mse"),
])
def test_merge_equals_single_pass(make):
    """Shards observed separately then merged give exactly the single-pass state."""
    data = _batches(seed=3, n=8, shape=(40, 5))
    data[5] = data[5] * 30  # a late range jump forces the histogram to re-grid
    single = make()
    for b in data:
        single.update(b)
    left, right = make(), make()
    for b in data[:3]:
        left.update(b)
    for b in data[3:]:
        right.update(b)
    left.merge(right)
    assert left.n_updates == single.n_updates
    assert json.dumps(left.to_dict()["state"]) == json.dumps(single.to_dict()["state"])
    np.testing.assert_array_equal(left.range(), single.range())


def test_histogram_counts_are_exact_and_order_independent():
    data = _batches(seed=4, n=5)
    a, b = HistogramObserver(), HistogramObserver()
    for x in data:
        a.update(x)
    for x in reversed(data):
        b.update(x)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.counts.sum() == sum(x.size for x in data)
    edges = a._edges()
    allx = np.concatenate([x.ravel() for x in data]).astype(np.float64)
    np.testing.assert_array_equal(a.counts, np.histogram(allx, bins=edges)[0])


def test_heavy_tailed_data_gets_tighter_ranges_than_minmax():
    rng = np.random.default_rng(5)
    x = rng.laplace(0, 1, 200000).astype(np.float32)
    mm = MinMaxObserver()
    mm.update(x)
    width = mm.range()[1] - mm.range()[0]
    for method in ("percentile", "entropy", "mse"):
        obs = HistogramObserver(method)
        obs.update(x)
        lo, hi = obs.range()
        assert hi - lo < 0.9 * width, method
        assert hi > 5.0 and lo < -5.0, method  # but the bulk of the data is kept


def test_histogram_relu_data_and_constant():
    rng = np.random.default_rng(6)
    obs = HistogramObserver("entropy")
    obs.update(np.maximum(rng.standard_normal(10000), 0).astype(np.float32))
    lo, hi = obs.range()
    assert lo == 0.0 and 0 < hi <= obs.max
    const = HistogramObserver("mse")
    const.update(np.full(10, 2.5, np.float32))
    assert const.range() == (2.5, 2.5)
    zeros = HistogramObserver("percentile")
    zeros.update(np.zeros(4, np.float32))
    zeros.update(np.array([1.0, -1.0], np.float32))
    assert zeros.counts.sum() == 6 and zeros.range()[0] < 0 < zeros.range()[1]


def test_range_drift():
    obs = MinMaxObserver()
    for i in range(10):
        obs.update(np.array([0.0, 1.0 if i < 9 else 2.0], np.float32))
    assert obs.range_drift(0.1) == pytest.approx(0.5)  # max moved 1 -> 2, final width 2
    assert obs.range_drift(0.5) == pytest.approx(0.5)
    steady = MinMaxObserver()
    for _ in range(10):
        steady.update(np.array([-1.0, 1.0], np.float32))
    assert steady.range_drift() == 0.0
    one = MinMaxObserver()
    one.update(np.ones(3, np.float32))
    assert np.isnan(one.range_drift())


def test_errors_name_the_node():
    obs = HistogramObserver(name="conv1.out")
    with pytest.raises(RuntimeError, match="observer for node 'conv1.out' saw no calibration"):
        obs.qparams()
    bad = np.array([1.0, np.nan, np.inf, 2.0], np.float32)
    with pytest.raises(ValueError, match="'conv1.out': 2 NaN/Inf values"):
        obs.update(bad)
    obs.update(np.zeros(0, np.float32))  # empty batch: ignored
    assert obs.n_updates == 0
    with pytest.raises(ValueError, match="cannot merge"):
        MinMaxObserver().merge(HistogramObserver())
    with pytest.raises(ValueError, match=r"method='kl'; valid: \['percentile', 'entropy', 'mse'\]"):
        HistogramObserver("kl")


def test_make_observer_and_json_round_trip():
    assert set(OBSERVER_KINDS) >= {"minmax", "moving_average", "percentile", "entropy", "mse"}
    with pytest.raises(ValueError, match=r"kind='kl'; valid: \['minmax'"):
        make_observer("kl")
    data = _batches(seed=7, n=3)
    for kind, kw in [("minmax", {}), ("moving_average", {"averaging_constant": 0.2}),
                     ("per_channel_minmax", {"axis": 1}), ("entropy", {}), ("mse", {})]:
        obs = make_observer(kind, name="n", **kw)
        for b in data:
            obs.update(b)
        back = observer_from_dict(json.loads(json.dumps(obs.to_dict())))
        assert type(back) is type(obs) and back.name == "n"
        np.testing.assert_array_equal(back.range(), obs.range())
        assert back.range_drift() == obs.range_drift()
    empty = observer_from_dict(json.loads(json.dumps(MinMaxObserver(name="e").to_dict())))
    with pytest.raises(RuntimeError, match="'e' saw no calibration data"):
        empty.range()
