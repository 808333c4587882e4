"""One-file, pickle-free artifacts for Graphs (any stage) and CompiledModels.

Layout (little-endian)::

    bytes 0..24   header: magic b"NQC1", version u32, JSON length u64, JSON crc32 u32, 0 u32
    24..24+L      JSON (utf-8): the graph's text form, extra node meta, observers, QConfig,
                  the tensor table [{name, dtype, shape, offset, nbytes, crc32}] and, for a
                  CompiledModel, target, stage and the kernel choices
    aligned blob  every tensor's raw bytes at a 64-byte aligned offset (relative to the blob)

``load`` checks everything (:mod:`needle_qc.runtime.validate`: the header's nesting and keys,
the tensor table, the graph's lint, every qparams and weight scale, the model record) and raises
one ``ValueError`` naming the file and what is wrong (bad magic, truncated at byte X, checksum
mismatch for tensor T, the node whose qparams are invalid); no other exception type escapes for
a bad file. A loaded CompiledModel is lowered again from its saved graph with the saved kernel
choices, so it computes the same bits. Measured times are never saved: the same model gives
the same bytes (autotune's times live in ``cm.tuning``).
"""

import json
import math
import os
import struct
import zlib

import numpy as np

from needle_qc.runtime import validate

MAGIC = b"NQC1"
VERSION = 1
HEADER = struct.Struct("<4sIQII")
ALIGN = 64
TENSOR_DTYPES = ("float32", "float16", "float64", "uint16", "int8", "uint8", "int16", "int32",
                 "int64", "bool")
_TYPED_META = ("shape", "dtype", "qparams")  # already in the text form


def save(obj, path):
    """Write a Graph or CompiledModel to ``path`` (one file; see the module docstring)."""
    from needle_qc.ir.graph import Graph
    from needle_qc.runtime.compiled import CompiledModel

    if isinstance(obj, CompiledModel):
        doc, tensors = _graph_doc(obj.graph)
        doc["kind"] = "compiled_model"
        doc["model"] = _model_doc(obj)
    elif isinstance(obj, Graph):
        doc, tensors = _graph_doc(obj)
        doc["kind"] = "graph"
    else:
        raise TypeError(f"save: expected a Graph or CompiledModel, got {type(obj).__name__}")
    _write(path, doc, tensors)


def load(path):
    """Read a file written by :func:`save`; returns a Graph or a CompiledModel.

    Raises
    ------
    ValueError
        For any damaged, truncated or self-contradicting file (the message names the file and
        the node or tensor); no other exception type escapes for a bad file.
    """
    path = os.fspath(path)
    doc, tensors = _read(path)
    try:
        validate.check_document(doc)
        graph = _graph_from(doc, tensors)
        validate.check_graph(graph)
        if doc["kind"] == "graph":
            return graph
        return _model_from(doc["model"], graph)
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise ValueError(f"{path}: malformed JSON header ({type(e).__name__}: {e})") from None
    except ValueError as e:  # the graph text or a config inside does not rebuild
        raise ValueError(f"{path}: {e}") from None
    except (ArithmeticError, MemoryError, RecursionError, RuntimeError) as e:  # last guard
        raise ValueError(f"{path}: the model does not rebuild ({type(e).__name__}: {e})") \
            from None


# ----------------------------------------------------------------------------- documents

def _graph_doc(graph):

    extra = {}
    for node in graph.nodes:
        rest = {k: v for k, v in node.meta.items() if k not in _TYPED_META}
        if rest:
            extra[node.name] = rest
    observers = {k: v.to_dict() for k, v in graph.observers.items()}
    qconfig = graph.qconfig
    doc = {"format": "needle_qc", "graph": {
        "text": str(graph), "meta": extra, "observers": observers,
        "qconfig": qconfig.to_dict() if hasattr(qconfig, "to_dict") else None}}
    return doc, dict(graph.tensors)


def _graph_from(doc, tensors):
    from needle_qc.ir.graph import Graph
    from needle_qc.quantize.qconfig import QConfig

    g = doc["graph"]
    graph = Graph.parse(g["text"], tensors)
    for name, meta in g["meta"].items():  # checked: never shape, dtype or qparams
        graph.node(name).meta.update(meta)
    graph.tensors = dict(tensors)
    if g["observers"]:
        validate.check_observers(graph, g["observers"])
        graph.observers = {k: _observer(k, v) for k, v in g["observers"].items()}
    if g["qconfig"] is not None:
        graph.qconfig = QConfig.from_dict(g["qconfig"])
    return graph


