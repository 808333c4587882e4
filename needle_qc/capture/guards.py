"""Tracer guards: one trace at a time (other threads run Needle untouched), deep module nesting,
and a check of the traced graph against eager execution at a third, larger batch."""

import functools
import sys
import threading

import numpy as np

from needle_qc.errors import TraceError

TRACE_LOCK = threading.RLock()
"""The hooks patch Needle's classes for the whole process: traces take turns (a second
thread's trace waits for the first; nested traces in one thread are allowed)."""
RECURSION_LIMIT = 20000
"""Python frames allowed while tracing (each nested module costs about 5 with the hooks)."""


def guarded(trace):
    """``trace`` serialized by :data:`TRACE_LOCK`, with room for deep module nesting; a model
    nested deeper than that raises TraceError instead of a bare RecursionError."""

    @functools.wraps(trace)
    def run(model, *args, **kwargs):
        with TRACE_LOCK:
            old = sys.getrecursionlimit()
            sys.setrecursionlimit(max(old, RECURSION_LIMIT))
            try:
                return trace(model, *args, **kwargs)
            except RecursionError:
                raise TraceError(f"trace: {type(model).__name__} nests modules (or calls) too "
                                 f"deeply to trace (more than about {RECURSION_LIMIT // 5} "
                                 "levels); flatten the nesting, e.g. keep the layers in one "
                                 "nn.Sequential") from None
            finally:
                sys.setrecursionlimit(old)
    return run


def this_thread_only(rec):
    """Make the recorder ignore Needle calls from other threads: while a trace runs, their
    module calls and ops run as usual and are not recorded (the hooks are process-wide)."""
    owner = threading.get_ident()
    on_module_call = rec.on_module_call

    def module_call(original, module, args, kwargs):
        if threading.get_ident() != owner:
            return original(module, *args, **kwargs)
        return on_module_call(original, module, args, kwargs)

    rec.on_module_call = module_call
    for name in ("on_op", "on_value_read", "on_detach"):
        method = getattr(rec, name, None)
        if method is not None:
            setattr(rec, name, _owner_only(method, owner))
    return rec


def _owner_only(method, owner):
    def hook(*args, **kwargs):
        if threading.get_ident() == owner:
            return method(*args, **kwargs)
        return None
    return hook


def larger_batch(batch):
    """The third batch size checked after tracing at ``batch`` and ``batch + 1``."""
    return 2 * batch + 3


def check_larger_batch(model, graph, inputs, dims, batch, rebatch):
    """Run the model eagerly and the traced graph at :func:`larger_batch`; they must agree bit
    for bit. A Python branch on the batch size (``if x.shape[0] > 5``) that the two tracing
    batches did not cross shows up here instead of as silently wrong numbers later."""
    from needle_qc.capture.tracer import _training_flags

    size = larger_batch(batch)
    ndl = graph.framework if getattr(graph, "framework", None) is not None else _needle()
    wider = [x if d is None else rebatch(x, d, size, ndl) for x, d in zip(inputs, dims)]
    modes = _training_flags(model, ndl)
    model.eval()
    try:
        want = _flat(model(*wider))
        got = _flat(graph(*wider))
    except Exception as err:  # noqa: BLE001 - either side failing is the finding
        raise TraceError(f"trace: the model was traced at batch {batch} and {batch + 1}, but "
                         f"at batch {size} the {'graph' if 'want' in locals() else 'model'} "
                         f"fails ({type(err).__name__}: {err}); its Python code likely "
                         "depends on the batch size") from None
    finally:
        for module, flag in modes:
            module.training = flag
    same = len(want) == len(got) and all(
        a.shape == b.shape and np.array_equal(a, b, equal_nan=True) for a, b in zip(want, got))
    if not same:
        raise TraceError(f"trace: the traced graph differs from the eager model at batch "
                         f"{size} (traced at batch {batch} and {batch + 1}); the model's "
                         "Python code likely branches on the batch size (e.g. `if "
                         "x.shape[0] > k`). Trace at the batch size you will run, or make "
                         "the branch independent of the batch")


def _needle():
    import needle

    return needle


def _flat(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flat(v)]
    return [np.asarray(value.numpy())]
