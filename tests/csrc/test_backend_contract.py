"""The NDArray backend contract (docs/backend-contract.md) checked on every importable backend."""

import gc
import importlib

import numpy as np
import pytest

from needle.backend_ndarray.dtypes import to_storage

DTYPES = ["float32", "float16", "bfloat16", "int8", "uint8", "int32"]
FLOATS = DTYPES[:3]
INTS = DTYPES[3:]
STORAGE = {
    "float32": np.float32, "float16": np.float16, "bfloat16": np.uint16,
    "int8": np.int8, "uint8": np.uint8, "int32": np.int32,
}
EXPORTS = [
    "__device_name__", "Array", "to_numpy", "from_numpy", "fill", "compact", "ewise_setitem",
    "scalar_setitem", "ewise_add", "ewise_mul", "ewise_div", "ewise_maximum", "ewise_eq",
    "ewise_ge", "scalar_add", "scalar_mul", "scalar_div", "scalar_power", "scalar_maximum",
    "scalar_eq", "scalar_ge", "ewise_log", "ewise_exp", "ewise_tanh", "astype", "matmul",
    "reduce_sum", "reduce_max", "memory_stats", "reset_peak_memory",
]


def _load(name):
    try:
        return importlib.import_module(f"needle.backend_ndarray.ndarray_backend_{name}")
    except ImportError as exc:
        pytest.skip(f"ndarray_backend_{name} not importable: {exc}")


@pytest.fixture(scope="module")
def ref():
    """The numpy backend: the reference every other backend must match bit for bit."""
    return _load("numpy")


@pytest.fixture(scope="module", params=["numpy", "cpu", "cuda"])
def be(request):
    mod = _load(request.param)
    if request.param == "cuda":
        try:
            mod.Array(1)
        except Exception as exc:  # no driver / no device: the module imports but cannot allocate
            pytest.skip(f"no GPU visible for ndarray_backend_cuda: {exc}")
    return mod


def make(mod, storage, dtype):
    """A backend Array holding `storage` (numpy array in the dtype's storage type)."""
    flat = np.ascontiguousarray(storage, dtype=STORAGE[dtype]).reshape(-1)
    arr = mod.Array(flat.size, dtype=dtype)
    mod.from_numpy(flat, arr)
    return arr


def read(mod, arr):
    return np.array(mod.to_numpy(arr, (arr.size,), (1,), 0), copy=True)


def sample(dtype, n, seed=0, special=True):
    """Storage values of `dtype`: random values plus the awkward ones (ties, NaN, inf, extremes)."""
    rng = np.random.default_rng(seed)
    if dtype in INTS:
        info = np.iinfo(STORAGE[dtype])
        vals = rng.integers(info.min, info.max, size=n, endpoint=True)
        if special:
            vals[: min(n, 4)] = [info.min, info.max, 0, 1][: min(n, 4)]
        return vals.astype(STORAGE[dtype])
    vals = (rng.standard_normal(n) * 3).astype(np.float32)
    if special:
        extra = [0.5, 1.5, 2.5, -0.5, -2.5, 0.0, -0.0, np.inf, -np.inf, np.nan, 1e-8, 65519.0,
                 65520.0, 1e30, -1e30, 127.5, 128.5, -128.5, 255.5, 3e9, -3e9, 1.0000001]
        k = min(n, len(extra))
        vals[:k] = extra[:k]
    return to_storage(vals, dtype)


def assert_bits_equal(got, want, dtype):
    """Bit-identical storage, except that any NaN matches any NaN (payloads may differ)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    if dtype in INTS:
        np.testing.assert_array_equal(got, want)
        return
    as_float = {"float32": np.float32, "float16": np.float16}.get(dtype)
    if as_float is None:  # bfloat16 bits: NaN when exponent all ones and mantissa non-zero
        gnan, wnan = (got & 0x7FFF) > 0x7F80, (want & 0x7FFF) > 0x7F80
    else:
        gnan, wnan = np.isnan(got.view(as_float)), np.isnan(want.view(as_float))
    np.testing.assert_array_equal(gnan, wnan)
    uint = np.uint32 if got.itemsize == 4 else np.uint16
    bad = (got.view(uint) != want.view(uint)) & ~gnan
    assert not bad.any(), f"{bad.sum()} of {bad.size} differ, first at {np.flatnonzero(bad)[:5]}"


def run_both(be, ref, fn_name, dtype, inputs, out_dtype=None, extra=()):
    """Run the same op on `be` and the reference; return both outputs' storage."""
    outs = []
    for mod in (be, ref):
        args = [make(mod, x, dtype) for x in inputs]
        out = mod.Array(inputs[0].size, dtype=out_dtype or dtype)
        getattr(mod, fn_name)(*args[:1], *extra, *args[1:], out)  # extra: the scalar operand
        outs.append(read(mod, out))
    return outs


