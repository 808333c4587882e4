"""Record (or check) the outputs of every zoo model under every report scheme, bit for bit.

A refactor that must not change numbers runs ``record`` before and ``check`` after::

    python scripts/record_outputs.py record out/outputs_before.npz
    python scripts/record_outputs.py check out/outputs_before.npz

Only the public API is used, so the script runs on both sides of a change of layout. Compiles
with ``tune_kernels=False`` (no timing-based choice), on the CPU kernels and on the reference
target, plus the QDQ runner and the IR text of each stage.
"""
import sys

import numpy as np

import needle_qc as qc

SCHEMES = {
    "fp16": {"weight": "fp16"},
    "bf16": {"weight": "bf16"},
    "int8-w": {"weight": "int8"},
    "uint8-w": {"weight": "uint8", "weight_symmetric": False},
    "int4-g32": {"weight": "int4", "group_size": 32},
    "int8-dyn": {"weight": "int8", "activation": "dynamic"},
    "int8-static": {"weight": "int8", "activation": "static", "weight_granularity": "per_channel"},
    "uint8-affine": {"weight": "uint8", "activation": "static", "weight_symmetric": False,
                     "weight_granularity": "per_tensor"},
}
MODELS = ("mlp", "small_cnn", "resnet9", "lstm_lm", "transformer_lm")


def _arr(value):
    while isinstance(value, (tuple, list)):
        value = value[0]
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def outputs():
    """name -> array (outputs) or 0-d unicode array (IR text)."""
    out = {}
    for name in MODELS:
        model = qc.zoo.load_pretrained(name)
        entry = qc.zoo.get(name)
        bdim = entry.input.batch_dim if entry.input is not None else 0
        graph = qc.trace(model, qc.zoo.example_input(name, 8), batch_dims=bdim)
        x = qc.zoo.example_input(name, 5, seed=1)
        calib = [qc.zoo.example_input(name, 8, seed=s) for s in range(2, 5)]
        base = graph.copy()
        qc.run_passes(base, qc.FLOAT_PIPELINE)
        out[f"{name}/fp32/text"] = np.array(str(base))
        out[f"{name}/fp32/cpu"] = _arr(qc.compile(base, tune_kernels=False)(x))
        for scheme, args in SCHEMES.items():
            key = f"{name}/{scheme}"
            prepared = qc.quantize_pass(graph, qc.QConfig(**args))
            qc.calibrate(prepared, calib, progress=False)
            for stage in ("qdq", "int8"):
                try:
                    cm = qc.compile(prepared, stop_after=stage, tune_kernels=False)
                except ValueError as err:  # e.g. a weight-only graph has no qdq stage
                    out[f"{key}/{stage}/error"] = np.array(str(err))
                    continue
                out[f"{key}/{stage}/text"] = np.array(str(cm.graph))
                out[f"{key}/{stage}/cpu"] = _arr(cm(x))
            cm = qc.compile(prepared, target="reference", tune_kernels=False)
            out[f"{key}/reference"] = _arr(cm(x))
            print(key, flush=True)
    return out


def main(argv):
    if len(argv) != 3 or argv[1] not in ("record", "check"):
        print(__doc__)
        return 2
    got = outputs()
    if argv[1] == "record":
        np.savez(argv[2], **got)
        print(f"recorded {len(got)} entries in {argv[2]}")
        return 0
    want = dict(np.load(argv[2]))
    bad = sorted(set(want) ^ set(got))
    for k in sorted(set(want) & set(got)):
        a, b = want[k], got[k]
        same = np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        if a.dtype != b.dtype or a.shape != b.shape or not same:
            bad.append(k)
    print(f"checked {len(want)} entries: {len(bad)} differ")
    for k in bad[:40]:
        print("  differs:", k)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
