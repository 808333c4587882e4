"""Dtype extension: the table, astype rounding/saturation, bf16 bits, dtype errors, memory."""

import gc

import numpy as np
import pytest

import needle as ndl
from needle import backend_ndarray as nd
from needle.backend_ndarray.dtypes import (
    DTYPES,
    bf16_bits_to_fp32,
    check_dtype,
    fp32_to_bf16_bits,
    fp64_to_bf16_bits,
)
from tests.devices import DEVICES

ALL = list(DTYPES)
INTS = ["int8", "uint8", "int32"]
FLOATS = ["float32", "float16", "bfloat16"]


def test_dtype_table_facts():
    assert {n: d.itemsize for n, d in DTYPES.items()} == {
        "float32": 4,
        "float16": 2,
        "bfloat16": 2,
        "int8": 1,
        "uint8": 1,
        "int32": 4,
    }
    assert DTYPES["bfloat16"].storage == np.uint16
    assert (DTYPES["int8"].min, DTYPES["int8"].max) == (-128, 127)
    assert (DTYPES["uint8"].min, DTYPES["uint8"].max) == (0, 255)
    assert DTYPES["int32"].is_int and DTYPES["float16"].is_float


def test_check_dtype_lists_valid_names():
    assert check_dtype("int8") == "int8"
    assert check_dtype(np.float32) == "float32"
    msg = "unknown dtype 'float64'; valid dtypes: float32, float16, bfloat16, int8, uint8, int32"
    with pytest.raises(ValueError, match=msg):
        check_dtype("float64")
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        nd.array([1.0], dtype="int4")


def test_bf16_bits_round_to_nearest_even_and_keep_nan():
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf, 3.4e38, -0.0, 1e-40], np.float32)
    bits = fp32_to_bf16_bits(values)
    # 1 + 2^-8 is a tie -> even (1.0); 1 + 3*2^-8 is a tie -> even (1 + 2^-6); past max -> inf
    assert bits.tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F80, 0x7F80, 0x8000, 0x0001]
    nan_bits = fp32_to_bf16_bits(np.array([np.nan, -np.nan], np.float32))
    assert np.isnan(bf16_bits_to_fp32(nan_bits)).all()
    assert bf16_bits_to_fp32(np.array([0x3F80, 0xC020], np.uint16)).tolist() == [1.0, -2.5]


def test_int_to_bf16_has_no_double_rounding():
    # 2^24 + 2^16 + 1 is just above the bf16 tie between 2^24+0 and 2^24+2^17: rounds up.
    value = 2**24 + 2**16 + 1
    assert bf16_bits_to_fp32(fp64_to_bf16_bits(np.array([value])))[0] == 2**24 + 2**17
    a = nd.array(np.array([value], np.int32), dtype="int32")
    assert a.astype("bfloat16").numpy()[0] == 2**24 + 2**17


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("src", ALL)
@pytest.mark.parametrize("dst", ALL)
def test_astype_round_trip_of_exact_values(src, dst, device):
    values = np.array([0, 1, -1, 2, 5, 100, -100, 127], np.float32)
    if "uint8" in (src, dst):
        values = np.abs(values)
    a = nd.array(values, dtype=src, device=device)
    b = a.astype(dst)
    assert b.dtype == dst and b.shape == a.shape
    np.testing.assert_array_equal(b.astype(src).numpy().astype(np.float32), values)
    np.testing.assert_array_equal(b.numpy().astype(np.float32), values)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("src", FLOATS)
def test_float_to_int_rounds_half_to_even_and_saturates(src, device):
    values = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 300.0, -300.0, np.nan, np.inf, -np.inf])
    a = nd.array(values, dtype=src, device=device)
    assert a.astype("int8").numpy().tolist() == [0, 2, 2, 0, -2, -2, 127, -128, 0, 127, -128]
    assert a.astype("uint8").numpy().tolist() == [0, 2, 2, 0, 0, 0, 255, 0, 0, 255, 0]
    big = nd.array(np.array([3e9, -3e9]), dtype="float32", device=device)
    assert big.astype("int32").numpy().tolist() == [2**31 - 1, -(2**31)]


@pytest.mark.parametrize("device", DEVICES)
def test_float16_rounding_and_overflow(device):
    values = np.array([1 + 2**-11, 1 + 3 * 2**-11, 70000.0, -70000.0, 1e-8], np.float32)
    got = nd.array(values, device=device).astype("float16").numpy()
    assert got.dtype == np.float16
    assert got.tolist() == [1.0, 1 + 2**-9, np.inf, -np.inf, 0.0]


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_numpy_returns_float32_and_bits_stay_available(device):
    a = nd.array(np.array([1.0, -2.5, 3.0]), dtype="bfloat16", device=device)
    assert a.numpy().dtype == np.float32 and a.numpy().tolist() == [1.0, -2.5, 3.0]
    assert a.storage_numpy().tolist() == [0x3F80, 0xC020, 0x4040]
    assert a.nbytes == 6


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", INTS)
def test_integer_arithmetic_wraps_like_numpy(dtype, device):
    x = np.array([100, 120, 7, 0], dtype=dtype)
    y = np.array([100, 20, 9, 3], dtype=dtype)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    assert a.dtype == dtype
    np.testing.assert_array_equal((a + b).numpy(), x + y)
    np.testing.assert_array_equal((a * b).numpy(), x * y)
    np.testing.assert_array_equal((a * 3).numpy(), (x.astype(np.int64) * 3).astype(dtype))
    np.testing.assert_array_equal(a.maximum(b).numpy(), np.maximum(x, y))
    np.testing.assert_array_equal((a >= b).numpy(), (x >= y).astype(dtype))
    assert (a - b).dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", INTS)