# ---- exports and the Array handle ----------------------------------------------------------------


def test_every_export_exists(be):
    missing = [name for name in EXPORTS if not hasattr(be, name)]
    assert not missing, f"{be.__name__} lacks {missing}"
    assert be.__device_name__ in ("numpy", "cpu", "cuda")


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_attributes(be, dtype):
    arr = be.Array(7, dtype=dtype)
    itemsize = np.dtype(STORAGE[dtype]).itemsize
    assert (arr.size, arr.dtype, arr.itemsize, arr.nbytes) == (7, dtype, itemsize, 7 * itemsize)
    assert isinstance(arr.ptr(), int) and arr.ptr() != 0
    assert be.Array(5).dtype == "float32"


def test_unknown_dtype_is_rejected(be):
    with pytest.raises(ValueError, match="unknown dtype 'float64'.*float32"):
        be.Array(3, dtype="float64")


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_and_strided_view(be, dtype):
    vals = sample(dtype, 24)
    arr = make(be, vals, dtype)
    assert_bits_equal(read(be, arr), vals, dtype)
    view = be.to_numpy(arr, (3, 4), (1, 6), 2)  # a transposed window starting at element 2
    assert view.dtype == STORAGE[dtype]
    want = np.array([[vals[2 + i + 6 * j] for j in range(4)] for i in range(3)])
    assert_bits_equal(np.array(view), want, dtype)


# ---- zero-copy views (CPU backends) --------------------------------------------------------------


def _cpu_only(be):
    if be.__device_name__ == "cuda":
        pytest.skip("CUDA to_numpy copies by contract")


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_numpy_is_a_zero_copy_view_that_keeps_the_array_alive(be, dtype):
    _cpu_only(be)
    arr = make(be, sample(dtype, 16, special=False), dtype)
    view = be.to_numpy(arr, (4, 4), (4, 1), 0)
    assert view.ctypes.data == arr.ptr()
    shifted = be.to_numpy(arr, (2,), (3,), 5)
    assert shifted.ctypes.data == arr.ptr() + 5 * arr.itemsize
    be.fill(arr, 3.0)
    want = to_storage(np.array([3.0]), dtype)[0]
    assert (view == want).all(), "writes through the backend must show in the view"
    del arr
    gc.collect()
    assert (view == want).all(), "the view must keep the buffer alive"


# ---- strided copies ------------------------------------------------------------------------------

