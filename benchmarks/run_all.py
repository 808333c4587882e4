"""Runs every benchmark script in this folder, one after another, with 2 threads everywhere."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = ["bench_ndarray.py", "bench_int8.py", "bench_e2e.py", "bench_models.py",
           "bench_trace.py"]


def main() -> int:
    here = Path(__file__).resolve().parent
    env = dict(os.environ, NEEDLE_NUM_THREADS=os.environ.get("NEEDLE_NUM_THREADS", "2"),
               OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    failed = []
    for name in SCRIPTS:
        print(f"\n===== {name} =====", flush=True)
        if subprocess.call([sys.executable, str(here / name)], env=env) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
