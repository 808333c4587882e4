"""Calibration safety: transactional batch runs, NaN/Inf errors that name their source, and
warnings for ranges that will quantize badly (constant, or set by a few outliers)."""

import copy
import warnings

import numpy as np

OUTLIER_RATIO = 100.0
"""A range reaching this many times beyond the batches' typical 99.9th percentile of |x| is
reported as outlier-dominated (most values would share a few quantization levels)."""
HUGE_INPUT = 1e30
"""Inputs beyond this overflow float32 in the next layer; named when a NaN/Inf follows."""
UNDONE = "the observers are left as they were before this calibrate() call"


class CalibrationWarning(UserWarning):
    """Calibration produced a range that will quantize badly (constant, or set by outliers)."""


def run_batches(graph, batches, run_one, progress):
    """Run ``run_one(batch)`` (returns the batch's inputs) on every batch; returns the count.

    Transactional: on any error the observers are restored to their state before the call,
    and a NaN/Inf error is re-raised naming the batch and the input or layer it came from.
    """
    from tqdm import tqdm

    before = copy.deepcopy(graph.observers)
    count = 0
    try:
        for batch in tqdm(batches, desc="calibrate", unit="batch", disable=not progress):
            try:
                run_one(batch)
            except ValueError as err:
                raise explained(graph, err, count, batch) from None
            count += 1
    except BaseException:
        graph.observers = before  # nothing of this call is kept
        raise
    return count


def explained(graph, err, index, batch):
    """The NaN/Inf error of batch ``index`` naming where the bad values came from."""
    from needle_qc.quantize.observers import NonFiniteBatchError

    if not isinstance(err, NonFiniteBatchError) or err.observer not in graph._by_name:
        return err
    source = graph.node(err.observer).inputs[0]
    if source.op == "placeholder":
        return ValueError(f"calibrate: batch {index}: input %{source.name} holds NaN/Inf "
                          f"values (observer %{err.observer}: {err}); {UNDONE}")
    largest = _largest_abs(batch)
    cause = f"; the batch's largest |input| is {largest:.3g}: float32 overflowed in " \
        f"%{source.name}, scale or clip the calibration data" if largest > HUGE_INPUT else ""
    return ValueError(f"calibrate: batch {index}: %{source.name} produced NaN/Inf values "
                      f"(observer %{err.observer}: {err}){cause}; {UNDONE}")


def _largest_abs(batch):
    items = batch if isinstance(batch, (tuple, list)) else (batch,)
    out = 0.0
    for item in items:
        array = np.asarray(item.numpy() if hasattr(item, "numpy") else item)
        if array.dtype.kind in "fiu" and array.size:
            out = max(out, float(np.max(np.abs(array))))
    return out


def _depends_on_inputs(node):
    """True if ``node``'s value is computed from a graph input (not from constants alone)."""
    seen, todo = set(), [node]
    while todo:
        current = todo.pop()
        if current.op == "placeholder":
            return True
        if current.name not in seen:
            seen.add(current.name)
            todo.extend(current.inputs)
    return False


def _is_zero_fill(node):
    while node.op == "observer":  # observers (of any kind) are the identity
        node = node.inputs[0]
    return node.op == "full" and node.attrs.get("value") == 0


def _constant_by_construction(node):
    """The graph fixes ``node``'s value whatever the inputs: it depends on none, or it is a
    product with a zero fill (an LSTM's ``f * c0`` on the first step)."""
    if not _depends_on_inputs(node):
        return True
    return node.op == "mul" and any(_is_zero_fill(i) for i in node.inputs)


def warn_bad_ranges(graph, report):
    """A :class:`CalibrationWarning` per observer whose range is constant or outlier-set."""
    for name, summary in report.observers.items():
        source = graph.node(name).inputs[0]
        layer = source.name
        lo, hi = summary.range
        if lo == hi:
            # a value constant by construction (a zero initial state, or a product with it)
            # is held exactly by one level: only data-dependent constants are worth a warning
            if not _constant_by_construction(source):
                warnings.warn(f"calibrate: observer %{name} (values of %{layer}) saw only the "
                              f"constant {lo:g} over {summary.n_updates} batch(es): every value "
                              "quantizes to one level. Calibrate on representative data, or "
                              f"keep the layer of %{layer} float (QConfig module_paths="
                              "{path: None}).", CalibrationWarning, stacklevel=3)
            continue
        ratio = graph.observers[name].outlier_ratio()
        if ratio > OUTLIER_RATIO:
            warnings.warn(f"calibrate: observer %{name} (values of %{layer}): the range "
                          f"[{lo:.3g}, {hi:.3g}] reaches {ratio:.3g}x beyond the typical "
                          "99.9th percentile of |x|: a few outliers set the scale and most "
                          "values will share a few levels. Remove the outliers from the "
                          "calibration data or use observer='percentile' (or 'mse').",
                          CalibrationWarning, stacklevel=3)
