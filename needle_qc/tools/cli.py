"""The ``needle-qc`` command (also ``python -m needle_qc``): demo, report, draw, quantize.

Bad use (unknown model, missing file, wrong data type, a checkpoint of another model, a
checkpoint with NaN/Inf weights, a ``module:factory`` that raises, an output path that cannot
be written) prints one line, ``needle-qc: error: ...`` with the valid choices, and exits with
status 2. Output paths are checked before any work starts; missing folders are never created
silently (the folder of ``--out`` must exist). Files are written to a temporary name in the
target folder and renamed into place, so a failed write leaves no partial file.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

__all__ = ["main", "build_parser", "UsageError", "EXIT_USAGE"]

EXIT_USAGE = 2
STAGES = ("float", "observed", "qdq", "int8")
DATA_TYPES = ("int8", "uint8", "int4", "fp16", "bf16")
ACTIVATIONS = ("none", "static", "dynamic")
DRAW_SUFFIXES = (".svg", ".png", ".pdf", ".dot", ".gv")
WEIGHT_ONLY_TYPES = ("int4", "fp16", "bf16")
"""Data types whose default is weight-only (fp16/bf16 refuse static activations; int4 with
static activations is W4A8, per channel)."""
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
    parser.add_argument("--data-type", choices=DATA_TYPES, required=required, type=_spelling,
                        default=None if required else "int8",
                        help="weight data type" + ("" if required else " (default int8)"))
    parser.add_argument("--activation", choices=ACTIVATIONS, default=None,
                        help="activation quantization (default: static for int8/uint8 "
                        "weights, none for int4/fp16/bf16)")
    parser.add_argument("--calibration-batches", type=_positive, default=8, metavar="N",
                        help="training batches used to calibrate (default 8)")


def _spelling(text):
    """``float16`` / ``bfloat16`` / ``half`` are read as ``fp16`` / ``bf16`` (QConfig's names)."""
    from needle_qc.quantize.qconfig_checks import canonical_weight

    return canonical_weight(text)


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
    parser.add_argument("--version", action="version", version=f"needle-qc {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser("demo", help="quantize the small CNN every way, print one table",
                          description="Load (or train and cache) the small CNN, draw its float "
                          "and int8 graphs, compile every scheme and print one table.")
    demo.add_argument("--out", default=DEFAULT_OUT["demo"], help="output folder")
    _common(demo)

    rep = sub.add_parser("report", help="memory/deviation/speed report of the zoo: REPORT.md "
                         "+ PNG plots", description="Measure every scheme on every model and "
                         "write REPORT.md, report.json and PNG plots.")
    rep.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL",
                     help=f"zoo names or module:factory (default: {' '.join(MODELS)})")
    rep.add_argument("--schemes", nargs="+", default=list(SCHEMES), metavar="SCHEME",
                     help=f"subset of: {' '.join(SCHEMES)} (default all)")
    rep.add_argument("--quick", action="store_true", help="tiny configuration (seconds)")
    rep.add_argument("--out", default=DEFAULT_OUT["report"], help="output folder")
    _common(rep)

    draw = sub.add_parser("draw", help="draw a model's graph at one pipeline stage",
                          description="Trace MODEL, take it to --stage and draw it (graphviz).")
    draw.add_argument("model", metavar="MODEL", help="zoo name or module:factory")
    draw.add_argument("--stage", choices=STAGES, default="float", help="(default float)")
    draw.add_argument("--out", required=True, help="file to write: .svg, .png, .pdf or .dot")
    draw.add_argument("--checkpoint", help="weights (.npz) instead of the zoo's checkpoint")
    draw.add_argument("--compare", choices=STAGES, metavar="STAGE",
                      help="mark what changed since STAGE: --stage int8 --compare float")
    draw.add_argument("--params", action="store_true",
                      help="draw weights, scales and biases as boxes (default: listed inside "
                      "the box of the op that uses them)")
    draw.add_argument("--max-nodes", type=_positive, default=None,
                      help="box cap above which repeated blocks collapse and then the middle "
                      "is cut (default 150); graphviz takes minutes on ~500 boxes")
    _quant_options(draw, required=False)
    _common(draw)

    quant = sub.add_parser("quantize", help="quantize a checkpoint into a compiled .nqc file",
                           description="Load CHECKPOINT into --model, quantize, calibrate on "
                           "its training data, compile and save one .nqc file.")
    quant.add_argument("checkpoint", metavar="CHECKPOINT.npz", help="state dict (.npz)")
    quant.add_argument("--model", required=True, help="zoo name or module:factory")
    quant.add_argument("--out", required=True, help="file to write (.nqc)")
    quant.add_argument("--autotune", action="store_true",
                       help="time each quantized layer against its float version and keep the "
                       "faster (depends on the machine's load; default off: same file every run)")
    _quant_options(quant, required=True)
    _common(quant)
    _export_parser(sub)
    _plan_parser(sub)
    inspect = sub.add_parser("inspect", help="what a saved .nqc file holds",
                             description="Load FILE (a graph or compiled model saved by "
                             "needle-qc quantize or qc.save) and print its stage, ops, weight "
                             "bytes and qparams, then one row per node (--nodes).")
    inspect.add_argument("file", metavar="FILE.nqc", help="file written by qc.save")
    inspect.add_argument("--nodes", action="store_true", help="also print the node table")
    return parser


