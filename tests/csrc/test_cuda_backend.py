"""The CUDA NDArray backend against the numpy backend, bit for bit (skipped without a GPU).

Set NEEDLE_CUDA_TEST_STANDIN=cpu (or numpy) to run the GPU tests against another backend module
instead: that exercises this harness on machines without a GPU.
"""

import gc
import importlib
import os

import numpy as np
import pytest

from needle.backend_ndarray import ndarray_backend_numpy as ref
from needle.backend_ndarray.dtypes import DTYPES, bf16_bits_to_fp32, fp32_to_bf16_bits

ALL = list(DTYPES)
FLOATS = ["float32", "float16", "bfloat16"]
INTS = ["int8", "uint8", "int32"]


def _import_cuda():
    """The CUDA module; skip when it was not built, but fail when it is there and won't load."""
    try:
        return importlib.import_module("needle.backend_ndarray.ndarray_backend_cuda")
    except ModuleNotFoundError as err:
        pytest.skip(f"ndarray_backend_cuda is not built (no nvcc at build time?): {err}")


@pytest.fixture(scope="module")
def dev():
    """The backend module under test: CUDA when a GPU is visible, else skip with the reason."""
    standin = os.environ.get("NEEDLE_CUDA_TEST_STANDIN")
    if standin:
        return importlib.import_module(f"needle.backend_ndarray.ndarray_backend_{standin}")
    mod = _import_cuda()
    if mod.device_count() == 0:
        pytest.skip("no CUDA GPU visible (ndarray_backend_cuda.device_count() == 0)")
    return mod


# ---- helpers ------------------------------------------------------------------------------------


def _put(mod, storage, dtype):
    """A backend Array holding ``storage`` (numpy array in the dtype's storage form)."""
    flat = np.ascontiguousarray(storage).reshape(-1)
    arr = mod.Array(flat.size, dtype)
    mod.from_numpy(flat, arr)
    return arr


def _get(mod, arr):
    """The whole buffer of ``arr`` as a flat numpy copy (storage form)."""
    return np.array(mod.to_numpy(arr, (arr.size,), (1,), 0))


def _values(storage, dtype):
    """Storage as float64 values (bfloat16 bits decoded)."""
    if dtype == "bfloat16":
        return bf16_bits_to_fp32(storage).astype(np.float64)
    return storage.astype(np.float64)


