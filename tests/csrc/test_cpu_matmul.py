"""The C++ CPU backend's matmul: every edge-tile shape, threads, int32 accumulation, fp16/bf16."""

import itertools

import numpy as np
import pytest

from needle.backend_ndarray.dtypes import bf16_bits_to_fp32, to_storage

cpu = pytest.importorskip("needle.backend_ndarray.ndarray_backend_cpu",
                          reason="C++ CPU backend not built (run `make native`)")

MR, NR, KC, MC = 6, 16, 256, 144  # the sgemm blocking in csrc/ndarray/cpu_sgemm.cc


def handle(x, dtype="float32"):
    flat = np.ascontiguousarray(x).reshape(-1)
    arr = cpu.Array(flat.size, dtype=dtype)
    cpu.from_numpy(flat, arr)
    return arr


def matmul(a, b, dtype="float32", out_dtype=None):
    (m, n), p = a.shape, b.shape[1]
    out = cpu.Array(m * p, dtype=out_dtype or dtype)
    cpu.matmul(handle(a, dtype), handle(b, dtype), out, m, n, p)
    return np.array(cpu.to_numpy(out, (m, p), (p, 1), 0))


def check_f32(m, n, p, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n), dtype=np.float32)
    b = rng.standard_normal((n, p), dtype=np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    # fp32 accumulation error grows like sqrt(n) * eps * |a||b|
    tol = 4e-6 * np.sqrt(n) * (np.abs(a).astype(np.float64) @ np.abs(b)) + 1e-30
    got = matmul(a, b)
    assert got.shape == (m, p)
    assert (np.abs(got - want) <= tol).all(), f"shape {(m, n, p)}"


SMALL = sorted(set(itertools.product([1, 2, 5, 6, 7, 13, 17, 31, 40], repeat=3)))


@pytest.mark.parametrize("m,n,p", SMALL[::3] + [(1, 1, 1), (40, 40, 40), (1, 40, 1)])
def test_small_shapes(m, n, p):
    check_f32(m, n, p)


@pytest.mark.parametrize("m,n,p", [
    (MR + 1, KC + 1, NR + 1), (MR - 1, KC - 1, NR - 1), (MC + 5, 2 * KC + 3, 3 * NR + 9),
    (97, 300, 33), (4, 513, 1031), (5, 64, 4099), (101, 257, 211), (2, 1000, 3),
])
def test_tile_remainders(m, n, p):
    check_f32(m, n, p, seed=m + n + p)


@pytest.mark.parametrize("m,n,p", [(300, 700, 500), (1, 2048, 3000), (640, 64, 96)])
def test_large_shapes(m, n, p):
    check_f32(m, n, p, seed=3)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_thread_counts_agree(monkeypatch, threads):
    monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
    check_f32(150, 260, 170, seed=4)
    check_f32(3, 260, 1100, seed=5)


def test_zero_inner_dimension_gives_zeros():
    out = cpu.Array(6)
    cpu.fill(out, 7.0)
    cpu.matmul(cpu.Array(0), cpu.Array(0), out, 2, 0, 3)
    np.testing.assert_array_equal(cpu.to_numpy(out, (6,), (1,), 0), np.zeros(6, np.float32))


@pytest.mark.parametrize("dtype,np_dtype", [("int8", np.int8), ("uint8", np.uint8),
                                            ("int32", np.int32)])
@pytest.mark.parametrize("m,n,p", [(1, 1, 1), (7, 300, 13), (33, 17, 65)])
def test_integer_matmul_exact_int32(dtype, np_dtype, m, n, p):
    rng = np.random.default_rng(m * n * p)
    info = np.iinfo(np_dtype)
    a = rng.integers(info.min, info.max, (m, n), endpoint=True).astype(np_dtype)
    b = rng.integers(info.min, info.max, (n, p), endpoint=True).astype(np_dtype)
    want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)  # wraps like int32 sums
    np.testing.assert_array_equal(matmul(a, b, dtype, "int32"), want)