def _version():
    from needle_qc._version import __version__

    return __version__


def _plan_parser(sub):
    plan = sub.add_parser("plan", help="mixed precision: each layer's weight scheme under a "
                          "memory budget, with the Pareto table",
                          description="Scan every layer's sensitivity (one layer quantized, "
                          "output KL divergence on calibration batches), print the Pareto "
                          "front of weight bytes vs predicted cost, each point's measured SQNR "
                          "and latency, and the point chosen within BUDGET (issue 16; "
                          "needle_qc.plan).")
    plan.add_argument("model", metavar="MODEL", help="zoo name or module:factory")
    plan.add_argument("--budget", default="int4-g32",
                      help="weight bytes (int), bits per weight (e.g. 4.5) or a scheme whose "
                      "uniform bytes are the budget: fp16, int8-ch, int4-g32, int4-ch "
                      "(default int4-g32)")
    plan.add_argument("--calibration-batches", type=_positive, default=4,
                      help="training batches scanned (default 4)")
    plan.add_argument("--checkpoint", help="weights (.npz) instead of the zoo's checkpoint")
    plan.add_argument("--out", help="write the chosen QConfig as JSON here")
    plan.add_argument("--plot", metavar="FILE.png",
                      help="draw the front (weight KiB vs measured SQNR, uniform schemes and "
                      "the chosen point marked) into this PNG")
    _common(plan)


