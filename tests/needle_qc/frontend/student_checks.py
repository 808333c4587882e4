"""Run inside a student tree's process (see course_env.run_student): every step of the
matrix for one model, returned as a dict. Not collected by pytest (no ``test_`` prefix)."""
import inspect
import os
import tempfile

import numpy as np

import needle as ndl
import needle_qc as qc

MODELS = ("mlp", "cnn", "rnn", "lstm", "transformer")


def build(name, models):
    """(model, calibration batches, eval input, batch_dims) of a zoo name."""
    rng = np.random.default_rng(0)
    np.random.seed(0)
    dev = ndl.cpu()
    if name == "mlp":
        model = models.MLP(device=dev)
        data = [rng.standard_normal((8, 12)).astype(np.float32) for _ in range(5)]
        dims = 0
    elif name == "cnn":
        model = models.ResNetSmall(device=dev)
        data = [rng.standard_normal((4, 3, 8, 8)).astype(np.float32) for _ in range(5)]
        dims = 0
    else:
        kind = {"rnn": "rnn", "lstm": "lstm", "transformer": "transformer"}[name]
        emb, hidden = (8, 16) if kind == "transformer" else (6, 8)
        extra = {"seq_len": 10} if "seq_len" in inspect.signature(
            models.LanguageModel).parameters else {}  # the 2022 LanguageModel has none
        model = models.LanguageModel(emb, 11, hidden, 2, kind, device=dev, **extra)
        data = [rng.integers(0, 11, (5, 4)).astype(np.float32) for _ in range(5)]
        dims = 1
    model.eval()
    return model, data[:-1], data[-1], dims


def eager(model, x):
    out = model(ndl.Tensor(x, device=ndl.cpu(), dtype="float32", requires_grad=False))
    out = out[0] if isinstance(out, tuple) else out
    return np.array(out.numpy(), dtype=np.float32)


def flat(value):
    """Every output array, nested tuples flattened (an RNN's h, an LSTM's (h, c))."""
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in flat(v)]
    return [np.asarray(value.numpy() if hasattr(value, "numpy") else value, np.float32)]


def first(value):
    value = value[0] if isinstance(value, (tuple, list)) else value
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, np.float32)


def sqnr_db(ref, out):
    noise = float(np.sum((ref.astype(np.float64) - out) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64)
                                                                       ** 2)) / noise)


def rel_max(ref, out):
    return float(np.max(np.abs(ref - out)) / max(float(np.max(np.abs(ref))), 1e-30))


SCHEMES = {"int8-static": {"activation": "static"}, "int8-dynamic": {"activation": "dynamic"},
           "int8-weight-only": {"activation": None}}


def check(name, models):
    """Every step for one model; each value a number or an error string."""
    model, calib, x, dims = build(name, models)
    ref = eager(model, x)
    res = {}
    graph = qc.trace(model, calib[0], batch_dims=dims)
    res["trace"] = len(graph.nodes)
    outs = flat(model(ndl.Tensor(x, device=ndl.cpu(), dtype="float32", requires_grad=False)))
    res["interp_rel"] = max(rel_max(r, o) for r, o in zip(outs, flat(graph(x))))
    res["outputs"] = len(outs)
    cm = qc.compile(graph)
    res["fp32_rel"] = rel_max(ref, first(cm(x)))
    res["fp32_tensor_rel"] = rel_max(ref, first(cm(ndl.Tensor(x, device=ndl.cpu(),
                                                              dtype="float32"))))
    for scheme, kwargs in SCHEMES.items():
        try:
            prepared = qc.quantize_pass(graph, qc.QConfig(weight="int8", **kwargs))
            qm = qc.compile(prepared, calibration=calib)
            out = first(qm(x))
            res[scheme] = float(sqnr_db(ref, out))
            if scheme == "int8-static":
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "m.nqc")
                    qc.save(qm, path)
                    res["save_load_equal"] = bool(np.array_equal(first(qc.load(path)(x)), out))
        except Exception as e:  # noqa: BLE001 (the matrix records failures per cell)
            res[scheme] = f"{type(e).__name__}: {str(e)[:300]}"
    return res
