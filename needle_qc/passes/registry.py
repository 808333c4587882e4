"""The pass registry and the pass manager ``run_passes``.

A pass is a plain function ``fn(graph) -> bool`` that **mutates the graph in place** and returns
True when it changed anything. Register one with ``@register_pass("kebab-name")`` and run a
pipeline with ``run_passes(graph, ["fold-batchnorm", "cse", "dce"])``. Snapshots (deep copies
after each pass) are what to keep when the graph before a pass is still needed.

Set ``NEEDLE_QC_DEBUG=1`` to print each pass with whether it changed the graph and its time,
``NEEDLE_QC_DEBUG=2`` to also print the IR after each pass.
"""

import importlib
import os
import re
import time
from dataclasses import dataclass, field

from needle_qc.errors import IRError

__all__ = ["FLOAT_PIPELINE", "PassError", "PassResult", "PassRun", "get_pass", "list_passes",
           "register_pass", "run_passes"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_PASSES = {}

BUILTIN_MODULES = (
    "needle_qc.passes.cse", "needle_qc.passes.dce", "needle_qc.passes.decompose",
    "needle_qc.passes.fold_batchnorm", "needle_qc.passes.fold_constants",
    "needle_qc.passes.fuse_activations", "needle_qc.passes.fuse_lstm",
    "needle_qc.passes.fuse_lstm_layer",
    "needle_qc.quantize.passes.convert", "needle_qc.quantize.passes.lstm",
    "needle_qc.quantize.passes.dynamic", "needle_qc.quantize.passes.fuse_qdq",
    "needle_qc.quantize.passes.insert_observers", "needle_qc.quantize.passes.weight_only",
    "needle_qc.quantize.passes.equalize", "needle_qc.quantize.passes.layer_stats",
    "needle_qc.quantize.passes.smoothquant",
)
"""Modules whose ``@register_pass`` functions are the built-in passes, imported on first use."""
_builtins_loaded = False


def _load_builtins():
    # Lazily, on the first lookup: the pass modules import the IR and the quantizer, which
    # must not be imported just to define the registry.
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


class PassError(IRError):
    """A pass is unknown, badly registered, returned a non-bool or left the graph invalid."""


def register_pass(name):
    """Decorator registering ``fn(graph) -> bool`` under the kebab-case ``name``.

    Raises
    ------
    PassError
        ``name`` is not kebab-case (``fold-batchnorm``), is already taken, or the decorated
        object is not callable.
    """
    _load_builtins()
    if not isinstance(name, str) or not _NAME.match(name):
        raise PassError(f"register_pass: bad pass name {name!r}; use kebab-case like "
                        "'fold-batchnorm' (lowercase letters, digits, single dashes)")
    if name in _PASSES:
        raise PassError(f"register_pass: a pass named {name!r} is already registered")

    def decorate(fn):
        if not callable(fn):
            raise PassError(f"register_pass({name!r}): {fn!r} is not callable")
        _PASSES[name] = fn
        return fn

    return decorate


def unregister_pass(name):
    """Remove a registered pass (for tests and notebooks that register throwaway passes)."""
    get_pass(name)
    del _PASSES[name]


def get_pass(name):
    """The pass registered as ``name``; PassError listing the valid names otherwise."""
    _load_builtins()
    try:
        return _PASSES[name]
    except (KeyError, TypeError):
        raise PassError(f"unknown pass {name!r}; registered passes: "
                        f"{', '.join(sorted(_PASSES))}") from None


def list_passes():
    """Names of every registered pass, sorted."""
    _load_builtins()
    return sorted(_PASSES)


@dataclass
class PassRun:
    """One pass of a pipeline: its name, whether it changed the graph, its wall time."""

    name: str
    changed: bool
    seconds: float
    snapshot: object = None


@dataclass
class PassResult:
    """What :func:`run_passes` did.

    Attributes
    ----------
    runs : list[PassRun]
        One entry per pass in pipeline order (a name may occur twice).
    changed : dict[str, bool]
        Pass name -> whether any of its runs changed the graph.
    snapshots : dict[str, Graph]
        Pass name -> deep copy of the graph after its (last) run; empty unless asked for.
    """

    runs: list = field(default_factory=list)

    @property
    def changed(self):
        result = {}
        for run in self.runs:
            result[run.name] = result.get(run.name, False) or run.changed
        return result

    @property
    def snapshots(self):
        return {run.name: run.snapshot for run in self.runs if run.snapshot is not None}

    @property
    def any_changed(self):
        return any(run.changed for run in self.runs)


def _debug_level():
    value = os.environ.get("NEEDLE_QC_DEBUG", "0").strip() or "0"
    return int(value) if value.isdigit() else 1


def run_passes(graph, names, verify=True, snapshots=False):
    """Run the passes ``names`` in order on ``graph`` (mutated in place).

    Parameters
    ----------
    graph : Graph
    names : sequence of str
        Registered pass names, e.g. :data:`FLOAT_PIPELINE`.
    verify : bool
        Lint the graph after every pass; a PassError names the pass that broke it.
    snapshots : bool
        Keep a deep copy of the graph after each pass in the result.

    Returns
    -------
    PassResult
    """
    if isinstance(names, str):
        raise PassError(f"run_passes: names must be a list of pass names, got the string "
                        f"{names!r}; write [{names!r}]")
    fns = [(name, get_pass(name)) for name in names]
    if verify:
        _verify(graph, None)
    result = PassResult()
    level = _debug_level()
    for name, fn in fns:
        start = time.perf_counter()
        changed = fn(graph)
        seconds = time.perf_counter() - start
        if not isinstance(changed, bool):
            raise PassError(f"pass {name!r} returned {changed!r}; a pass must return True "
                            "(changed) or False")
        if verify:
            _verify(graph, name)
        copy = graph.copy() if snapshots else None
        result.runs.append(PassRun(name, changed, seconds, copy))
        if level >= 1:
            print(f"[needle_qc] pass {name}: changed={changed} ({seconds * 1e3:.1f} ms)")
        if level >= 2:
            print(graph)
    return result


def _verify(graph, name):
    try:
        graph.lint()
    except IRError as e:
        who = "the graph given to run_passes is" if name is None else \
            f"pass {name!r} left an"
        raise PassError(f"{who} invalid graph: {e}") from None


FLOAT_PIPELINE = ["fold-batchnorm", "fuse-activations", "cse", "fuse-lstm-cell", "dce"]
"""The default float cleanup pipeline (run before quantization)."""
