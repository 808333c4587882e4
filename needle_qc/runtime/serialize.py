"""One-file, pickle-free artifacts for Graphs (any stage) and CompiledModels.

Layout (little-endian)::

    bytes 0..24   header: magic b"NQC1", version u32, JSON length u64, JSON crc32 u32, 0 u32
    24..24+L      JSON (utf-8): the graph's text form, extra node meta, observers, QConfig,
                  the tensor table [{name, dtype, shape, offset, nbytes, crc32}] and, for a
                  CompiledModel, target, stage and the kernel choices
    aligned blob  every tensor's raw bytes at a 64-byte aligned offset (relative to the blob)

``load`` checks everything and raises ``ValueError`` naming the file and what is wrong (bad
magic, truncated at byte X, checksum mismatch for tensor T). A loaded CompiledModel is lowered
again from its saved graph with the saved kernel choices, so it computes the same bits.
"""

import json
import os
import struct
import zlib

import numpy as np

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
    """Read a file written by :func:`save`; returns a Graph or a CompiledModel."""
    doc, tensors = _read(os.fspath(path))
    try:
        graph = _graph_from(doc, tensors)
        if doc["kind"] == "graph":
            return graph
        if doc["kind"] == "compiled_model":
            return _model_from(doc["model"], graph)
        raise ValueError(f"unknown kind {doc['kind']!r}")
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: malformed JSON header ({type(e).__name__}: {e})") from None
    except ValueError as e:  # the graph text or a config inside does not rebuild
        raise ValueError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------- documents

def _graph_doc(graph):
    from needle_qc.quantize.annotate import observers_of

    extra = {}
    for node in graph.nodes:
        rest = {k: v for k, v in node.meta.items() if k not in _TYPED_META}
        if rest:
            extra[node.name] = rest
    observers = {k: v.to_dict() for k, v in observers_of(graph).items()}
    qconfig = getattr(graph, "qconfig", None)
    doc = {"format": "needle_qc", "graph": {
        "text": str(graph), "meta": extra, "observers": observers,
        "qconfig": qconfig.to_dict() if hasattr(qconfig, "to_dict") else None}}
    return doc, dict(graph.tensors)


def _graph_from(doc, tensors):
    from needle_qc.ir.graph import Graph
    from needle_qc.quantize.observers import observer_from_dict
    from needle_qc.quantize.qconfig import QConfig

    g = doc["graph"]
    graph = Graph.parse(g["text"], tensors)
    for name, meta in g["meta"].items():
        graph.node(name).meta.update(meta)
    graph.tensors = dict(tensors)
    if g["observers"]:
        graph.observers = {k: observer_from_dict(v) for k, v in g["observers"].items()}
    if g["qconfig"] is not None:
        graph.qconfig = QConfig.from_dict(g["qconfig"])
    return graph


def _model_doc(model):
    steps = {}
    for step in model.program.steps:
        if step.alternative is not None or step.times:
            steps[step.node] = {"choice": step.choice, "times": step.times, "note": step.note}
    return {"target": model.target, "stage": model.stage, "example_batch": model.example_batch,
            "config": model.config, "steps": steps}


def _model_from(doc, graph):
    from needle_qc.lower.driver import lower
    from needle_qc.runtime.compiled import CompiledModel

    steps = doc["steps"]
    program = lower(graph, doc["target"], choices={k: v["choice"] for k, v in steps.items()})
    for step in program.steps:
        saved = steps.get(step.node)
        if saved and step.op != "layout":
            step.times, step.note = dict(saved["times"]), saved["note"]
    return CompiledModel(program, doc["stage"], doc["example_batch"], doc["config"])


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
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the JSON header does not parse: {e}") from None
    blob_start = _align(end)
    try:
        tensors = {t["name"]: _tensor(path, data, blob_start, t) for t in doc["tensors"]}
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: malformed tensor table ({type(e).__name__}: {e})") from None
    return doc, tensors


def _tensor(path, data, blob_start, entry):
    name, dtype = entry["name"], entry["dtype"]
    if dtype not in TENSOR_DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
    shape = tuple(int(d) for d in entry["shape"])
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
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
