"""The ``needle-qc`` command (also ``python -m needle_qc``): demo, report, draw, quantize.

Bad use (unknown model, missing file, wrong data type, a checkpoint of another model) prints
one line, ``needle-qc: error: ...`` with the valid choices, and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser", "UsageError", "EXIT_USAGE"]

EXIT_USAGE = 2
STAGES = ("float", "observed", "qdq", "int8")
DATA_TYPES = ("int8", "uint8", "int4", "fp16", "bf16")
ACTIVATIONS = ("none", "static", "dynamic")
DRAW_SUFFIXES = (".svg", ".png", ".pdf", ".dot", ".gv")
DEMO_MODEL = "small_cnn"
CACHE_DIR = os.path.join("out", "checkpoints")
"""Where checkpoints trained by the CLI (when a committed one is missing) are cached."""


class UsageError(Exception):
    """The user asked for something that cannot be done; the message is the whole answer."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- parser

def _common(parser):
    parser.add_argument("--seed", type=int, default=0, help="seed for numpy (default 0)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the compiled model runs (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")


def _quant_options(parser, required):
    parser.add_argument("--data-type", choices=DATA_TYPES, required=required,
                        default=None if required else "int8",
                        help="weight data type" + ("" if required else " (default int8)"))
    parser.add_argument("--activation", choices=ACTIVATIONS, default=None,
                        help="activation quantization (default: static for integer weights, "
                        "none for fp16/bf16)")
    parser.add_argument("--calibration-batches", type=_positive, default=8, metavar="N",
                        help="training batches used to calibrate (default 8)")


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def build_parser():
    """The argparse parser of ``needle-qc`` (every subcommand has ``--help``)."""
    from needle_qc.tools.report import MODELS, SCHEMES

    parser = _Parser(prog="needle-qc", description="Post-training quantization for Needle "
                     "models: trace, quantize, compile, measure.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser("demo", help="quantize the small CNN every way, print one table",
                          description="Load (or train and cache) the small CNN, draw its float "
                          "and int8 graphs, compile every scheme and print one table.")
    demo.add_argument("--out", default=os.path.join("out", "demo"), help="output folder")
    _common(demo)

    rep = sub.add_parser("report", help="memory/deviation/speed report of the zoo: REPORT.md "
                         "+ PNG plots", description="Measure every scheme on every model and "
                         "write REPORT.md, report.json and PNG plots.")
    rep.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL",
                     help=f"zoo names or module:factory (default: {' '.join(MODELS)})")
    rep.add_argument("--schemes", nargs="+", default=list(SCHEMES), metavar="SCHEME",
                     help=f"subset of: {' '.join(SCHEMES)} (default all)")
    rep.add_argument("--quick", action="store_true", help="tiny configuration (seconds)")
    rep.add_argument("--out", default=os.path.join("out", "report"), help="output folder")
    _common(rep)

    draw = sub.add_parser("draw", help="draw a model's graph at one pipeline stage",
                          description="Trace MODEL, take it to --stage and draw it (graphviz).")
    draw.add_argument("model", metavar="MODEL", help="zoo name or module:factory")
    draw.add_argument("--stage", choices=STAGES, default="float", help="(default float)")
    draw.add_argument("--out", required=True, help="file to write: .svg, .png, .pdf or .dot")
    draw.add_argument("--checkpoint", help="weights (.npz) instead of the zoo's checkpoint")
    _quant_options(draw, required=False)
    _common(draw)

    quant = sub.add_parser("quantize", help="quantize a checkpoint into a compiled .nqc file",
                           description="Load CHECKPOINT into --model, quantize, calibrate on "
                           "its training data, compile and save one .nqc file.")
    quant.add_argument("checkpoint", metavar="CHECKPOINT.npz", help="state dict (.npz)")
    quant.add_argument("--model", required=True, help="zoo name or module:factory")
    quant.add_argument("--out", required=True, help="file to write (.nqc)")
    _quant_options(quant, required=True)
    _common(quant)
    return parser


# ----------------------------------------------------------------------------- checks

def _entry(name):
    """The zoo entry of ``name``; user models are imported from the current folder too."""
    from needle_qc.tools import zoo

    if ":" in name and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return zoo.get(name)
    except (KeyError, ValueError, TypeError) as err:
        raise UsageError(str(err).strip("'\"")) from None


def _device(name):
    import needle as ndl

    dev = getattr(ndl, name)()
    if not dev.enabled():
        raise UsageError(f"device {name!r} is not available on this machine; valid here: cpu")
    return dev