def _random(rng, dtype, n, scale=3.0):
    """n random elements in storage form, with exact duplicates mixed in (for eq/ge/max ties)."""
    if dtype in INTS:
        info = np.iinfo(dtype)
        out = rng.integers(info.min, int(info.max) + 1, n, dtype=np.int64).astype(dtype)
    else:
        vals = (rng.standard_normal(n) * scale).astype(np.float32)
        out = fp32_to_bf16_bits(vals) if dtype == "bfloat16" else vals.astype(dtype)
    if n > 4:
        out[rng.integers(0, n, n // 4)] = out[0]
    return out


def _specials(dtype):
    """Edge values as float32: ties at every integer half, range edges, inf, NaN, signed zero."""
    vals = [
        0.0,
        -0.0,
        0.5,
        1.5,
        2.5,
        -0.5,
        -2.5,
        126.5,
        127.5,
        128.5,
        -128.5,
        -129.0,
        254.5,
        255.5,
        256.0,
        1e-3,
        1 / 3,
        65504.0,
        65519.0,
        65520.0,
        1e5,
        3.0e9,
        -3.0e9,
        2147483520.0,
        float("inf"),
        float("-inf"),
        float("nan"),
    ]
    vals = np.array(vals, np.float32)
    if dtype == "bfloat16":
        return fp32_to_bf16_bits(vals)
    with np.errstate(over="ignore"):
        return vals.astype(dtype) if dtype in FLOATS else None


def _abs(storage, dtype):
    """|x| in storage form (bfloat16: clear the sign bit)."""
    return storage & np.uint16(0x7FFF) if dtype == "bfloat16" else np.abs(storage)


def _nan_mask(storage, dtype):
    if dtype in INTS:
        return np.zeros(storage.shape, bool)
    return np.isnan(_values(storage, dtype))


def assert_same_bits(got, want, dtype):
    """Bit-identical, except that any NaN matches any NaN."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    nan_got, nan_want = _nan_mask(got, dtype), _nan_mask(want, dtype)
    np.testing.assert_array_equal(nan_got, nan_want, err_msg="NaN positions differ")
    bits = f"u{got.itemsize}" if got.itemsize > 1 else "u1"
    diff = np.flatnonzero((got.view(bits) != want.view(bits)) & ~nan_got)
    assert diff.size == 0, (
        f"{diff.size} elements differ, first at {diff[:5]}: "
        f"got {got[diff[:5]]}, want {want[diff[:5]]}"
    )


def assert_close(got, want, dtype, rtol):
    """Same NaN positions, values within rtol (for results whose fp32 rounding may differ)."""
    g, w = _values(np.asarray(got), dtype), _values(np.asarray(want), dtype)
    np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol, equal_nan=True)


def _run(mod, fn, arrays, dtypes, out_dtype, out_size, *extra, scalar=None):
    """Upload inputs to ``mod``, call ``mod.fn(*inputs, [scalar,] out, *extra)``, return out."""
    handles = [_put(mod, a, d) for a, d in zip(arrays, dtypes)]
    if scalar is not None:
        handles.append(scalar)
    out = mod.Array(out_size, out_dtype)
    getattr(mod, fn)(*handles, out, *extra)
    return _get(mod, out)


def _both(dev, fn, arrays, dtypes, out_dtype, out_size, *extra, scalar=None):
    """The same call on the backend under test and on the numpy backend: (got, want)."""
    args = (fn, arrays, dtypes, out_dtype, out_size, *extra)
    return _run(dev, *args, scalar=scalar), _run(ref, *args, scalar=scalar)


# ---- tests that run everywhere ------------------------------------------------------------------


def _gpu_expected():
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


def test_module_imports_and_counts_devices():
    mod = _import_cuda()
    count = mod.device_count()
    assert isinstance(count, int) and count >= 0
    if not _gpu_expected():
        assert count == 0
    assert mod.__device_name__ == "cuda"


def test_without_gpu_every_call_raises_runtime_error():
    mod = _import_cuda()
    if mod.device_count() > 0:
        pytest.skip("a GPU is visible: the no-GPU error path cannot be reached")
    for call in (
        lambda: mod.Array(4),
        lambda: mod.Array(4, "int8"),
        mod.memory_stats,
        mod.reset_peak_memory,
    ):
        with pytest.raises(RuntimeError, match="CUDA"):
            call()
    with pytest.raises(ValueError, match="unknown dtype"):
        mod.Array(4, "float64")


# ---- GPU tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL)
def test_array_attributes_and_roundtrip(dev, dtype):
    data = _random(np.random.default_rng(0), dtype, 1000)
    arr = _put(dev, data, dtype)
    assert (arr.size, arr.dtype, arr.itemsize) == (1000, dtype, DTYPES[dtype].itemsize)
    assert arr.nbytes == 1000 * arr.itemsize and arr.ptr() != 0
    assert_same_bits(_get(dev, arr), data, dtype)


def test_memory_stats_count_exact_bytes(dev):
    gc.collect()  # no array of an earlier test may die mid-count
    dev.reset_peak_memory()
    base = dev.memory_stats()
    arrays = [
        dev.Array(n, d)
        for n, d in [(10, "float32"), (7, "float16"), (3, "int8"), (5, "int32"), (0, "bfloat16")]
    ]
    want = 40 + 14 + 3 + 20
    stats = dev.memory_stats()
    assert stats["current_bytes"] - base["current_bytes"] == want
    assert stats["num_allocs"] - base["num_allocs"] == 5
    assert stats["peak_bytes"] == stats["current_bytes"]
    del arrays
    after = dev.memory_stats()
    assert after["current_bytes"] == base["current_bytes"]
    assert after["peak_bytes"] == base["current_bytes"] + want
    dev.reset_peak_memory()
    assert dev.memory_stats()["peak_bytes"] == base["current_bytes"]


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize(
    "val", [0.0, 1.5, 2.5, -3.5, 300.7, -1e6, 1 / 3, 65519.99, 1e40, float("nan"), float("-inf")]
)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_fill(dev, dtype, val):
    got, want = _both(dev, "fill", [], [], dtype, 33, val)
    assert_same_bits(got, want, dtype)


# (shape, strides, offset) over a 4096-element source: permuted, broadcast, sliced, flipped, 8-D.
VIEWS = [
    ((4, 5), (1, 4), 0),
    ((3, 4, 5), (0, 5, 1), 7),
    ((6, 3), (20, 3), 11),
    ((5, 4), (-4, 1), 16),
    ((2, 2, 2, 2, 2, 2, 2, 3), (1024, 512, 256, 128, 64, 32, 16, 5), 1),
    ((), (), 9),
    ((3, 0, 2), (4, 2, 1), 0),
]


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("view", VIEWS, ids=[str(v[0]) for v in VIEWS])
def test_compact(dev, dtype, view):
    shape, strides, offset = view
    src = _random(np.random.default_rng(1), dtype, 4096)
    size = int(np.prod(shape))
    got, want = _both(dev, "compact", [src], [dtype], dtype, size, shape, strides, offset)
    assert_same_bits(got, want, dtype)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("view", [v for v in VIEWS if 0 not in v[1]], ids=str)
def test_setitem(dev, dtype, view):
    shape, strides, offset = view
    rng = np.random.default_rng(2)
    base, src = _random(rng, dtype, 4096), _random(rng, dtype, max(int(np.prod(shape)), 1))
    results = []
    for mod in (dev, ref):
        out = _put(mod, base, dtype)
        mod.ewise_setitem(_put(mod, src, dtype), out, shape, strides, offset)
        results.append(_get(mod, out))
    assert_same_bits(results[0], results[1], dtype)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("val", [-7.5, 2.5, 1e9, float("nan")])
def test_scalar_setitem(dev, dtype, val):
    shape, strides, offset = (3, 4), (40, 2), 5
    base = _random(np.random.default_rng(3), dtype, 200)
    results = []
    for mod in (dev, ref):
        out = _put(mod, base, dtype)
        mod.scalar_setitem(12, val, out, shape, strides, offset)
        results.append(_get(mod, out))
    assert_same_bits(results[0], results[1], dtype)


INT_OPS = ["add", "mul", "maximum", "eq", "ge"]
BINARY = [(d, op) for d in ALL for op in INT_OPS + (["div"] if d in FLOATS else [])]
SCALAR = [(d, op) for d in ALL for op in INT_OPS + (["div", "power"] if d in FLOATS else [])]


@pytest.mark.parametrize("dtype,op", BINARY)
def test_ewise_binary(dev, dtype, op):
    rng = np.random.default_rng(4)
    a, b = _random(rng, dtype, 3001), _random(rng, dtype, 3001)
    b[::7] = a[::7]
    specials = _specials(dtype)
    if specials is not None:  # every special against every special
        a = np.concatenate([a, np.repeat(specials, specials.size)])
        b = np.concatenate([b, np.tile(specials, specials.size)])
    got, want = _both(dev, f"ewise_{op}", [a, b], [dtype, dtype], dtype, a.size)
    assert_same_bits(got, want, dtype)


SCALARS = [0.0, 1.0, -2.0, 3.0, 0.1, -2.5, 100.0]


@pytest.mark.parametrize("dtype,op", SCALAR)
def test_scalar_ops(dev, dtype, op):
    a = _random(np.random.default_rng(5), dtype, 2001)
    specials = _specials(dtype)
    if specials is not None:
        a = np.concatenate([a, specials])
    vals = [v for v in SCALARS if dtype in FLOATS or v == int(v)]
    if op == "power":
        a, vals = _abs(a, dtype), [2.0, 0.5, -1.0, 3.0, 1.7]
    for val in vals:
        got, want = _both(dev, f"scalar_{op}", [a], [dtype], dtype, a.size, scalar=val)
        if op == "power" and val not in (2.0, 0.5, -1.0):
            assert_close(got, want, dtype, rtol=1e-5 if dtype == "float32" else 1e-2)
        else:
            assert_same_bits(got, want, dtype)


@pytest.mark.parametrize("dtype", INTS)
def test_integer_add_mul_wrap_like_numpy(dev, dtype):
    info = np.iinfo(dtype)
    a = np.array([info.max, info.min, info.max, 100], dtype)
    for op in ("add", "mul"):
        got, want = _both(dev, f"ewise_{op}", [a, a], [dtype, dtype], dtype, a.size)
        assert_same_bits(got, want, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["log", "exp", "tanh"])
def test_unary_within_a_few_ulp(dev, dtype, op):
    # libm and CUDA transcendentals are not correctly rounded: allow fp32 ulps, not bits.
    a = _random(np.random.default_rng(6), dtype, 4000, scale=2.0)
    if op == "log":
        a = _abs(a, dtype)
    got, want = _both(dev, f"ewise_{op}", [a], [dtype], dtype, a.size)
    rtol = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype]
    assert_close(got, want, dtype, rtol)


@pytest.mark.parametrize("src", ALL)
@pytest.mark.parametrize("dst", ALL)
def test_astype(dev, src, dst):
    a = _random(np.random.default_rng(7), src, 3000, scale=200.0)
    specials = _specials(src)
    if specials is not None:
        a = np.concatenate([a, specials])
    if src == "int32":
        a = np.concatenate(
            [
                a,
                np.array(
                    [
                        2**30 + 2**22 + 1,
                        16777217,
                        65519,
                        65520,
                        2**31 - 1,
                        -(2**31),
                        300,
                        -300,
                        255,
                        256,
                        -129,
                    ],
                    np.int32,
                ),
            ]
        )
    got, want = _both(dev, "astype", [a], [src], dst, a.size)
    assert_same_bits(got, want, dst)


MATMUL_SHAPES = [(1, 1, 1), (17, 33, 5), (64, 64, 64), (3, 0, 4), (5, 130, 31), (100, 7, 129)]


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("mnp", MATMUL_SHAPES, ids=str)
def test_matmul(dev, dtype, mnp):
    m, n, p = mnp
    rng = np.random.default_rng(8)
    a, b = _random(rng, dtype, m * n, scale=1.0), _random(rng, dtype, n * p, scale=1.0)
    out_dtype = dtype if dtype in FLOATS else "int32"
    got, want = _both(dev, "matmul", [a, b], [dtype, dtype], out_dtype, m * p, m, n, p)
    if dtype in INTS:  # int32 accumulation, wrapping for int32 inputs: exact
        assert_same_bits(got, want, out_dtype)
    else:
        rtol = {"float32": 1e-4, "float16": 4e-3, "bfloat16": 2e-2}[dtype]
        assert_close(got, want, dtype, rtol)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("reduce_size", [1, 7, 300, 5000])
def test_reductions(dev, dtype, reduce_size):
    rows = 12
    a = _random(np.random.default_rng(9), dtype, rows * reduce_size, scale=1.0)
    sum_dtype = dtype if dtype in FLOATS else "int32"
    got, want = _both(dev, "reduce_max", [a], [dtype], dtype, rows, reduce_size)
    assert_same_bits(got, want, dtype)
    got, want = _both(dev, "reduce_sum", [a], [dtype], sum_dtype, rows, reduce_size)
    if dtype in INTS:
        assert_same_bits(got, want, sum_dtype)
    else:
        rtol = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype]
        assert_close(got, want, dtype, rtol)


def test_reduce_max_propagates_nan(dev):
    a = np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0], np.float32)
    got, want = _both(dev, "reduce_max", [a], ["float32"], "float32", 2, 3)
    assert_same_bits(got, want, "float32")


# ---- bad input: clear Python errors, never a crash ----------------------------------------------


def test_bad_input_raises_clear_errors():
    mod = _import_cuda()
    if mod.device_count() == 0:
        pytest.skip("no CUDA GPU visible (ndarray_backend_cuda.device_count() == 0)")
    a, b, i8 = mod.Array(6), mod.Array(5), mod.Array(6, "int8")
    with pytest.raises(TypeError, match="integer"):
        mod.ewise_div(i8, i8, mod.Array(6, "int8"))
    with pytest.raises(ValueError, match="elements"):
        mod.ewise_add(a, b, mod.Array(6))
    with pytest.raises(ValueError, match="dtype|float32"):
        mod.ewise_add(a, i8, mod.Array(6))
    with pytest.raises(ValueError, match="reaches"):
        mod.compact(a, mod.Array(4), (2, 2), (4, 2), 0)
    with pytest.raises(ValueError, match="at most 8"):
        mod.compact(a, mod.Array(1), (1,) * 9, (1,) * 9, 0)
    with pytest.raises(ValueError, match="uint8|float32"):
        mod.from_numpy(np.zeros(6, np.float64), a)
    with pytest.raises(ValueError, match="int32"):
        mod.matmul(i8, i8, mod.Array(4, "int8"), 2, 3, 2)
