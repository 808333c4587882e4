"""Issue 14: batch-dependent branches caught at a third batch, deep nesting, tracing while other
threads run Needle (or trace)."""

import sys
import threading

import numpy as np
import pytest

import needle as ndl
from needle import nn
from needle_qc.capture.guards import larger_batch
from needle_qc.capture.tracer import trace
from needle_qc.errors import TraceError


class BatchBranch(nn.Module):
    """Adds a relu only for batches above 5: traced at 4 (and 5) the branch is never taken."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.fc(x)
        return self.relu(y) if x.shape[0] > 5 else y


class Wrap(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def nested(depth):
    model = nn.Linear(4, 4)
    for _ in range(depth):  # built from the inside out: no recursion while building
        model = Wrap(model)
    return model


def _eager(model, x):
    device = model.parameters()[0].device
    return model(ndl.Tensor(x, device=device)).numpy()


def _x(batch=4, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 4)).astype(np.float32)


def test_batch_dependent_branch_is_caught_at_the_third_batch():
    np.random.seed(0)
    assert larger_batch(4) > 5
    with pytest.raises(TraceError, match=r"differs from the eager model at batch 11 \(traced "
                                         r"at batch 4 and 5\).*x.shape\[0\]"):
        trace(BatchBranch(), _x(4))


def test_branch_already_crossed_traces_fine():
    np.random.seed(0)
    model = BatchBranch()
    g = trace(model, _x(8))  # 8, 9 and 19 all take the branch
    x = _x(12, seed=1)
    np.testing.assert_array_equal(g(x).numpy(), _eager(model, x))


@pytest.mark.parametrize("depth", [250, 1000])
def test_deep_nesting_traces(depth):
    np.random.seed(0)
    model = nested(depth)
    g = trace(model, _x())
    x = _x(3, seed=2)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10 * depth + 1000)  # plain eager Python needs it too at this depth
    try:
        want = _eager(model, x)
    finally:
        sys.setrecursionlimit(old)
    np.testing.assert_array_equal(g(x).numpy(), want)


def test_nesting_beyond_the_limit_is_a_clear_trace_error():
    with pytest.raises(TraceError, match=r"nests modules \(or calls\) too deeply to trace"):
        trace(nested(6000), _x())


def test_other_threads_run_needle_during_a_trace():
    np.random.seed(0)
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x_other = ndl.Tensor(_x(16, seed=3), device=other.parameters()[0].device)
    want_other = other(x_other).numpy()
    stop, results, errors = threading.Event(), [], []

    def busy():
        try:
            while not stop.is_set():
                results.append(other(x_other).numpy())
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        graphs = [trace(model, _x()) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    assert not errors and results
    assert all(np.array_equal(r, want_other) for r in results)
    assert len({str(g) for g in graphs}) == 1
    x = _x(7, seed=4)
    np.testing.assert_array_equal(graphs[0](x).numpy(), _eager(model, x))


def test_two_threads_tracing_at_once_both_succeed():
    np.random.seed(0)
    models = [nn.Sequential(*[nn.Linear(4, 4) for _ in range(12)]) for _ in range(2)]
    texts, errors = [[], []], []

    def work(i):
        try:
            for _ in range(15):
                texts[i].append(str(trace(models[i], _x())))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(2):
        assert len(set(texts[i])) == 1 and texts[i][0] == str(trace(models[i], _x()))