def _budget(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cmd_plan(args):
    import json

    from needle_qc.quantize.planner import plan

    _entry(args.model)
    for path in (args.out, args.plot):
        if path:
            _check_out_file(path)
    if args.plot and os.path.splitext(args.plot)[1].lower() != ".png":
        raise UsageError(f"--plot {args.plot}: the plot is a PNG; name it FILE.png")
    model, how = _load(args, args.model, args.checkpoint)
    graph = _trace(args.model, model)
    with _as_usage_error(args.model):
        result = plan(graph, _calibration(args.model, args.calibration_batches),
                      budget=_budget(args.budget))
    print(f"{args.model} ({how}): {result.bytes} weight bytes, output SQNR "
          f"{result.sqnr_db:.2f} dB on the scanned batches, {result.latency_ms:.3f} ms a batch")
    print(result)
    if args.out:
        text = json.dumps(result.qconfig.to_dict(), indent=1, sort_keys=True)

        def write(path):
            with open(path, "w") as f:
                f.write(text + "\n")

        _write_via_temp(args.out, write)
        print(f"wrote {args.out}")
    if args.plot:
        from needle_qc.tools.plots import plan_front

        plan_front(result.table, f"{args.model}: mixed precision, budget {args.budget}",
                   args.plot)
        print(f"wrote {args.plot}")
    return 0


def _export_parser(sub):
    export = sub.add_parser("export", help="write a model as ONNX (QDQ for static schemes)",
                            description="Trace MODEL, quantize and calibrate it (or keep it "
                            "float with --float) and write an ONNX model (opset 21) that "
                            "ONNX Runtime, TensorRT or OpenVINO load.")
    export.add_argument("model", metavar="MODEL", help="zoo name or module:factory")
    export.add_argument("--out", required=True, help="file to write (.onnx)")
    export.add_argument("--float", action="store_true", help="export the float32 model")
    export.add_argument("--uint8-weights", action="store_true",
                        help="store int8 weights as uint8 + 128 (zero point 128): exact in "
                        "ONNX Runtime's fused kernels on CPUs without VNNI")
    export.add_argument("--checkpoint", help="weights (.npz) instead of the zoo's checkpoint")
    _quant_options(export, required=False)
    _common(export)


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
    if activation is None:  # int4/fp16/bf16 are weight-only; int8/uint8 default to static
        activation = "none" if args.data_type in WEIGHT_ONLY_TYPES else "static"
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
    if os.path.isdir(checkpoint):
        raise UsageError(f"checkpoint {checkpoint} is a directory; expected a .npz file")
    if not os.path.isfile(checkpoint):
        raise UsageError(f"checkpoint not found: {checkpoint}")
    model = _build(entry, name, device)
    try:
        zoo.load_checkpoint(model, checkpoint, name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - numpy/zipfile raise many kinds for a bad file
        raise UsageError(f"checkpoint {checkpoint} is not a readable .npz state dict "
                         f"({type(err).__name__}: {_first_line(err)})") from None
    _require_finite(model, checkpoint)
    return model.eval(), f"checkpoint {checkpoint}"


def _build(entry, name, device):
    """``entry.build``; a user factory that raises is the user's error, said in one line."""
    try:
        return entry.build(device)
    except Exception as err:  # noqa: BLE001 - any exception of user code
        raise UsageError(f"model {name!r}: its factory raised {type(err).__name__}: "
                         f"{_first_line(err)}") from None


def _require_finite(model, checkpoint):
    import numpy as np

    for key, value in model.state_dict().items():
        array = value.numpy() if hasattr(value, "numpy") else value
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise UsageError(f"checkpoint {checkpoint}: {key} holds {bad} NaN/Inf values; "
                             "quantizing it would give NaN scales (retrain or fix the weights)")


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"


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
    _check_out_folder(args.out)
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
    _check_out_folder(args.out)
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
    import warnings

    from needle_qc.tools.viz import MAX_NODES as MAX_DRAWN
    from needle_qc.tools.viz import draw

    _entry(args.model)
    if os.path.splitext(args.out)[1].lower() not in DRAW_SUFFIXES:
        raise UsageError(f"--out {args.out}: unknown file type; use one of "
                         f"{', '.join(DRAW_SUFFIXES)}")
    _check_out_file(args.out)
    quantized = {args.stage, args.compare} - {"float", None}
    cfg = _qconfig(args) if quantized else None
    model, _ = _load(args, args.model, args.checkpoint)
    stages = {"float": _trace(args.model, model)}
    if cfg is not None:
        from needle_qc.quantize.api import prepare_stages

        batches = _calibration(args.model, args.calibration_batches)
        with _as_usage_error(args.model):
            stages = prepare_stages(stages["float"], cfg, batches,
                                    progress=not args.no_progress)
    graph = stages[args.stage]
    title = f"{args.model}, stage {args.stage}" + (f" vs {args.compare}" if args.compare else "")
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")  # the size cap's note: one clean line, not a warning
        written = draw(graph, args.out, compare=stages.get(args.compare), params=args.params,
                       max_nodes=args.max_nodes or MAX_DRAWN, title=title)
    for note in notes:
        print(f"note: {note.message}", file=sys.stderr)
    print(f"wrote {written} ({args.model}, stage {args.stage}, {len(graph.nodes)} nodes)")
    return 0


def _check_out_file(path):
    """Refuse, before any work, an ``--out`` file that cannot be written: a directory, a
    device or other non-regular file, a folder that does not exist (never created silently),
    a folder without write permission."""
    if os.path.isdir(path):
        raise UsageError(f"--out {path} is a directory; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"--out {path} is not a regular file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--out {path}: folder {folder} does not exist (create it first)")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".needle-qc-"):
            pass
    except OSError as err:
        raise UsageError(f"--out {path}: cannot write in {folder} ({err.strerror})") from None


DEFAULT_OUT = {"demo": os.path.join("out", "demo"), "report": os.path.join("out", "report")}
"""The verbs' own output folders: created with their parents (a user's --out never is)."""


def _check_out_folder(path):
    """An output folder may be created, but only inside a folder that exists (the verbs' own
    defaults are created whole)."""
    if path in DEFAULT_OUT.values() and not os.path.exists(path):
        os.makedirs(path, exist_ok=True)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path} exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--out {path}: folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {path}: folder {parent} is not writable")


def _write_via_temp(path, write):
    """``write(tmp)`` to a temporary file beside ``path``, then rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".needle-qc-", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise UsageError(f"--out {path}: writing failed ({err.strerror or err})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cmd_quantize(args):
    from needle_qc.pipeline import compile as compile_graph
    from needle_qc.quantize.api import calibrate, quantize_pass

    _entry(args.model)
    _check_out_file(args.out)
    cfg = _qconfig(args)
    model, how = _load(args, args.model, args.checkpoint)
    graph = _trace(args.model, model)
    with _as_usage_error(args.model):
        prepared = quantize_pass(graph, cfg)
        calibrate(prepared, _calibration(args.model, args.calibration_batches),
                  progress=not args.no_progress)
        cm = compile_graph(prepared, target=args.device, autotune=args.autotune)
    _write_via_temp(args.out, cm.save)
    print(f"{args.model} ({how}) quantized: weight {cfg.weight}, activation "
          f"{cfg.activation or 'none'}")
    print(cm.memory_report())  # lists every layer kept float ("kept float: %node (why)")
    kept = cm.float_layers()
    if kept:
        print(f"note: {len(kept)} layer(s) run in float: {', '.join(kept)}")
    print(f"wrote {args.out}")
    return 0


@contextlib.contextmanager
def _as_usage_error(model):
    """ValueError from the library (bad settings for this model, NaN data, a layer that
    cannot be compiled) -> one line naming the model."""
    try:
        yield
    except ValueError as err:
        raise UsageError(f"{model}: {_first_line(err)}") from None


def cmd_export(args):
    from needle_qc.passes import FLOAT_PIPELINE, run_passes
    from needle_qc.quantize.api import calibrate, quantize_pass
    from needle_qc.tools.export_onnx import export_onnx

    _entry(args.model)
    _check_out_file(args.out)
    cfg = None if args.float else _qconfig(args)
    model, how = _load(args, args.model, args.checkpoint)
    graph = _trace(args.model, model)
    with _as_usage_error(args.model):
        if cfg is None:
            run_passes(graph, FLOAT_PIPELINE)
        else:
            graph = quantize_pass(graph, cfg)
            calibrate(graph, _calibration(args.model, args.calibration_batches),
                      progress=not args.no_progress)
        try:
            onnx_model = export_onnx(graph, uint8_weights=args.uint8_weights)
        except ImportError as err:  # the onnx package is an optional dependency
            raise UsageError(str(err)) from None
    _write_via_temp(args.out, lambda tmp: _write_bytes(tmp, onnx_model.SerializeToString()))
    what = "float32" if cfg is None else f"weight {cfg.weight}, activation " \
        f"{cfg.activation or 'none'}"
    print(f"wrote {args.out}: {args.model} ({how}), {what}, {len(onnx_model.graph.node)} ONNX "
          f"nodes, opset {onnx_model.opset_import[0].version}")
    return 0


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def cmd_inspect(args):
    from needle_qc.runtime.serialize import load
    from needle_qc.tools.tabulate import summarize, tabulate

    if not os.path.isfile(args.file):
        raise UsageError(f"file not found: {args.file}")
    try:
        obj = load(args.file)
    except ValueError as err:  # load names the file and what is wrong with it
        raise UsageError(_first_line(err)) from None
    kind = "compiled model" if hasattr(obj, "program") else "graph"
    print(f"{args.file}: {kind}")
    for line in summarize(obj):
        print(f"  {line}")
    if hasattr(obj, "memory_report"):
        print("  " + str(obj.memory_report()).replace("\n", "\n  "))
    if args.nodes:
        print()
        print(tabulate(obj))
    return 0


COMMANDS = {"demo": cmd_demo, "report": cmd_report, "draw": cmd_draw, "quantize": cmd_quantize,
            "export": cmd_export, "inspect": cmd_inspect, "plan": cmd_plan}


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
