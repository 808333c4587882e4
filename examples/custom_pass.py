"""Write, register and run a custom graph pass (the walkthrough of docs/writing-a-pass.md).

Run: ``python examples/custom_pass.py [--out DIR]``. It traces a small model, registers two
passes (drop ``x * 1``; fold ``x * s`` into the following Linear's weight), runs them with the
default float pipeline, prints the IR diff, draws the graph before/after and checks numbers.
"""

import argparse
import difflib
from pathlib import Path

import numpy as np

import needle as ndl
from needle import nn
from needle_qc.capture.tracer import trace
from needle_qc.passes import FLOAT_PIPELINE, register_pass, run_passes
from needle_qc.tools.viz import draw


class ScaledMLP(nn.Module):
    """Linear -> ReLU -> (x * 1, a leftover temperature) -> (x * 0.5) -> Linear."""

    def __init__(self, device=None):
        super().__init__()
        self.fc1 = nn.Linear(8, 16, device=device)
        self.fc2 = nn.Linear(16, 4, device=device)

    def forward(self, x):
        h = ndl.ops.relu(self.fc1(x)) * 1.0
        return self.fc2(h * 0.5)


# ----------------------------------------------------------------------------- the passes

@register_pass("remove-mul-one")
def remove_mul_one(graph):
    """``x * 1`` -> ``x``."""
    changed = False
    for node in graph.find("mul_scalar"):
        if node.attrs["scalar"] == 1:
            node.replace_all_uses_with(node.inputs[0])
            graph.erase(node)
            changed = True
    return changed


@register_pass("fold-scale-into-linear")
def fold_scale_into_linear(graph):
    """``linear(x * s, W, b)`` -> ``linear(x, s * W, b)`` when the linear is the only user."""
    changed = False
    for node in graph.find("mul_scalar"):
        users = node.users
        if len(users) != 1 or users[0].op != "linear" or users[0].inputs[0] is not node:
            continue
        linear, weight = users[0], users[0].inputs[1]
        if weight.op != "param":
            continue
        scaled = graph.tensors[weight.attrs["tensor"]] * np.float32(node.attrs["scalar"])
        with graph.inserting_before(linear):
            new_weight = graph.param(f"{linear.name}.weight_scaled", scaled,
                                     module_path=linear.meta.get("module_path"))
        linear.inputs = (node.inputs[0], new_weight, *linear.inputs[2:])
        graph.erase(node)
        changed = True
    return changed


# ----------------------------------------------------------------------------- the run

def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="build/custom_pass", help="folder for the pictures")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    np.random.seed(0)
    device = ndl.cpu_numpy()
    model = ScaledMLP(device=device)
    model.eval()
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    graph = trace(model, x)
    before = graph.copy()

    pipeline = ["remove-mul-one", "fold-scale-into-linear", *FLOAT_PIPELINE]
    result = run_passes(graph, pipeline, snapshots=True)
    for run in result.runs:
        print(f"{run.name:24s} changed={run.changed}")

    print("\nIR diff:")
    diff = difflib.unified_diff(str(before).splitlines(), str(graph).splitlines(),
                                "before", "after", lineterm="")
    print("\n".join(diff))

    print("\npictures:", draw(before, out / "before.svg"),
          draw(graph, out / "after.svg", compare=before))

    want = model(ndl.Tensor(x, device=device)).numpy()
    got = graph(x, device=device).numpy()
    error = float(np.max(np.abs(got - want)))
    print(f"max |after - eager model| = {error:.2e}")
    assert error < 1e-5, "the passes changed the numbers"


if __name__ == "__main__":
    main()
