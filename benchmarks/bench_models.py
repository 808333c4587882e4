"""Every zoo model, compiled fp32 / int8, against its peers as users run them (each library's
defaults): torch fp32, ONNX Runtime fp32 and the model ORT's own quantizer makes from the same
fp32 ONNX graph (quantize_static; quantize_dynamic too for the language models), OpenVINO fp32
and int8 (ORT's static QDQ model) when ``openvino`` is installed.

Contenders run in alternating blocks (``--block`` calls each), with a pause before each block
so another library's spinning threads have gone idle; best and median per call, in ms.
Batches: 1 and 64 (language models: 1 and 16 sequences of 20 tokens).

Run: ``.venv/bin/python benchmarks/bench_models.py [--models mlp,resnet9] [--status]``
(``--status`` writes the table into docs/status.md, section "Issue 13").
"""

import argparse
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("NEEDLE_NUM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402

import needle_qc as qc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402

MODELS = ("mlp", "small_cnn", "resnet9", "lstm_lm", "transformer_lm")
COLUMNS = ("our fp32", "our int8", "our int8 u7", "our int8 dyn", "our int8 dyn u7", "torch fp32",
           "ORT fp32",
           "ORT int8 static", "ORT int8 dynamic", "OV fp32", "OV int8")
OURS_INT8 = ("our int8", "our int8 u7", "our int8 dyn", "our int8 dyn u7")
"""our int8: static, per-channel weights, 8-bit activations; u7: the same with
``reduce_range=True`` (torch.ao's x86 default: 7-bit activations, so the u8 x s8 fast path is
proven exact on CPUs without VNNI); dyn: dynamic activations (language models, as ORT's
quantize_dynamic)."""
PAUSE_S = 0.02


def _array(out):
    while isinstance(out, (tuple, list)):
        out = out[0]
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out)


def contenders(name, batch):
    """(input, {column: fn}) for one zoo model at one batch size."""
    from needle_qc.tools.export_onnx import export_onnx

    entry = qc.zoo.get(name)
    model = qc.zoo.load_pretrained(name)
    graph = qc.trace(model, qc.zoo.example_input(name, 8), batch_dims=entry.input.batch_dim)
    x = np.asarray(qc.zoo.example_input(name, batch, seed=1), np.float32)
    calib = [np.asarray(b[0], np.float32) for b in qc.zoo.batches(name, "train", 32, limit=4)]
    base = graph.copy()
    qc.run_passes(base, qc.FLOAT_PIPELINE)
    f32 = qc.compile(base)
    fns = {"our fp32": lambda: f32(x)}
    static = {"weight": "int8", "activation": "static", "weight_granularity": "per_channel"}
    variants = {"our int8": static, "our int8 u7": dict(static, reduce_range=True)}
    if entry.task == "language_model":
        variants["our int8 dyn"] = {"weight": "int8", "activation": "dynamic"}
        variants["our int8 dyn u7"] = dict(variants["our int8 dyn"], reduce_range=True)
    for label, args in variants.items():
        prepared = qc.quantize_pass(graph, qc.QConfig(**args))
        if args["activation"] == "static":
            qc.calibrate(prepared, calib, progress=False)
        fns[label] = (lambda cm: lambda: cm(x))(qc.compile(prepared))
    onnx_model = export_onnx(base)
    raw = onnx_model.SerializeToString()
    feed = {onnx_model.graph.input[0].name: x}
    ort_f32 = peers.ort_session(raw)
    fns["ORT fp32"] = lambda: ort_f32.run(None, feed)
    static = peers.ort_quantized(onnx_model, "static", calib)
    ort_s8 = peers.ort_session(static)
    fns["ORT int8 static"] = lambda: ort_s8.run(None, feed)
    if entry.task == "language_model":
        ort_d8 = peers.ort_session(peers.ort_quantized(onnx_model, "dynamic"))
        fns["ORT int8 dynamic"] = lambda: ort_d8.run(None, feed)
    try:
        torch_fn = peers.torch_replay(onnx_model)
        fns["torch fp32"] = lambda: torch_fn(x)
    except ImportError:
        pass
    ov_f32, ov_i8 = peers.openvino_model(raw), peers.openvino_model(static)
    if ov_f32 is not None:
        fns["OV fp32"], fns["OV int8"] = (lambda: ov_f32(x)), (lambda: ov_i8(x))
    return x, fns