def _observer(name, data):
    from needle_qc.quantize.observers import observer_from_dict

    try:
        obs = observer_from_dict(data)
        if obs.n_updates < 0:
            raise ValueError(f"n_updates={obs.n_updates} is negative")
        if obs.n_updates:  # the state must give a usable range (convert() uses it)
            lo, hi = (np.asarray(v, np.float64) for v in obs.range())
            if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
                raise ValueError("its saved state gives no finite range")
        return obs
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise ValueError(f"observer %{name}: {e}") from None


def _model_doc(model):
    steps = {}  # the choices, never the times: the same model gives the same bytes
    for step in model.program.steps:
        if step.alternative is not None:
            steps[step.node] = {"choice": step.choice}
    return {"target": model.target, "stage": model.stage, "example_batch": model.example_batch,
            "config": model.config, "steps": steps}


def _model_from(doc, graph):
    from needle_qc.lower.driver import lower
    from needle_qc.pipeline import announce_float_layers, stage_of
    from needle_qc.runtime.compiled import CompiledModel

    if doc["stage"] != stage_of(graph):
        raise ValueError(f"stage {doc['stage']!r} contradicts the graph, which is at stage "
                         f"{stage_of(graph)!r}")
    steps = doc["steps"]
    program = lower(graph, doc["target"], choices={k: v["choice"] for k, v in steps.items()})
    validate.check_steps(program, steps)
    model = CompiledModel(program, doc["stage"], doc["example_batch"], doc["config"])
    announce_float_layers(model, stacklevel=4)
    return model


# ----------------------------------------------------------------------------- bytes

def _align(n):
    return -(-n // ALIGN) * ALIGN


def _write(path, doc, tensors):
    table, blobs, offset = [], [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array)
        if data.dtype.name not in TENSOR_DTYPES:
            raise ValueError(f"save: tensor {name!r} has dtype {data.dtype}, which the file "
                             f"format does not store (valid: {list(TENSOR_DTYPES)})")
        raw = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        table.append({"name": name, "dtype": data.dtype.name, "shape": list(data.shape),
                      "offset": offset, "nbytes": len(raw), "crc32": zlib.crc32(raw)})
        blobs.append((offset, raw))
        offset = _align(offset + len(raw))
    doc["tensors"] = table
    text = json.dumps(doc, sort_keys=True).encode("utf-8")
    blob_start = _align(HEADER.size + len(text))
    with open(path, "wb") as f:
        f.write(HEADER.pack(MAGIC, VERSION, len(text), zlib.crc32(text), 0))
        f.write(text)
        f.write(b"\0" * (blob_start - HEADER.size - len(text)))
        for off, raw in blobs:
            f.seek(blob_start + off)
            f.write(raw)


def _read(path):
    with open(path, "rb") as f:
        data = f.read()
    size = len(data)
    if size < HEADER.size:
        raise ValueError(f"{path}: truncated at byte {size}: the header needs {HEADER.size}")
    magic, version, json_len, json_crc, _ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"{path}: bad magic {magic!r}; expected {MAGIC!r} (not a needle_qc "
                         "file)")
    if version != VERSION:
        raise ValueError(f"{path}: format version {version} is not supported (this reader: "
                         f"{VERSION})")
    end = HEADER.size + json_len
    if end > size:
        raise ValueError(f"{path}: truncated at byte {size}: the JSON header ends at byte {end}")
    text = data[HEADER.size:end]
    if zlib.crc32(text) != json_crc:
        raise ValueError(f"{path}: checksum mismatch for the JSON header")
    try:
        doc = validate.parse_json(text)
        validate.check_table(doc.get("tensors") if isinstance(doc, dict) else None)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the JSON header does not parse: {e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    blob_start = _align(end)
    tensors = {t["name"]: _tensor(path, data, blob_start, t) for t in doc["tensors"]}
    return doc, tensors


def _tensor(path, data, blob_start, entry):
    name, dtype = entry["name"], entry["dtype"]
    if dtype not in TENSOR_DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
    shape = tuple(int(d) for d in entry["shape"])
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize  # Python ints: no wrap-around
    if nbytes != entry["nbytes"] or entry["offset"] < 0 or entry["offset"] % ALIGN:
        raise ValueError(f"{path}: tensor {name!r}: table entry is inconsistent (shape {shape} "
                         f"{dtype} needs {nbytes} bytes, entry says {entry['nbytes']} at "
                         f"offset {entry['offset']})")
    start = blob_start + entry["offset"]
    if start + nbytes > len(data):
        raise ValueError(f"{path}: truncated at byte {len(data)}: tensor {name!r} needs bytes "
                         f"{start}..{start + nbytes}")
    raw = data[start:start + nbytes]
    if zlib.crc32(raw) != entry["crc32"]:
        raise ValueError(f"{path}: checksum mismatch for tensor {name!r}")
    array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return array.astype(np.dtype(dtype), copy=True)