VIEWS = [  # (shape, strides, offset) into a 60-element buffer
    ((3, 4), (4, 1), 0),
    ((4, 3), (1, 4), 1),
    ((2, 3, 2), (30, 2, 7), 3),
    ((5,), (-2, ), 20),
    ((2, 2, 2, 2), (16, -4, 2, 1), 8),
    ((1, 1, 6), (0, 0, 3), 2),
    ((), (), 7),
    ((2, 3, 4), (12, 4, 1), 0),  # compact: collapses to a single run
    ((3, 1, 4), (0, 9, 1), 5),  # broadcast rows
    ((2, 5, 3), (25, 5, 1), 4),  # contiguous rows, gapped blocks
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,strides,offset", VIEWS)
def test_compact_and_setitem_match_reference(be, ref, dtype, shape, strides, offset):
    vals = sample(dtype, 60, seed=1)
    n = int(np.prod(shape))
    results = []
    for mod in (be, ref):
        src = make(mod, vals, dtype)
        out = mod.Array(n, dtype=dtype)
        mod.compact(src, out, shape, strides, offset)
        target = make(mod, vals, dtype)
        mod.ewise_setitem(make(mod, sample(dtype, n, seed=2), dtype), target, shape, strides,
                          offset)
        filled = make(mod, vals, dtype)
        mod.scalar_setitem(n, -2.5, filled, shape, strides, offset)
        results.append([read(mod, out), read(mod, target), read(mod, filled)])
    for got, want in zip(*results):
        assert_bits_equal(got, want, dtype)
    expected = np.lib.stride_tricks.as_strided(
        vals[offset:], shape, [s * vals.itemsize for s in strides]).reshape(-1)
    assert_bits_equal(results[0][0], expected, dtype)


def test_out_of_bounds_views_are_rejected(be):
    if be.__device_name__ != "cpu":
        pytest.skip("bounds checks are a C++ backend guarantee")
    arr = be.Array(10)
    with pytest.raises((IndexError, ValueError), match="to_numpy"):
        be.to_numpy(arr, (3, 4), (4, 1), 0)
    with pytest.raises((IndexError, ValueError), match="compact"):
        be.compact(arr, be.Array(4), (4,), (-1,), 2)


# ---- elementwise -------------------------------------------------------------------------------

BINARY = ["ewise_add", "ewise_mul", "ewise_maximum", "ewise_eq", "ewise_ge"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", BINARY + ["ewise_div"])
def test_ewise_binary_bit_exact(be, ref, dtype, op):
    if op == "ewise_div" and dtype in INTS:
        pytest.skip("integer division is not part of the contract")
    x, y = sample(dtype, 3000, seed=3), sample(dtype, 3000, seed=4)
    y[5:40] = x[5:40]  # equal pairs for eq/ge
    got, want = run_both(be, ref, op, dtype, [x, y])
    assert_bits_equal(got, want, dtype)


SCALARS = [2.0, -3.0, 0.0, 7.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["scalar_add", "scalar_mul", "scalar_maximum", "scalar_eq",
                                "scalar_ge", "scalar_div"])
def test_scalar_ops_bit_exact(be, ref, dtype, op):
    if op == "scalar_div" and dtype in INTS:
        pytest.skip("integer division is not part of the contract")
    x = sample(dtype, 2000, seed=5)
    for val in SCALARS + ([0.1, 0.5, 1e30] if dtype in FLOATS else [300.0, -1000.0]):
        if dtype in INTS and op == "scalar_eq":
            info = np.iinfo(x.dtype)
            x[:3] = min(max(int(val), info.min), info.max)
        got, want = run_both(be, ref, op, dtype, [x], extra=(val,))
        assert_bits_equal(got, want, dtype)


def test_integer_add_mul_wrap_around(be):
    a = make(be, np.array([127, -128, 100], np.int8), "int8")
    out = be.Array(3, dtype="int8")
    be.ewise_add(a, a, out)
    np.testing.assert_array_equal(read(be, out), np.array([-2, 0, -56], np.int8))
    be.scalar_mul(a, 3.0, out)
    np.testing.assert_array_equal(read(be, out), np.array([127 * 3, -384, 300]).astype(np.int8))


def _float_values(storage, dtype):
    if dtype == "bfloat16":
        return (storage.astype(np.uint32) << 16).view(np.float32)
    return storage.astype(np.float32)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["ewise_log", "ewise_exp", "ewise_tanh", "scalar_power"])
def test_transcendentals_within_rounding(be, ref, dtype, op):
    # libm and numpy's SIMD routines differ in the last bit, so compare with a tolerance.
    rng = np.random.default_rng(6)
    vals = rng.uniform(0.05, 4.0, 4000).astype(np.float32)
    x = to_storage(vals, dtype)
    extras = [(v,) for v in (2.0, 3.0, 0.5, -1.0, 1.7)] if op == "scalar_power" else [()]
    tol = {"float32": 3e-6, "float16": 1e-3, "bfloat16": 8e-3}[dtype]
    for extra in extras:
        got, want = run_both(be, ref, op, dtype, [x], extra=extra)
        np.testing.assert_allclose(_float_values(got, dtype), _float_values(want, dtype),
                                   rtol=tol, atol=1e-30)


# ---- astype and fill ---------------------------------------------------------------------------


@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_astype_bit_exact(be, ref, src, dst):
    x = sample(src, 4000, seed=7)
    got, want = run_both(be, ref, "astype", src, [x], out_dtype=dst)
    assert_bits_equal(got, want, dst)


def test_astype_ties_and_saturation(be):
    vals = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 126.5, 127.5, 300.0, -300.0, np.nan, np.inf,
                     -np.inf], np.float32)
    out = be.Array(vals.size, dtype="int8")
    be.astype(make(be, vals, "float32"), out)
    want = [0, 2, 2, 0, -2, 126, 127, 127, -128, 0, 127, -128]
    np.testing.assert_array_equal(read(be, out), np.array(want, np.int8))
    out = be.Array(4, dtype="float16")
    be.astype(make(be, np.array([65519.0, 65520.0, 1e-8, 2049.0], np.float32), "float32"), out)
    np.testing.assert_array_equal(read(be, out), np.array([65504, np.inf, 0, 2048], np.float16))
    big = be.Array(2, dtype="bfloat16")
    be.astype(make(be, np.array([2**24 + 2**16 + 1, 257], np.int32), "int32"), big)
    # single rounding: 2**24 + 2**16 + 1 is above the tie, 257 is a tie that goes to even (256)
    np.testing.assert_array_equal(read(be, big), to_storage(np.array([2**24 + 2**17, 256.0]),
                                                            "bfloat16"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fill_bit_exact(be, ref, dtype):
    for val in [0.0, -2.5, 2.5, 1e10, -1e10, float("nan"), 1.0 / 3.0, 65519.999, 1 + 2.0**-9]:
        outs = []
        for mod in (be, ref):
            out = mod.Array(9, dtype=dtype)
            mod.fill(out, val)
            outs.append(read(mod, out))
        assert_bits_equal(outs[0], outs[1], dtype)


# ---- reductions and matmul ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce_size", [1, 5, 8, 127, 129, 300, 5000])
def test_reductions_bit_exact(be, ref, dtype, reduce_size):
    rows = 3
    x = sample(dtype, rows * reduce_size, seed=reduce_size, special=False)
    for op in ("reduce_sum", "reduce_max"):
        out_dtype = "int32" if (op == "reduce_sum" and dtype in INTS) else dtype
        outs = []
        for mod in (be, ref):
            out = mod.Array(rows, dtype=out_dtype)
            getattr(mod, op)(make(mod, x, dtype), out, reduce_size)
            outs.append(read(mod, out))
        assert_bits_equal(outs[0], outs[1], out_dtype)


def test_reduce_sum_of_one_long_row_matches(be, ref):
    x = sample("float32", 1 << 18, seed=9, special=False)
    outs = []
    for mod in (be, ref):
        out = mod.Array(1)
        mod.reduce_sum(make(mod, x, "float32"), out, x.size)
        outs.append(read(mod, out))
    assert_bits_equal(outs[0], outs[1], "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_every_dtype(be, ref, dtype):
    m, n, p = 7, 33, 18
    a, b = sample(dtype, m * n, seed=10, special=False), sample(dtype, n * p, seed=11,
                                                                 special=False)
    out_dtype = "int32" if dtype in INTS else dtype
    outs = []
    for mod in (be, ref):
        out = mod.Array(m * p, dtype=out_dtype)
        mod.matmul(make(mod, a, dtype), make(mod, b, dtype), out, m, n, p)
        outs.append(read(mod, out))
    if dtype in INTS:
        np.testing.assert_array_equal(outs[0], outs[1])
    else:  # summation order differs between BLAS and our kernels: one rounding of the output
        tol = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype]
        got, want = _float_values(outs[0], dtype), _float_values(outs[1], dtype)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_batched_is_matmul_item_by_item(be, dtype):
    """The optional batched entry: the same bits as one matmul per item, in either backend."""
    if not hasattr(be, "matmul_batched"):
        pytest.skip(f"{be.__name__} has no matmul_batched (NDArray loops over matmul)")
    count, m, n, p = 5, 6, 19, 9
    a = sample(dtype, count * m * n, seed=12, special=False)
    b = sample(dtype, count * n * p, seed=13, special=False)
    out_dtype = "int32" if dtype in INTS else dtype
    out = be.Array(count * m * p, dtype=out_dtype)
    be.matmul_batched(make(be, a, dtype), make(be, b, dtype), out, count, m, n, p)
    items = []
    for i in range(count):
        part = be.Array(m * p, dtype=out_dtype)
        be.matmul(make(be, a[i * m * n:(i + 1) * m * n], dtype),
                  make(be, b[i * n * p:(i + 1) * n * p], dtype), part, m, n, p)
        items.append(read(be, part))
    assert_bits_equal(read(be, out), np.concatenate(items), out_dtype)


def test_matmul_tiled_matches_plain(be):
    if not hasattr(be, "matmul_tiled"):
        pytest.skip(f"{be.__name__} has no matmul_tiled")
    t = be.__tile_size__
    m, n, p = 2 * t, 3 * t, t
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((m, n), np.float32), rng.standard_normal((n, p), np.float32)

    def tiled(x):
        r, c = x.shape
        return x.reshape(r // t, t, c // t, t).transpose(0, 2, 1, 3).copy()

    out = be.Array(m * p)
    be.matmul_tiled(make(be, tiled(a), "float32"), make(be, tiled(b), "float32"), out, m, n, p)
    np.testing.assert_allclose(read(be, out).reshape(m // t, p // t, t, t),
                               tiled(a @ b), rtol=1e-5, atol=1e-5)


# ---- memory accounting ------------------------------------------------------------------------


def test_memory_stats_count_exact_bytes(be):
    gc.collect()
    base = be.memory_stats()
    arrays = [be.Array(n, dtype=d) for n, d in [(10, "float32"), (3, "float16"), (7, "int8"),
                                                  (0, "int32"), (5, "bfloat16")]]
    now = be.memory_stats()
    assert now["current_bytes"] - base["current_bytes"] == sum(a.nbytes for a in arrays) == 63
    assert now["num_allocs"] - base["num_allocs"] == 5
    assert now["peak_bytes"] >= now["current_bytes"]
    del arrays
    gc.collect()
    after = be.memory_stats()
    assert after["current_bytes"] == base["current_bytes"]
    assert after["num_allocs"] == base["num_allocs"]
    assert after["peak_bytes"] >= base["current_bytes"] + 63
    be.reset_peak_memory()
    assert be.memory_stats()["peak_bytes"] == after["current_bytes"]


def test_no_leak_over_many_allocations(be):
    gc.collect()
    start = be.memory_stats()
    for i in range(10_000):
        arr = be.Array(64 + i % 7, dtype=DTYPES[i % 6])
        del arr
    gc.collect()
    end = be.memory_stats()
    assert (end["current_bytes"], end["num_allocs"]) == (start["current_bytes"],
                                                         start["num_allocs"])


def test_from_numpy_rejects_wrong_sizes(be):
    if be.__device_name__ != "cpu":
        pytest.skip("argument checks are a C++ backend guarantee")
    with pytest.raises(ValueError, match="from_numpy"):
        be.from_numpy(np.zeros(3, np.float32), be.Array(4))
    with pytest.raises(ValueError, match="from_numpy"):
        be.from_numpy(np.zeros((4, 4), np.float32)[:, :1], be.Array(4))


def _ulp_error(got, exact):
    with np.errstate(over="ignore"):
        want = exact.astype(np.float32)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite], want[~finite])  # inf, -inf, NaN positions agree
    spacing = np.spacing(np.abs(want[finite]).astype(np.float32))
    return np.abs(got[finite].astype(np.float64) - exact[finite]) / spacing


@pytest.mark.parametrize("op,fn,lo,hi", [
    ("ewise_exp", np.exp, -110.0, 90.0),
    ("ewise_log", np.log, -1.0, 3e38),
    ("ewise_tanh", np.tanh, -12.0, 12.0),
])
def test_transcendentals_against_float64(be, op, fn, lo, hi):
    rng = np.random.default_rng(13)
    vals = np.concatenate([
        rng.uniform(lo, hi, 3000), rng.uniform(-1, 1, 2000), 10.0 ** rng.uniform(-44, 38, 2000),
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 88.7, 88.8, -87.5, -103.0, 1.0, 0.625, -0.625],
    ]).astype(np.float32)
    out = be.Array(vals.size)
    getattr(be, op)(make(be, vals, "float32"), out)
    got = read(be, out)
    with np.errstate(all="ignore"):
        exact = fn(vals.astype(np.float64))
    assert _ulp_error(got, exact).max() <= 2.0  # measured: exp 0.97, log 0.71, tanh 1.3


@pytest.mark.parametrize("dtype", FLOATS)
def test_reductions_with_special_values(be, ref, dtype):
    rows, reduce_size = 6, 70
    vals = np.random.default_rng(14).standard_normal((rows, reduce_size)).astype(np.float32)
    vals[0, 3] = np.nan
    vals[1, 69] = np.nan  # in the scalar tail of a vector loop
    vals[2, :] = -np.inf
    vals[3, 10] = np.inf
    vals[4, 40] = 1e30
    x = to_storage(vals.reshape(-1), dtype)
    for op in ("reduce_sum", "reduce_max"):
        outs = []
        for mod in (be, ref):
            out = mod.Array(rows, dtype=dtype)
            getattr(mod, op)(make(mod, x, dtype), out, reduce_size)
            outs.append(read(mod, out))
        assert_bits_equal(outs[0], outs[1], dtype)