def time_blocks(fns, rounds, block):
    """{column: per-call seconds}: ``rounds`` rounds, each a block of ``block`` calls of every
    contender in turn, a pause before each block (other libraries' threads stop spinning)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for label, fn in fns.items():
            time.sleep(PAUSE_S)
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
    return times


def check_outputs(fns):
    """Max relative error of each contender's output against ORT fp32's."""
    want = _array(fns["ORT fp32"]())
    return {k: peers.max_rel_error(_array(fn()), want) for k, fn in fns.items()}


def fmt_cell(samples):
    if not samples:
        return "-"
    ms = np.asarray(samples) * 1e3
    return f"{ms.min():.3f} / {np.median(ms):.3f}"


def run(models, rounds, block, only=None, batches=None):
    rows, errors = [], []
    for name in models:
        lm = qc.zoo.get(name).task == "language_model"
        for batch in batches or (1, 16 if lm else 64):
            _, fns = contenders(name, batch)
            if only:  # a quick look at some columns (ORT fp32 stays: the outputs' reference)
                fns = {k: v for k, v in fns.items() if k in only or k == "ORT fp32"}
            errors.append((name, batch, check_outputs(fns)))
            times = time_blocks(fns, rounds, block)
            rows.append((name, batch, {k: fmt_cell(times.get(k)) for k in COLUMNS},
                         {k: min(v) for k, v in times.items()}))
            print(f"{name} batch {batch}: " + ", ".join(
                f"{k} {v}" for k, v in rows[-1][2].items()), flush=True)
    return rows, errors


def targets(name, batch, best):
    """One line: our fp32 and int8 against ORT fp32 and the fastest peer int8 (best times)."""
    ort = best["ORT fp32"]
    peer = min((best[k] for k in ("ORT int8 static", "ORT int8 dynamic", "OV int8")
                if k in best), default=None)
    ours = min((k for k in OURS_INT8 if k in best), key=best.get, default=None)
    if ours is None or peer is None or "our fp32" not in best:
        return f"- {name} batch {batch}: (not every column timed)"
    f32, i8 = best["our fp32"] / ort, best[ours] / ort
    return (f"- {name} batch {batch}: our fp32 {f32:.2f}x ORT fp32 "
            f"({'met' if f32 <= 1.25 else 'not met'}), {ours} {i8:.2f}x ORT fp32 "
            f"({'met' if i8 <= 1 / 1.5 else 'not met'}), {best[ours] / peer:.2f}x the "
            f"fastest peer int8 ({'met' if best[ours] <= peer else 'not met'})")


def table(rows, errors):
    head = "| model | batch | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(COLUMNS)]
    for name, batch, cells, _ in rows:
        lines.append(f"| {name} | {batch} | " + " | ".join(cells[k] for k in COLUMNS) + " |")
    lines += ["", "The issue's targets on best times (fp32 <= 1.25x ORT fp32; int8 <= ORT fp32 "
              "/ 1.5 and <= the fastest peer int8):", ""]
    lines += [targets(name, batch, best) for name, batch, _, best in rows]
    lines.append("")
    lines.append("Max relative error of each output vs ORT fp32 (max |diff| / max |ref|):")
    lines.append("")
    for name, batch, err in errors:
        lines.append(f"- {name} batch {batch}: " + ", ".join(
            f"{k} {v:.2g}" for k, v in err.items()))
    return "\n".join(lines)


def write_status(text, path=Path(__file__).resolve().parent.parent / "docs" / "status.md"):
    """Replace (or append) the table inside docs/status.md's "Issue 13" section, between
    markers, leaving the rest of the file alone."""
    begin, end = "<!-- bench_models begin -->", "<!-- bench_models end -->"
    block = f"{begin}\n{text}\n{end}"
    doc = path.read_text()
    if begin in doc:
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc,
                     flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n## Issue 13: speed against the best float32 runtime\n\n" \
            + block + "\n"
    path.write_text(doc)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=15)
    parser.add_argument("--only", default="",
                        help="comma-separated columns to time (a quick look; not with --status)")
    parser.add_argument("--batches", default="", help="e.g. 1,16 instead of 1 and 64 (16 LMs)")
    parser.add_argument("--status", action="store_true", help="write into docs/status.md")
    args = parser.parse_args()
    if args.status and (args.only or args.batches):
        parser.error("--status writes the whole table: drop --only / --batches")
    only = set(filter(None, args.only.split(",")))
    batches = [int(b) for b in args.batches.split(",") if b]
    rows, errors = run(args.models.split(","), args.rounds, args.block, only, batches)
    text = (f"best / median ms per call, {args.rounds} rounds x {args.block} calls, "
            f"`benchmarks/bench_models.py`\n\n" + table(rows, errors))
    print(text)
    if args.status:
        write_status(text)


if __name__ == "__main__":
    main()
