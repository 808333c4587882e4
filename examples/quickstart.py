"""The compiler path end to end on the pretrained SmallCNN: trace, quantize, calibrate, compile,
measure, attribute the error per node and draw it.

Run: ``python examples/quickstart.py [--model small_cnn] [--out quickstart_out]``.
"""
import argparse
from pathlib import Path

import numpy as np

import needle_qc as qc
from needle_qc.pipeline import compile as compile_graph
from needle_qc.quantize.api import calibrate, quantize_pass
from needle_qc.tools import zoo
from needle_qc.tools.compare import compare, deviation


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn", choices=["mlp", "small_cnn", "resnet9"])
    parser.add_argument("--out", default="quickstart_out", help="folder for the pictures")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = zoo.load_pretrained(args.model)                   # trained float32 weights
    graph = qc.trace(model, zoo.example_input(args.model, 8))  # Graph with a symbolic batch
    print(graph)

    cfg = qc.QConfig(weight="int8", activation="static")       # per-channel int8 weights
    prepared = quantize_pass(graph, cfg)                       # float passes + observers
    print(calibrate(prepared, zoo.batches(args.model, "train", 64, limit=8), progress=False))
    cm = compile_graph(prepared, target="cpu")                 # int8 kernels, deterministic
    print(cm.explain())
    print(cm.memory_report())

    heldout = zoo.batches(args.model, "heldout", 250)
    ref = zoo.evaluate(args.model, graph)
    got = zoo.evaluate(args.model, cm)
    d = deviation(ref["logits"], got["logits"])
    print(f"\nheld-out top-1: float32 {ref['accuracy']:.4f}, int8 {got['accuracy']:.4f}; "
          f"logits SQNR {d['sqnr_db']:.1f} dB, top-1 agreement {100 * d['top1_agreement']:.2f}%")

    report = compare(graph, cm, [x for x, _ in heldout[:2]])
    print(report)
    worst = report.worst(1)[0]
    print(f"worst local error: %{worst.name} ({worst.op}) {worst.local_sqnr:.1f} dB")
    for name, g, colors in (("float", graph, None), ("int8", cm.graph, report.node_colors())):
        path = qc.draw(g, out / f"{args.model}_{name}.svg", node_colors=colors)
        print(f"wrote {path}")
    return 0 if np.isfinite(d["sqnr_db"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
