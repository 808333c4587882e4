"""Benchmark the C++ CPU NDArray backend against numpy: matmul GOP/s and 4M-element ops."""

import os
import time

os.environ.setdefault("NEEDLE_NUM_THREADS", "2")

import numpy as np  # noqa: E402

MATMUL_SHAPES = [(1, 4096, 4096), (16, 1024, 1024), (128, 1024, 1024), (512, 512, 512),
                 (1024, 1024, 1024), (256, 4096, 1024)]
EWISE_N = 1 << 22
REDUCE_SIZE = 1024


def best_time(fn, repeats=7, budget=0.25):
    """Minimum over `repeats` rounds of the mean time of `fn` in a round of ~budget/repeats s."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed > budget / repeats:
                break
        best = min(best, elapsed / n)
    return best


def paired_times(fn_ref, fn_ours, rounds=3):
    """Alternate the two so background load hits both alike; keep each one's best."""
    ref = ours = float("inf")
    for _ in range(rounds):
        ref = min(ref, best_time(fn_ref))
        ours = min(ours, best_time(fn_ours))
    return ref, ours


def handle(cpu, x, dtype="float32"):
    arr = cpu.Array(x.size, dtype=dtype)
    cpu.from_numpy(np.ascontiguousarray(x).reshape(-1), arr)
    return arr


def matmul_row(cpu, nd, rng, m, k, n):
    """One table row: numpy vs backend handles vs NDArray `@` (GOP/s and time ratios)."""
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    ha, hb, hc = handle(cpu, a), handle(cpu, b), cpu.Array(m * n)
    t_np, t_be = paired_times(lambda: a @ b, lambda: cpu.matmul(ha, hb, hc, m, k, n))
    gops = 2.0 * m * k * n / 1e9
    line = f"{m:5d} {k:5d} {n:5d} | {gops / t_np:8.1f} {gops / t_be:8.1f} {t_np / t_be:6.2f} |"
    if nd is not None:
        da, db = nd.array(a, device=nd.cpu()), nd.array(b, device=nd.cpu())
        _, t_nd = paired_times(lambda: a @ b, lambda: da @ db, rounds=1)
        line += f" {gops / t_nd:8.1f} {t_np / t_nd:6.2f}"
    return line


def bench_matmul(cpu, nd, rng):
    print(f"\nfloat32 matmul, NEEDLE_NUM_THREADS={os.environ['NEEDLE_NUM_THREADS']}")
    print(f"{'M':>5} {'K':>5} {'N':>5} | {'numpy':>8} {'backend':>8} {'ratio':>6} | "
          f"{'NDArray@':>8} {'ratio':>6}   (GOP/s)")
    for m, k, n in MATMUL_SHAPES:
        print(matmul_row(cpu, nd, rng, m, k, n))


def bench_elementwise(cpu, rng):
    print(f"\nfloat32 ops on {EWISE_N} elements (reductions over blocks of {REDUCE_SIZE})")
    print(f"{'op':>12} | {'numpy ms':>9} {'backend ms':>10} {'ratio':>6}")
    x = rng.uniform(0.1, 2.0, EWISE_N).astype(np.float32)
    y = rng.uniform(0.1, 2.0, EWISE_N).astype(np.float32)
    hx, hy, ho = handle(cpu, x), handle(cpu, y), cpu.Array(EWISE_N)
    hr = cpu.Array(EWISE_N // REDUCE_SIZE)
    z = np.empty_like(x)
    blocks = x.reshape(-1, REDUCE_SIZE)
    cases = [
        ("add", lambda: np.add(x, y, out=z), lambda: cpu.ewise_add(hx, hy, ho)),
        ("mul", lambda: np.multiply(x, y, out=z), lambda: cpu.ewise_mul(hx, hy, ho)),
        ("div", lambda: np.divide(x, y, out=z), lambda: cpu.ewise_div(hx, hy, ho)),
        ("maximum", lambda: np.maximum(x, y, out=z), lambda: cpu.ewise_maximum(hx, hy, ho)),
        ("scalar_mul", lambda: np.multiply(x, np.float32(3), out=z),
         lambda: cpu.scalar_mul(hx, 3.0, ho)),
        ("power 3", lambda: np.power(x, np.float32(3), out=z),
         lambda: cpu.scalar_power(hx, 3.0, ho)),
        ("exp", lambda: np.exp(x, out=z), lambda: cpu.ewise_exp(hx, ho)),
        ("log", lambda: np.log(x, out=z), lambda: cpu.ewise_log(hx, ho)),
        ("tanh", lambda: np.tanh(x, out=z), lambda: cpu.ewise_tanh(hx, ho)),
        ("reduce_sum", lambda: blocks.sum(axis=1), lambda: cpu.reduce_sum(hx, hr, REDUCE_SIZE)),
        ("reduce_max", lambda: blocks.max(axis=1), lambda: cpu.reduce_max(hx, hr, REDUCE_SIZE)),
        ("sum (all)", lambda: x.sum(), lambda: cpu.reduce_sum(hx, cpu.Array(1), EWISE_N)),
    ]
    for name, fn_np, fn_be in cases:
        t_np, t_be = paired_times(fn_np, fn_be, rounds=2)
        print(f"{name:>12} | {t_np * 1e3:9.3f} {t_be * 1e3:10.3f} {t_np / t_be:6.2f}")


def main():
    from needle.backend_ndarray import ndarray_backend_cpu as cpu

    try:
        import needle.backend_ndarray as nd
    except ImportError:
        nd = None
    rng = np.random.default_rng(0)
    print("ratio = numpy time / backend time (>1: backend faster)")
    bench_matmul(cpu, nd, rng)
    bench_elementwise(cpu, rng)


if __name__ == "__main__":
    main()