def test_integer_matmul_needs_int32_out():
    with pytest.raises(ValueError, match="int32"):
        cpu.matmul(cpu.Array(4, "int8"), cpu.Array(4, "int8"), cpu.Array(4, "int8"), 2, 2, 2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_accumulates_in_fp32(dtype):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((9, 700), dtype=np.float32)
    b = rng.standard_normal((700, 11), dtype=np.float32)
    a_st, b_st = to_storage(a, dtype), to_storage(b, dtype)
    widen = (lambda x: bf16_bits_to_fp32(x)) if dtype == "bfloat16" else (
        lambda x: x.astype(np.float32))
    exact = widen(a_st).astype(np.float64) @ widen(b_st).astype(np.float64)
    got = widen(matmul(a_st, b_st, dtype))
    # one rounding to the output dtype (2^-8 for bf16, 2^-11 for fp16) plus fp32 accumulation
    rel = 2.0**-8 if dtype == "bfloat16" else 2.0**-11
    np.testing.assert_allclose(got, exact, rtol=rel, atol=1e-3)


def test_matmul_tiled_layout():
    t = cpu.__tile_size__
    m, n, p = 3 * t, 2 * t, 4 * t
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((m, n), np.float32), rng.standard_normal((n, p), np.float32)

    def tiled(x):
        r, c = x.shape
        return x.reshape(r // t, t, c // t, t).transpose(0, 2, 1, 3)

    out = cpu.Array(m * p)
    cpu.matmul_tiled(handle(tiled(a)), handle(tiled(b)), out, m, n, p)
    got = np.array(cpu.to_numpy(out, (m // t, p // t, t, t), (p * t, t * t, t, 1), 0))
    np.testing.assert_allclose(got, tiled(a @ b), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiples"):
        cpu.matmul_tiled(cpu.Array(9), cpu.Array(9), cpu.Array(9), 3, 3, 3)


def test_portable_fallback_passes_the_same_tests():
    """NEEDLE_CPU_NO_SIMD=1 forces the non-AVX2/F16C kernels; rerun the value tests on them."""
    import os
    import pathlib
    import subprocess
    import sys

    here = pathlib.Path(__file__).parent
    env = dict(os.environ, NEEDLE_CPU_NO_SIMD="1")
    probe = subprocess.run(
        [sys.executable, "-c", "from needle.backend_ndarray import ndarray_backend_cpu as m;"
         "print(m.cpu_features()['avx2_fma'], m.cpu_features()['f16c'])"],
        env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["False", "False"]
    selection = ("cpu and (astype or float64 or special or matmul or fill or transcendentals "
                 "or reductions)")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(here / "test_backend_contract.py"), "-k", selection,
         str(here / "test_cpu_matmul.py::test_tile_remainders"),
         str(here / "test_cpu_matmul.py::test_large_shapes")],
        env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


_SHAPES_FOR_PATHS = [(48, 37, 33), (50, 64, 70), (145, 129, 97), (200, 300, 64), (7, 40, 31)]
_PATH_SCRIPT = """
import sys, numpy as np
from needle.backend_ndarray import ndarray_backend_cpu as m
out = {}
for i, (a, b, c) in enumerate(%r):
    rng = np.random.default_rng(i)
    x = rng.standard_normal((a, b)).astype(np.float32)
    y = rng.standard_normal((b, c)).astype(np.float32)
    ha, hb, hc = m.Array(x.size), m.Array(y.size), m.Array(a * c)
    m.from_numpy(x, ha); m.from_numpy(y, hb)
    m.matmul(ha, hb, hc, a, b, c)
    out[str(i)] = m.to_numpy(hc, (a, c), (c, 1), 0).copy()
np.savez(sys.argv[1], **out)
"""


def test_avx512_and_avx2_kernels_give_identical_bits(tmp_path):
    """NEEDLE_CPU_NO_AVX512=1 forces the 6x16 AVX2 kernel: same summation order, same bits."""
    import os
    import subprocess
    import sys

    script = _PATH_SCRIPT % (_SHAPES_FOR_PATHS,)
    results = {}
    for name, extra in (("default", {}), ("no_avx512", {"NEEDLE_CPU_NO_AVX512": "1"})):
        path = tmp_path / f"{name}.npz"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True,
                       env=dict(os.environ, NEEDLE_NUM_THREADS="2", **extra))
        results[name] = np.load(path)
    for key in results["default"].files:
        np.testing.assert_array_equal(results["default"][key], results["no_avx512"][key])
        a, b, c = _SHAPES_FOR_PATHS[int(key)]
        rng = np.random.default_rng(int(key))
        x = rng.standard_normal((a, b))
        y = rng.standard_normal((b, c))
        np.testing.assert_allclose(results["default"][key], x.astype(np.float32).astype(
            np.float64) @ y.astype(np.float32).astype(np.float64), rtol=1e-4, atol=1e-4)
