"""Time to trace ResNet9 and run the default float pipeline on it (target: under 1 s)."""

import argparse
import time

import numpy as np

import needle as ndl
import needle.models as models
from needle_qc.capture.tracer import trace
from needle_qc.passes import FLOAT_PIPELINE, run_passes


def _device():
    cpu = ndl.cpu()
    return cpu if cpu.enabled() else ndl.cpu_numpy()


def measure(batch=2, seed=0):
    """Seconds for (trace, float pipeline) of a fresh ResNet9 on ``batch`` CIFAR images."""
    np.random.seed(seed)
    device = _device()
    model = models.ResNet9(device=device)
    model.eval()
    x = ndl.Tensor(np.random.default_rng(seed).standard_normal((batch, 3, 32, 32))
                   .astype(np.float32), device=device)
    start = time.perf_counter()
    graph = trace(model, x)
    traced = time.perf_counter()
    run_passes(graph, FLOAT_PIPELINE)
    done = time.perf_counter()
    return traced - start, done - traced


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    parser.add_argument("--batch", type=int, default=2, help="example batch size")
    args = parser.parse_args()
    runs = [measure(args.batch, seed) for seed in range(args.repeat)]
    trace_s, passes_s = min(r[0] for r in runs), min(r[1] for r in runs)
    total = min(sum(r) for r in runs)
    print(f"device: {_device()}")
    print(f"trace ResNet9:         {trace_s * 1e3:8.1f} ms (best of {args.repeat})")
    print(f"FLOAT_PIPELINE:        {passes_s * 1e3:8.1f} ms  {FLOAT_PIPELINE}")
    print(f"trace + pipeline:      {total * 1e3:8.1f} ms  (target < 1000 ms)")


if __name__ == "__main__":
    main()
