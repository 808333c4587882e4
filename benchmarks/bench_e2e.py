"""End to end: compiled int8 vs compiled float32 vs ONNX Runtime static int8, same weights.

Models: SmallCNN (batch 64, 1x28x28) and MLP 784-512-512-10 (batch 256), traced from Needle,
batch norm folded, calibrated on seeded random data. The int8 model is exported to an ONNX QDQ
model with ``qc.export_onnx`` (same int8 weights, scales and zero points), which ONNX Runtime fuses
into QLinearConv/QLinearMatMul: a check that our export runs fast in ORT, NOT the peer
comparison (ORT runs the model its own ``quantize_static`` makes 1.3-2x faster than this one):
that is ``bench_models.py``, with every peer as users run it. Every runtime gets 2 threads, ORT
its defaults (thread spinning on). Best of blocks of calls, contenders in turn with a pause.

Run: ``.venv/bin/python benchmarks/bench_e2e.py [--reps 20]``
"""

import argparse
import os
import time

THREADS = 2
os.environ.setdefault("NEEDLE_NUM_THREADS", str(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402

import needle as ndl  # noqa: E402
import needle_qc as qc  # noqa: E402
from needle.models import MLP, SmallCNN  # noqa: E402
from needle_qc.passes import FLOAT_PIPELINE, run_passes  # noqa: E402
from needle_qc.pipeline import compile as qc_compile  # noqa: E402
from needle_qc.quantize.api import quantize_pass  # noqa: E402


def best_seconds(fns, reps, block=10):
    """Best wall time of each callable, measured in blocks of ``block`` calls per contender in
    turn, ``reps // block + 1`` rounds, with a 20 ms pause before each block (ORT's threads spin
    after a run, by default: the pause lets them park before the next contender is timed)."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps // block + 1):
        for label, fn in fns.items():
            time.sleep(0.02)
            for _ in range(block):
                start = time.perf_counter()
                fn()
                best[label] = min(best[label], time.perf_counter() - start)
    return best


def models():
    """(name, traced float graph, input shape at the benchmark batch)."""
    np.random.seed(0)
    dev = ndl.cpu() if ndl.cpu().enabled() else ndl.cpu_numpy()
    cnn, mlp = SmallCNN(device=dev), MLP(784, (512, 512), 10, device=dev)
    out = []
    for name, model, shape in (("SmallCNN", cnn, (64, 1, 28, 28)),
                               ("MLP 784-512-512-10", mlp, (256, 784))):
        x = ndl.Tensor(np.zeros((2,) + shape[1:], np.float32), device=dev)
        out.append((name, qc.trace(model, x), shape))
    return out


# ----------------------------------------------------------------------------- ONNX Runtime

def ort_session(model):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # thread spinning stays on (ORT's default, as users run it); best_seconds pauses between
    # contenders instead
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- main

def bench(name, graph, shape, reps, explain=False):
    rng = np.random.default_rng(0)
    cal = [rng.standard_normal((32,) + shape[1:]).astype(np.float32) for _ in range(8)]
    x = rng.standard_normal(shape).astype(np.float32)
    float_graph = graph.copy()
    run_passes(float_graph, FLOAT_PIPELINE)
    f32 = qc_compile(float_graph, example_batch=shape[0])
    prepared = quantize_pass(graph, qc.QConfig(weight="int8", activation="static"))
    stages = {st: qc_compile(prepared, stop_after=st, calibration=cal) for st in ("qdq",)}
    int8 = qc_compile(prepared, calibration=cal, example_batch=shape[0])
    forced = qc_compile(prepared, calibration=cal, example_batch=shape[0], force_int8=True)
    runs = {"float32 compiled": lambda: f32(x), "int8 compiled": lambda: int8(x),
            "int8 forced": lambda: forced(x)}
    qdq = stages["qdq"].graph
    err = {"int8 vs qdq": float(np.abs(forced(x) - stages["qdq"](x)).max())}
    try:
        sess = ort_session(qc.export_onnx(qdq))
        feed = {qdq.placeholders[0].name: x}
        runs["ORT on our QDQ export"] = lambda: sess.run(None, feed)
        err["ORT vs qdq"] = float(np.abs(sess.run(None, feed)[0] - stages["qdq"](x)).max())
    except ImportError as e:
        print(f"  (ONNX Runtime not available: {e})")
    times = best_seconds(runs, reps)
    print(f"\n{name}, batch {shape[0]}, {THREADS} threads")
    for label, seconds in times.items():
        print(f"  {label:<18} {seconds * 1e3:9.3f} ms   float32/this = "
              f"{times['float32 compiled'] / seconds:5.2f}x")
    if "ORT on our QDQ export" in times:
        ratio = times["ORT on our QDQ export"] / times["int8 compiled"]
        print(f"  ORT on our export / our int8 = {ratio:.2f}x")
    print("  max |difference| of outputs: " + ", ".join(f"{k} {v:.3g}" for k, v in err.items()))
    kept = [r["node"] for r in int8.explain().rows if r["status"].startswith("kept float")]
    print(f"  nodes kept float by the never-slower rule: {kept or 'none'}")
    print("  " + str(int8.memory_report()).replace("\n", "\n  "))
    if explain:
        print(str(int8.profile(x)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="print explain() tables")
    args = parser.parse_args()
    for name, graph, shape in models():
        bench(name, graph, shape, args.reps, args.explain)


if __name__ == "__main__":
    main()