def _qconfig(args):
    from needle_qc.quantize import QConfig

    activation = args.activation
    if activation is None:  # fp16/bf16 are weight-only; integer weights default to static
        activation = "none" if args.data_type in ("fp16", "bf16") else "static"
    try:
        return QConfig(weight=args.data_type, activation=None if activation == "none"
                       else activation)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _load(args, name, checkpoint=None):
    """(model, note) with trained weights: ``checkpoint`` if given, else the zoo's."""
    from needle_qc.tools import report, zoo

    entry = _entry(name)
    device = _device(args.device)
    if checkpoint is None:
        return report.load_model(name, device, CACHE_DIR, args.seed, progress=not args.no_progress)
    if not os.path.isfile(checkpoint):
        raise UsageError(f"checkpoint not found: {checkpoint}")
    model = entry.build(device)
    try:
        zoo.load_checkpoint(model, checkpoint, name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return model.eval(), f"checkpoint {checkpoint}"


def _trace(name, model):
    """The float graph of ``model``; a user model that cannot be traced is a usage error."""
    from needle_qc.errors import TraceError
    from needle_qc.tools.report import trace_model

    try:
        return trace_model(name, model)
    except (TraceError, ValueError) as err:
        raise UsageError(f"cannot trace {name!r}: {str(err).strip().splitlines()[0]}") from None


def _calibration(name, count):
    from needle_qc.tools import zoo

    entry = zoo.get(name)
    size = 16 if entry.task == "language_model" else 64
    if entry.dataset is None:
        return [zoo.example_input(name, size, seed) for seed in range(count)]
    return [x for x, _ in zoo.batches(name, "train", size, limit=count)]


# ----------------------------------------------------------------------------- commands

def cmd_demo(args):
    """Small CNN: graphs drawn, every scheme compiled and measured, one table printed."""
    from needle_qc.tools import report

    device = _device(args.device)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    # trains and caches the model when its checkpoint is missing; run() then finds the cache
    model, how = report.load_model(DEMO_MODEL, device, CACHE_DIR, args.seed,
                                   epochs=report.Settings.of(False).train_epochs,
                                   progress=progress)
    graphs = _draw_demo_graphs(DEMO_MODEL, model, args.out)
    rep = report.run([DEMO_MODEL], quick=False, seed=args.seed, device=args.device,
                     progress=progress, cache_dir=CACHE_DIR, layers=False)
    written = rep.write(args.out)
    print(f"\n{DEMO_MODEL} ({how}), held-out MNIST, {rep.settings['machine']}\n")
    print(rep.table())
    print(f"\ngraphs: {', '.join(graphs)}\nreport: {written['markdown']}")
    return 0 if all(r.ok for r in rep) else 1


def _draw_demo_graphs(name, model, out):
    from needle_qc.quantize.api import prepare_stages
    from needle_qc.tools.report import SCHEMES, trace_model
    from needle_qc.tools.viz import draw

    graph = trace_model(name, model)
    stages = prepare_stages(graph, SCHEMES["int8-static"].qconfig(), _calibration(name, 2))
    float_path = draw(graph, os.path.join(out, "graph_float.svg"))
    int8_path = draw(stages["int8"], os.path.join(out, "graph_int8.svg"), compare=graph)
    return [str(float_path), str(int8_path)]


def cmd_report(args):
    from needle_qc.tools import report

    for name in args.models:
        _entry(name)
    unknown = [s for s in args.schemes if s not in report.SCHEMES]
    if unknown:
        raise UsageError(f"unknown scheme(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(report.SCHEMES)}")
    _device(args.device)
    rep = report.run(args.models, args.schemes, quick=args.quick, seed=args.seed,
                     device=args.device, progress=not args.no_progress,
                     cache_dir=CACHE_DIR)
    written = rep.write(args.out)
    print(rep.table())
    plots = sum(len(v) for v in written["plots"].values())
    print(f"\nwrote {written['markdown']}, {written['json']} and {plots} plots")
    failed = [r for r in rep if not r.ok]
    for r in failed:
        print(f"FAILED {r.model} {r.scheme}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_draw(args):
    from needle_qc.tools.viz import draw

    _entry(args.model)
    if os.path.splitext(args.out)[1].lower() not in DRAW_SUFFIXES:
        raise UsageError(f"--out {args.out}: unknown file type; use one of "
                         f"{', '.join(DRAW_SUFFIXES)}")
    cfg = _qconfig(args) if args.stage != "float" else None
    model, _ = _load(args, args.model, args.checkpoint)
    graph = _trace(args.model, model)
    if cfg is not None:
        from needle_qc.quantize.api import prepare_stages

        batches = _calibration(args.model, args.calibration_batches)
        graph = prepare_stages(graph, cfg, batches, progress=not args.no_progress)[args.stage]
    _mkdir_for(args.out)
    written = draw(graph, args.out)
    print(f"wrote {written} ({args.model}, stage {args.stage}, {len(graph.nodes)} nodes)")
    return 0


def _mkdir_for(path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


def cmd_quantize(args):
    from needle_qc.pipeline import compile as compile_graph
    from needle_qc.quantize.api import calibrate, quantize_pass

    _entry(args.model)
    cfg = _qconfig(args)
    model, how = _load(args, args.model, args.checkpoint)
    graph = _trace(args.model, model)
    prepared = quantize_pass(graph, cfg)
    calibrate(prepared, _calibration(args.model, args.calibration_batches),
              progress=not args.no_progress)
    cm = compile_graph(prepared, target=args.device)
    _mkdir_for(args.out)
    cm.save(args.out)
    print(f"{args.model} ({how}) quantized: weight {cfg.weight}, activation "
          f"{cfg.activation or 'none'}")
    print(cm.memory_report())
    print(f"wrote {args.out}")
    return 0


COMMANDS = {"demo": cmd_demo, "report": cmd_report, "draw": cmd_draw, "quantize": cmd_quantize}


def main(argv=None):
    """Run ``needle-qc`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as err:
        print(f"needle-qc {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
