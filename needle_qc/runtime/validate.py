"""What ``load()`` checks before trusting a file: JSON shape, tensor table, graph, model record.

Every check raises ``ValueError`` with a message naming the node or tensor (``load`` prefixes
the file name). The rule: a file either loads into a model whose graph passes ``lint()`` and
whose quantization parameters are valid, or it is refused here, never at the first call.
"""

import math
import re

import numpy as np

from needle_qc.opset import traits

MAX_JSON_DEPTH = 64
"""Deepest nesting of ``[``/``{`` a header may have (save() writes at most about 8)."""
MAX_TENSOR_RANK = 8
MAX_NAME_CHARS = 4096
CHOICES = ("primary", "alternative")
META_KEYS = {"module_path": str, "source": str, "float_reason": str, "module_type": str,
             "qconfig": (dict, type(None)), "model": str}
"""Node meta a file may carry besides the typed shape/dtype/qparams of the text form."""
CONFIG_KEYS = {"force_int8": bool, "stop_after": (str, type(None)), "qconfig": dict,
               "calibration": str, "tuning": str, "autotune": bool}


def _scale_input(op):
    """Which input of a quantized op is its weight scale tensor (must be finite and > 0): the
    one after a quantized layer's weight, or a dequantize's second input; None otherwise."""
    if op == "dequantize":
        return 1
    t = traits(op)
    return t.weight_input + 1 if t.kind == "qlayer" and t.weight_input is not None else None
_FLOAT_WEIGHTS = ("float16", "bfloat16", "fp16", "bf16")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


# ----------------------------------------------------------------------------- raw JSON

def parse_json(text):
    """The header document: nesting bounded first (no RecursionError), duplicate keys refused."""
    import json

    outside = _STRINGS.sub(b"", text)
    steps = np.frombuffer(outside, np.uint8)
    delta = np.isin(steps, (ord("["), ord("{"))).astype(np.int32) - \
        np.isin(steps, (ord("]"), ord("}"))).astype(np.int32)
    depth = int(np.cumsum(delta).max(initial=0))
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"the JSON header nests {depth} levels deep (at most "
                         f"{MAX_JSON_DEPTH})")
    return json.loads(text.decode("utf-8"), object_pairs_hook=_unique_keys)


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the JSON header repeats the key {key!r}")
        out[key] = value
    return out


def check_document(doc):
    """The document's layout: the keys and value types ``save`` writes."""
    _need(doc, dict, "the JSON header")
    _need(doc.get("kind"), str, "kind")
    if doc["kind"] not in ("graph", "compiled_model"):
        raise ValueError(f"unknown kind {doc['kind']!r}; valid: graph, compiled_model")
    g = _need(doc.get("graph"), dict, "graph")
    _need(g.get("text"), str, "graph.text")
    for name, meta in _need(g.get("meta"), dict, "graph.meta").items():
        check_extra_meta(name, meta)
    _need(g.get("observers"), dict, "graph.observers")
    _need(g.get("qconfig"), (dict, type(None)), "graph.qconfig")
    if doc["kind"] == "compiled_model":
        check_model_doc(_need(doc.get("model"), dict, "model"))


def check_table(entries):
    """The tensor table: a list of entries with typed fields and no name twice."""
    _need(entries, list, "the tensor table")
    seen = set()
    for entry in entries:
        _need(entry, dict, "a tensor table entry")
        name = _need(entry.get("name"), str, "a tensor name")
        if name in seen:
            raise ValueError(f"tensor {name!r} appears twice in the tensor table")
        seen.add(name)
        _need(entry.get("dtype"), str, f"tensor {name!r} dtype")
        for key in ("offset", "nbytes", "crc32"):
            if not _is_int(entry.get(key)) or entry[key] < 0:
                raise ValueError(f"tensor {name!r}: {key}={entry.get(key)!r} is not an int >= 0")
        shape = _need(entry.get("shape"), list, f"tensor {name!r} shape")
        if len(shape) > MAX_TENSOR_RANK or not all(_is_int(d) and d >= 0 for d in shape):
            raise ValueError(f"tensor {name!r}: shape {shape!r} is not a list of <= "
                             f"{MAX_TENSOR_RANK} ints >= 0")


def check_extra_meta(name, meta):
    """Extra node meta may not override the typed meta (shape, dtype, qparams)."""
    _need(meta, dict, f"graph.meta[{name!r}]")
    for key, value in meta.items():
        if key not in META_KEYS:
            raise ValueError(f"%{name}: meta key {key!r} is not one a file may set (typed meta "
                             f"comes from the graph text; valid: {', '.join(META_KEYS)})")
        _need(value, META_KEYS[key], f"%{name}: meta {key}")


