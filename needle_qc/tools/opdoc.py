"""docs/ops.md, generated from the op table: ``python -m needle_qc.tools.opdoc docs/ops.md``.

A test checks the committed page equals :func:`ops_markdown` (regenerate after adding an op).
"""
from __future__ import annotations

import sys

__all__ = ["ops_markdown", "main"]

SECTIONS = (
    ("structure", "Graph structure", "Inputs and the output node."),
    ("tensor", "Stored tensors", "Weights and constants; their arrays live in `graph.tensors`."),
    ("layer", "Layers", "Float ops with a weight input: what a QConfig quantizes."),
    ("compute", "Other float ops", "High-level ops and one row per Needle primitive."),
    ("quant", "Quantization", "Changes of representation between float and integer."),
    ("qlayer", "Quantized layers", "Integer-stage layers made by the quantizer (`compile` "
                                   "lowers them to CPU/CUDA kernels)."),
)

HEADER = """# Ops

Every op a needle_qc graph may hold (`print(graph)` shows them: `%y = linear(%x, %w, %b)`),
generated from the op table by `python -m needle_qc.tools.opdoc docs/ops.md`; do not edit by
hand. **inputs**: how many (a range when some are optional). **attrs**: name: type, `= default`
when optional (`?`: may be None). **QConfig**: quantized through its `weight` or, in static mode,
its two `activations`; the `module_types` key that configures it. **ONNX**: exported by
`qc.export_onnx` (see docs/coming-from-torch-ao-and-ort.md).
"""


def ops_markdown():
    """The text of docs/ops.md for the ops registered now."""
    from needle_qc import opset

    by_kind = {}
    for name in opset.all_ops():
        by_kind.setdefault(opset.get_op(name).traits.kind, []).append(name)
    parts = [HEADER]
    for kind, title, intro in SECTIONS:
        names = by_kind.pop(kind, [])
        if names:
            parts.append(_section(title, intro, names))
    for kind, names in sorted(by_kind.items()):  # a kind added later still gets listed
        parts.append(_section(kind, "", names))
    return "\n".join(parts)


def _section(title, intro, names):
    from needle_qc import opset

    lines = [f"## {title}", ""] + ([intro, ""] if intro else [])
    lines += ["| op | inputs | attrs | what it computes | QConfig | ONNX |",
              "|---|---|---|---|---|---|"]
    for name in names:
        op = opset.get_op(name)
        lines.append(f"| `{name}` | {_arity(op.num_inputs)} | {_attrs(op)} | "
                     f"{_cell(op.doc)} | {_qconfig(op.traits)} | {_onnx(name)} |")
    return "\n".join(lines) + "\n"


def _arity(n):
    if n == "variadic":
        return "any"
    if isinstance(n, tuple):
        return f"{n[0]}-{n[1]}"
    return str(n)


def _attrs(op):
    out = []
    for key, spec in op.attrs.items():
        text = f"{key}: {spec}"
        if key in op.defaults:
            text += f" = {op.defaults[key]!r}"
        out.append(f"`{text}`")
    return ", ".join(out) or "-"


def _qconfig(traits):
    if traits.quantizable is None:
        return "-"
    return f"{traits.quantizable} (`{traits.module_type}`)" if traits.module_type \
        else traits.quantizable


def _onnx(name):
    from needle_qc.tools.onnx_ops import EMITTERS, LAZY

    return "yes" if name in EMITTERS or name in LAZY else "-"


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    with open(argv[0], "w", encoding="utf-8") as f:
        f.write(ops_markdown())
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