def test_integer_matmul_and_sum_accumulate_in_int32(dtype, device):
    rng = np.random.default_rng(0)
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    x = rng.integers(lo, hi, (5, 70)).astype(dtype)
    y = rng.integers(lo, hi, (70, 3)).astype(dtype)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    out = a @ b
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out.numpy(), x.astype(np.int64) @ y.astype(np.int64))
    s = a.sum(axis=1)
    assert s.dtype == "int32"
    np.testing.assert_array_equal(s.numpy(), x.astype(np.int64).sum(1))
    assert a.max(axis=0).dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
def test_int32_matmul_wraps_around(device):
    x = np.full((1, 2), 2**30, np.int32)
    y = np.full((2, 1), 2, np.int32)
    out = nd.array(x, device=device) @ nd.array(y, device=device)
    assert out.numpy().tolist() == [[0]]  # 2 * 2^31 wraps to 0 in int32


@pytest.mark.parametrize("device", DEVICES)
def test_dtype_errors_name_op_and_dtypes(device):
    f = nd.array(np.ones((2, 2)), device=device)
    i = nd.array(np.ones((2, 2)), dtype="int8", device=device)
    with pytest.raises(TypeError, match="dtype mismatch in add: float32 vs int8"):
        f + i
    with pytest.raises(TypeError, match="dtype mismatch in matmul: int8 vs float32"):
        i @ f
    for op in (
        lambda: i / 2,
        lambda: i / i,
        lambda: i.log(),
        lambda: i.exp(),
        lambda: i.tanh(),
        lambda: i**2,
    ):
        with pytest.raises(TypeError, match="not defined for integer dtype int8"):
            op()
    with pytest.raises(TypeError, match="non-integral scalar 0.5"):
        i + 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_half_precision_math_is_fp32_rounded_once(device):
    x = np.random.default_rng(1).standard_normal(64).astype(np.float32)
    y = np.random.default_rng(2).standard_normal(64).astype(np.float32)
    a, b = (nd.array(v, dtype="float16", device=device) for v in (x, y))
    x16, y16 = x.astype(np.float16).astype(np.float32), y.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal((a * b).numpy(), (x16 * y16).astype(np.float16))
    np.testing.assert_array_equal((a / b).numpy(), (x16 / y16).astype(np.float16))


def _live(device):
    return device.memory_stats()["current_bytes"]


@pytest.mark.parametrize("device", DEVICES)
def test_memory_stats_are_exact_byte_counts(device):
    gc.collect()
    start = device.memory_stats()
    arrays = [nd.empty((n,), dtype=dt, device=device) for n, dt in zip(range(1, 7), ALL)]
    expected = sum(a.nbytes for a in arrays)
    stats = device.memory_stats()
    assert stats["current_bytes"] - start["current_bytes"] == expected
    assert stats["num_allocs"] - start["num_allocs"] == len(arrays)
    assert stats["peak_bytes"] >= stats["current_bytes"]
    del arrays
    gc.collect()
    assert _live(device) == start["current_bytes"]
    device.reset_peak_memory()
    assert device.memory_stats()["peak_bytes"] == device.memory_stats()["current_bytes"]


def test_memory_stats_do_not_leak_over_many_alloc_free_cycles():
    device = nd.cpu_numpy()
    gc.collect()
    before = _live(device)
    device.reset_peak_memory()
    for i in range(10_000):
        a = nd.full((16,), float(i), dtype=ALL[i % len(ALL)], device=device)
        b = a.astype("float32") + 1.0
        del a, b
    gc.collect()
    assert _live(device) == before
    assert device.memory_stats()["peak_bytes"] - before < 4096


def test_tensor_op_memory_is_released():
    device = ndl.cpu_numpy()
    gc.collect()
    before = _live(device)
    x = ndl.Tensor(np.ones((32, 32)), device=device)
    ((x @ x).sum()).backward()
    del x
    gc.collect()
    assert _live(device) == before


@pytest.mark.parametrize("device", DEVICES)
def test_int_to_int_astype_saturates(device):
    a = nd.array(np.array([300, -300, 200], np.int32), device=device)
    assert a.astype("int8").numpy().tolist() == [127, -128, 127]
    assert a.astype("uint8").numpy().tolist() == [255, 0, 200]
    b = nd.array(np.array([-1, 5], np.int8), device=device)
    assert b.astype("uint8").numpy().tolist() == [0, 5]