def check_model_doc(model):
    from needle_qc.lower.driver import TARGETS
    from needle_qc.pipeline import STAGES

    if model.get("target") not in TARGETS:
        raise ValueError(f"target {model.get('target')!r}; valid: {list(TARGETS)}")
    if model.get("stage") not in STAGES:
        raise ValueError(f"stage {model.get('stage')!r}; valid: {list(STAGES)}")
    batch = model.get("example_batch")
    if batch is not None and not (_is_int(batch) and 0 < batch <= 1 << 20):
        raise ValueError(f"example_batch={batch!r} is not an int in 1..2^20")
    for key, value in _need(model.get("config"), dict, "model.config").items():
        if key not in CONFIG_KEYS:
            raise ValueError(f"model.config key {key!r} is unknown; valid: "
                             f"{', '.join(CONFIG_KEYS)}")
        _need(value, CONFIG_KEYS[key], f"model.config {key}")
    for node, step in _need(model.get("steps"), dict, "model.steps").items():
        _need(step, dict, f"step %{node}")
        if step.get("choice") not in CHOICES:
            raise ValueError(f"step %{node}: choice {step.get('choice')!r}; valid: "
                             f"{list(CHOICES)}")
        extra = set(step) - {"choice", "note", "times"}  # note, times: files before issue 14
        if extra:
            raise ValueError(f"step %{node}: unknown keys {sorted(extra)}")


# ----------------------------------------------------------------------------- the graph

def check_graph(graph):
    """Lint, then what lint does not cover: qparams and weight scales."""
    from needle_qc.errors import IRError

    try:
        graph.lint()
    except IRError as e:
        raise ValueError(str(e)) from None
    for node in graph.nodes:
        if len(node.name) > MAX_NAME_CHARS:
            raise ValueError(f"a node name is longer than {MAX_NAME_CHARS} characters")
        qparams = node.meta.get("qparams")
        if qparams is not None:
            check_qparams(node, qparams)
        check_scale_input(graph, node)


def check_qparams(node, qparams):
    """``{s, z}`` of a quantized value: s finite and > 0 as float32, z an int in the type's
    range."""
    from needle_qc.quantize.qparams import qrange

    if not isinstance(qparams, dict) or set(qparams) not in ({"s", "z"},
                                                              {"s", "z", "qmin", "qmax"}):
        raise ValueError(f"%{node.name}: qparams {qparams!r} must be exactly {{s=..., z=...}} "
                         "(reduce_range: with qmin=..., qmax=...)")
    s, z = qparams["s"], qparams["z"]
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) \
            or not np.float32(s) > 0 or not math.isfinite(np.float32(s)):
        raise ValueError(f"%{node.name}: scale s={s!r} must be finite and > 0 (as float32)")
    dtype = node.meta.get("dtype")
    try:
        qmin, qmax = qrange(dtype)
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"%{node.name}: qparams on a {dtype} value (only integer values "
                         "carry {s, z})") from None
    if "qmin" in qparams:  # a narrower range inside the type (reduce_range)
        lo, hi = qparams["qmin"], qparams["qmax"]
        if not (_is_int(lo) and _is_int(hi) and qmin <= lo <= hi <= qmax):
            raise ValueError(f"%{node.name}: qmin/qmax {lo!r}, {hi!r} is not a range inside "
                             f"[{qmin}, {qmax}] ({dtype})")
        qmin, qmax = lo, hi
    if not _is_int(z) or not qmin <= z <= qmax:
        raise ValueError(f"%{node.name}: zero point z={z!r} is not an int in [{qmin}, {qmax}] "
                         f"({dtype})")


def check_scale_input(graph, node):
    """A stored weight scale must be finite and > 0 everywhere (the reference refuses others;
    a kernel would run with them)."""
    index = _scale_input(node.op)
    if index is None or len(node.inputs) <= index:
        return
    if node.attrs.get("weight_dtype") in _FLOAT_WEIGHTS:
        return  # fp16/bf16 weights have no scale input
    source = node.inputs[index]
    key = source.attrs.get("tensor") if source.op in ("param", "constant") else None
    if key is None or key not in graph.tensors:
        return
    scale = np.asarray(graph.tensors[key])
    if scale.dtype.kind != "f":
        return
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        raise ValueError(f"%{node.name}: weight scale tensor {key!r} has {int(bad.sum())} "
                         "values that are not finite and > 0")


def check_steps(program, steps):
    """Saved kernel choices name steps that have a float version, each once."""
    known = {s.node for s in program.steps if s.alternative is not None}
    for node in steps:
        if node not in known:
            raise ValueError(f"step %{node}: the file records a kernel choice for a node "
                             "that has none (not a quantized layer of this graph)")


def check_observers(graph, observers):
    """Observer records belong to observer nodes; their settings are bounded."""
    nodes = {n.name for n in graph.find("observer")}
    for name in observers:
        if name not in nodes:
            raise ValueError(f"observer record {name!r} has no observer node in the graph")


# ----------------------------------------------------------------------------- helpers

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _need(value, kind, what):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else \
            " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{what} is a {type(value).__name__}, expected {names}")
    return value
