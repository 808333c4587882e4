"""exp/log/tanh of the C++ CPU backend: <= 2 ulp vs float64 over 2^24 spread floats, both paths."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

OPS = {"exp": np.exp, "log": np.log, "tanh": np.tanh}
MAX_ULP = 2.0
SWEEP_STEP = 256  # every 256th bit pattern: 2^24 floats, all exponents, both signs, NaN/inf
CHUNK = 1 << 22
SPECIALS = np.array([
    0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 1e-45, -1e-45, 1.1754942e-38,
    1.1754944e-38, 3.4028235e38, -3.4028235e38, 88.72283, 88.72284, 89.0, -86.0, -87.5, 87.5,
    -103.97, -104.0, -110.0, 0.625, -0.625, 0.62499994, 9.5, -9.5, 20.0, -20.0,
    0.70710677, 0.7071068, 1.4142135, 1.4142137, 2.0, 0.5,
], dtype=np.float32)


def _backend():
    try:
        from needle.backend_ndarray import ndarray_backend_cpu as cpu
    except ImportError as exc:
        pytest.skip(f"ndarray_backend_cpu not importable: {exc}")
    return cpu


def _run(cpu, op, x):
    arr, out = cpu.Array(x.size), cpu.Array(x.size)
    cpu.from_numpy(np.ascontiguousarray(x, np.float32), arr)
    getattr(cpu, f"ewise_{op}")(arr, out)
    return np.array(cpu.to_numpy(out, (x.size,), (1,), 0), copy=True)


def _ulp_of(exact):
    """Unit in the last place of the float32 at or below |exact| (2^-149 at the bottom)."""
    _, e = np.frexp(np.abs(exact))
    return np.ldexp(1.0, np.maximum(e - 24, -149))


def check_values(cpu, op, x):
    """Max ulp error of ewise_<op> on finite results; non-finite and zero results must be exact.

    Returns (max_ulp, first bad input or None) so a subprocess can report it as JSON.
    """
    got = _run(cpu, op, x)
    with np.errstate(all="ignore"):
        exact = OPS[op](x.astype(np.float64))
        want = exact.astype(np.float32)
    same_nan = np.isnan(got) == np.isnan(want)
    finite = np.isfinite(want) & (want != 0)
    special = ~finite & ~np.isnan(want)
    exact_bits = np.ones_like(same_nan)
    # inf, -inf and signed zeros must match bit for bit (e.g. tanh(-0) = -0, log(0) = -inf)
    exact_bits[special] = got[special].view(np.uint32) == want[special].view(np.uint32)
    zero = want == 0
    # a result that rounds to zero may also be the smallest subnormal (<= 2 ulp there)
    exact_bits[zero] |= np.abs(got[zero]) <= np.float32(2e-45)
    exact_bits &= (np.signbit(got) == np.signbit(want)) | ~zero
    bad = ~(same_nan & exact_bits)
    err = np.abs(got[finite].astype(np.float64) - exact[finite]) / _ulp_of(exact[finite])
    worst = float(err.max()) if err.size else 0.0
    if bad.any():
        return float("inf"), float(x[bad][0])
    if worst > MAX_ULP:
        return worst, float(x[finite][np.argmax(err)])
    return worst, None


def sweep(cpu, op):
    """check_values over SPECIALS plus every SWEEP_STEP-th float32 bit pattern, in chunks."""
    worst, where = check_values(cpu, op, SPECIALS)
    for start in range(0, 1 << 32, CHUNK * SWEEP_STEP):
        bits = np.arange(start, start + CHUNK * SWEEP_STEP, SWEEP_STEP, dtype=np.uint64)
        # an odd offset so the sweep also meets mantissas other than multiples of 256
        x = (bits + 97).astype(np.uint32).view(np.float32)
        err, bad = check_values(cpu, op, x)
        if err > worst:
            worst, where = err, bad
    return worst, where


@pytest.mark.parametrize("op", sorted(OPS))
def test_sweep_simd_path(op):
    worst, where = sweep(_backend(), op)
    assert worst <= MAX_ULP, f"{op}: {worst} ulp at x={where!r}"


def test_sweep_portable_path():
    _backend()
    env = dict(os.environ, NEEDLE_CPU_NO_SIMD="1", NEEDLE_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    for op, (worst, where) in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        assert worst <= MAX_ULP, f"NEEDLE_CPU_NO_SIMD {op}: {worst} ulp at x={where!r}"


@pytest.mark.parametrize("op", sorted(OPS))
def test_result_independent_of_neighbours(op):
    # SIMD kernels take a lean path when a whole vector is ordinary: the bits must not change
    # when a special value shares the vector (or when an element lands in the tail).
    cpu = _backend()
    x = np.random.default_rng(17).uniform(-5.0, 5.0, 4099).astype(np.float32)
    if op == "log":
        x = np.abs(x)
    alone = _run(cpu, op, x)
    mixed = x.copy()
    mixed[::8] = np.array([np.nan, -np.inf, 0.0, -1.0, 1e-40, 200.0], np.float32).repeat(
        -(-mixed[::8].size // 6))[: mixed[::8].size]
    keep = np.ones(x.size, bool)
    keep[::8] = False
    np.testing.assert_array_equal(_run(cpu, op, mixed)[keep].view(np.uint32),
                                  alone[keep].view(np.uint32))
    for size in (1, 7, 9, 15):
        np.testing.assert_array_equal(_run(cpu, op, x[:size]).view(np.uint32),
                                      alone[:size].view(np.uint32))


if __name__ == "__main__":  # the portable-path run of test_sweep_portable_path
    from needle.backend_ndarray import ndarray_backend_cpu as _cpu

    print(json.dumps({op: sweep(_cpu, op) for op in sorted(OPS)}))
