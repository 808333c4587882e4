"""needle_qc._quant_cuda against needle_qc._quant_cpu, bit for bit (GPU tests skip without a GPU).

Integer outputs (quantize, s32 / requantized GEMMs and convs) and the float output stage must be
bit-identical to the CPU kernels; only the weight-only fp32 GEMMs (a different summation order)
are compared with a tolerance. NEEDLE_QC_CUDA_TEST_STANDIN=needle_qc._quant_cpu runs the GPU tests
against another module with the same API (here the CPU kernels themselves), which exercises this
harness on machines without a GPU.
"""

import importlib
import os

import numpy as np
import pytest

cpu = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

RNG_SEED = 4321


def _import_cuda():
    """The CUDA module; skip when it was not built (no nvcc at build time)."""
    try:
        return importlib.import_module("needle_qc._quant_cuda")
    except ModuleNotFoundError as err:
        pytest.skip(f"needle_qc._quant_cuda is not built (no nvcc at build time?): {err}")


@pytest.fixture(scope="module")
def cu():
    """The module under test: _quant_cuda when a GPU is visible, else skip with the reason."""
    standin = os.environ.get("NEEDLE_QC_CUDA_TEST_STANDIN")
    if standin:
        return importlib.import_module(standin)
    mod = _import_cuda()
    if mod.device_count() == 0:
        pytest.skip("no CUDA GPU visible (needle_qc._quant_cuda.device_count() == 0)")
    return mod


def rng(*salt):
    return np.random.default_rng([RNG_SEED, *salt])


def activations(r, shape, signed):
    if signed:
        return r.integers(-128, 128, shape).astype(np.int8)
    return r.integers(0, 256, shape).astype(np.uint8)


def assert_same(got, expect):
    """Same dtype, shape and bits (float32 compared as raw bits, so -0.0 != 0.0)."""
    got, expect = np.asarray(got), np.asarray(expect)
    assert got.dtype == expect.dtype and got.shape == expect.shape
    if got.dtype == np.float32:
        got, expect = got.view(np.uint32), expect.view(np.uint32)
    np.testing.assert_array_equal(got, expect)


# --- without a GPU --------------------------------------------------------------------------------


def test_module_imports_and_counts_devices_without_raising():
    mod = _import_cuda()
    n = mod.device_count()
    assert isinstance(n, int) and n >= 0


# Every entry point that takes only numpy arrays; the GEMMs and convs need a packed weight,
# which pack_* cannot produce without a GPU.
NO_GPU_CALLS = {
    "kernel_info": (),
    "quantize_f32": (np.ones(3, np.float32), np.ones(1, np.float32), np.zeros(1, np.int32)),
    "dequantize": (np.ones(3, np.uint8), np.ones(1, np.float32), np.zeros(1, np.int32)),
    "dynamic_quantize_u8": (np.ones(3, np.float32),),
    "dynamic_quantize_rows": (np.ones((2, 3), np.float32),),
    "pack_weight_s8": (np.ones((4, 3), np.int8),),
    "pack_conv_weight_s8": (np.ones((1, 1, 4, 3), np.int8),),
    "pack_weight_f16": (np.ones((4, 3), np.float32),),
    "pack_weight_bf16": (np.ones((4, 3), np.float32),),
    "pack_weight_int4": (np.ones((4, 3), np.int8), np.ones((1, 3), np.float32), 4),
}


@pytest.mark.parametrize("name", sorted(NO_GPU_CALLS))
def test_without_gpu_every_call_raises_runtime_error(name):
    mod = _import_cuda()
    if mod.device_count() > 0:
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(RuntimeError, match="_quant_cuda: no (usable )?CUDA device"):
        getattr(mod, name)(*NO_GPU_CALLS[name])


def test_the_module_has_the_cpu_entry_points():
    mod = _import_cuda()
    names = (
        "quantize_f32 dequantize dynamic_quantize_u8 dynamic_quantize_rows pack_weight_s8 "
        "pack_conv_weight_s8 conv2d_u8s8_requant conv2d_u8s8_f32 conv2d_u8s8_s32 pack_weight_f16 "
        "pack_weight_bf16 pack_weight_int4 gemm_f32_wf16 gemm_f32_wbf16 gemm_f32_wint4 kernel_info"
    ).split()
    names += [f"gemm_{t}_{o}" for t in ("u8s8", "s8s8") for o in ("requant", "f32", "s32")]
    for name in names:
        assert hasattr(cpu, name) and hasattr(mod, name), name


# --- quantize / dequantize ------------------------------------------------------------------------


@pytest.mark.parametrize("out_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("n", [1, 255, 256, 257, 5000])
def test_quantize_per_tensor_matches_cpu(cu, out_dtype, n):
    x = (rng(n).standard_normal(n) * 3).astype(np.float32)
    s = np.array([0.0173], np.float32)
    for zp in (0, 3, -10) if out_dtype == "int8" else (0, 127, 128):
        z = np.array([zp], np.int32)
        assert_same(cu.quantize_f32(x, s, z, 0, out_dtype), cpu.quantize_f32(x, s, z, 0, out_dtype))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_quantize_and_dequantize_per_channel_match_cpu(cu, axis):
    r = rng(axis + 10)
    x = (r.standard_normal((5, 6, 37)) * 2).astype(np.float32)
    C = x.shape[axis]
    s = r.uniform(0.005, 0.05, C).astype(np.float32)
    z = r.integers(0, 256, C).astype(np.int32)
    q = cu.quantize_f32(x, s, z, axis, "uint8")
    assert_same(q, cpu.quantize_f32(x, s, z, axis, "uint8"))
    assert_same(cu.dequantize(q, s, z, axis), cpu.dequantize(q, s, z, axis))


def test_quantize_ties_trap_and_infinities_match_cpu(cu):
    s = np.array([0.25], np.float32)
    halves = (np.arange(-300, 300, dtype=np.float32) + 0.5) * s[0]  # exact .5 ties of x / s
    for zp in (0, 1, 3, 127, 128):
        z = np.array([zp], np.int32)
        assert_same(cu.quantize_f32(halves, s, z, 0), cpu.quantize_f32(halves, s, z, 0))
    # fbgemm's trap: x * (1/s) = 127.5 but the true quotient is 127.49999 -> 127.
    trap = np.full(40, 0.273939937, np.float32)
    s_trap = np.array([0.00214854861], np.float32)
    assert (cu.quantize_f32(trap, s_trap, np.array([0], np.int32), 0) == 127).all()
    x = np.array([np.inf, -np.inf, 1e30, -1e30, 3e38] * 10, np.float32)
    z = np.array([5], np.int32)
    assert_same(cu.quantize_f32(x, s, z, 0, "int8"), cpu.quantize_f32(x, s, z, 0, "int8"))
    with pytest.raises(ValueError, match="x.*NaN"):
        cu.quantize_f32(np.array([1.0, np.nan], np.float32), s, z, 0, "uint8")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32])
def test_dequantize_matches_cpu(cu, dtype):
    r = rng(7, np.dtype(dtype).itemsize)
    info = np.iinfo(dtype)
    qv = r.integers(max(info.min, -(2**28)), min(info.max, 2**28) + 1, (4, 9, 5)).astype(dtype)
    s = r.uniform(0.01, 0.1, 9).astype(np.float32)
    z = r.integers(-3, 4, 9).astype(np.int32) if dtype != np.uint8 else np.full(9, 7, np.int32)
    assert_same(cu.dequantize(qv, s, z, 1), cpu.dequantize(qv, s, z, 1))


def test_dynamic_quantize_u8_matches_cpu(cu):
    r = rng(8)
    cases = [
        r.standard_normal((3, 50)).astype(np.float32) * 4,
        r.uniform(0.5, 2, 100_000).astype(np.float32),  # many blocks in the min/max reduction
        -r.uniform(0.5, 2, 77).astype(np.float32),
        np.full(9, 3.0, np.float32),
        np.zeros(10, np.float32),
        np.zeros(0, np.float32),
    ]
    for x in cases:
        gq, gs, gz = cu.dynamic_quantize_u8(x)
        eq, es, ez = cpu.dynamic_quantize_u8(x)
        assert (np.float32(gs), gz) == (np.float32(es), ez)
        assert_same(gq, eq)
    with pytest.raises(ValueError, match="NaN"):
        cu.dynamic_quantize_u8(np.array([1.0, np.nan], np.float32))


@pytest.mark.parametrize("out_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("K", [1, 45, 256, 1000])
def test_dynamic_quantize_rows_matches_cpu(cu, out_dtype, K):
    x = rng(9, K).standard_normal((6, K)).astype(np.float32)
    x[2] = 0.0
    x[3] = np.abs(x[3])
    got, expect = cu.dynamic_quantize_rows(x, out_dtype), cpu.dynamic_quantize_rows(x, out_dtype)
    for g, e in zip(got, expect):
        assert_same(g, e)
    x[4, -1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        cu.dynamic_quantize_rows(x, out_dtype)


# --- int8 GEMM ------------------------------------------------------------------------------------

# The CUDA tile is 64 x 64 outputs with a 32-byte depth step: every remainder of M, N (mod 64)
# and K (mod 4 and mod 32) appears, plus shapes sampled from 1..67 and a few large ones.
FIXED_SHAPES = [  # (M, K, N)
    (1, 1, 1),
    (2, 3, 5),
    (63, 65, 64),
    (64, 64, 64),
    (65, 31, 63),
    (67, 33, 66),
    (17, 67, 1),
    (1, 1000, 200),
    (130, 96, 129),
    (257, 300, 70),
]
SAMPLED_SHAPES = [tuple(int(v) for v in rng(0).integers(1, 68, 3)) for _ in range(6)]
GEMM_SHAPES = FIXED_SHAPES + [s for s in SAMPLED_SHAPES if s not in FIXED_SHAPES]


def gemm_case(M, K, N, signed, salt):
    """Operands with odd and even zero points; per-column weight zero points on half the cases."""
    r = rng(M, K, N, signed, salt)
    a = activations(r, (M, K), signed)
    w = r.integers(-128, 128, (K, N)).astype(np.int8)
    a_zp = int(r.integers(-128, 128)) if signed else int(r.integers(0, 256))
    w_zp = r.integers(-3, 4, N).astype(np.int32) if (M + N + salt) % 2 else None
    return r, a, w, a_zp, w_zp


def kernels(mod, signed):
    p = "gemm_s8s8" if signed else "gemm_u8s8"
    return getattr(mod, p + "_s32"), getattr(mod, p + "_requant"), getattr(mod, p + "_f32")


@pytest.mark.parametrize("signed", [False, True], ids=["u8s8", "s8s8"])
@pytest.mark.parametrize("M,K,N", GEMM_SHAPES)
def test_gemm_s32_matches_cpu(cu, signed, M, K, N):
    _, a, w, a_zp, w_zp = gemm_case(M, K, N, signed, 0)
    pw_gpu, pw_cpu = cu.pack_weight_s8(w, w_zp), cpu.pack_weight_s8(w, w_zp)
    assert (pw_gpu.K, pw_gpu.N, pw_gpu.max_pair_abs) == (pw_cpu.K, pw_cpu.N, pw_cpu.max_pair_abs)
    assert_same(pw_gpu.colsum, pw_cpu.colsum)
    assert_same(pw_gpu.zero_point, pw_cpu.zero_point)
    assert_same(kernels(cu, signed)[0](a, a_zp, pw_gpu), kernels(cpu, signed)[0](a, a_zp, pw_cpu))


@pytest.mark.parametrize("signed", [False, True], ids=["u8s8", "s8s8"])
@pytest.mark.parametrize("M,K,N", GEMM_SHAPES)
def test_gemm_requant_matches_cpu(cu, signed, M, K, N):
    r, a, w, a_zp, w_zp = gemm_case(M, K, N, signed, 1)
    pw_gpu, pw_cpu = cu.pack_weight_s8(w, w_zp), cpu.pack_weight_s8(w, w_zp)
    bias = r.integers(-5000, 5000, N).astype(np.int32)
    out_dtype = "int8" if signed else "uint8"
    y_zp, (qmin, qmax) = (-7, (-128, 127)) if signed else (100, (0, 255))
    for mult in (  # per column, then per tensor
        (r.uniform(0.5, 2, N) / (K * 128)).astype(np.float32),
        np.array([1.0 / (K * 64)], np.float32),
    ):
        for lo in (qmin, y_zp):  # plain, then fused ReLU (lower clamp at y_zp)
            args = (bias, mult, y_zp, lo, qmax, out_dtype)
            got = kernels(cu, signed)[1](a, a_zp, pw_gpu, *args)
            assert_same(got, kernels(cpu, signed)[1](a, a_zp, pw_cpu, *args))


@pytest.mark.parametrize("signed", [False, True], ids=["u8s8", "s8s8"])
@pytest.mark.parametrize("M,K,N", GEMM_SHAPES[::2])
def test_gemm_f32_matches_cpu(cu, signed, M, K, N):
    r, a, w, _, w_zp = gemm_case(M, K, N, signed, 2)
    pw_gpu, pw_cpu = cu.pack_weight_s8(w, w_zp), cpu.pack_weight_s8(w, w_zp)
    lo, hi = (-128, 128) if signed else (0, 256)
    a_zp = r.integers(lo, hi, M).astype(np.int32)  # per-row zero points (per token)
    scale = r.uniform(1e-4, 1e-3, N).astype(np.float32)
    bias = r.standard_normal(N).astype(np.float32)
    row_scale = r.uniform(0.5, 2, M).astype(np.float32)
    for relu in (False, True):
        for rs, b in ((row_scale, bias), (None, None)):
            got = kernels(cu, signed)[2](a, a_zp, pw_gpu, scale, b, relu, rs)
            assert_same(got, kernels(cpu, signed)[2](a, a_zp, pw_cpu, scale, b, relu, rs))
    one = np.array([3e-4], np.float32)  # per-tensor scale
    assert_same(
        kernels(cu, signed)[2](a, 5, pw_gpu, one), kernels(cpu, signed)[2](a, 5, pw_cpu, one)
    )


def test_requant_exact_half_ties_round_to_even(cu):
    # K = 1, w = 1: acc = a - a_zp; multiplier 0.5 makes every odd acc an exact .5 tie.
    a = np.arange(0, 256, dtype=np.uint8).reshape(-1, 1)
    w = np.ones((1, 67), np.int8)
    pw_gpu, pw_cpu = cu.pack_weight_s8(w), cpu.pack_weight_s8(w)
    half = np.array([0.5], np.float32)
    for y_zp in (0, 1, 128):
        got = cu.gemm_u8s8_requant(a, 128, pw_gpu, None, half, y_zp, 0, 255)
        assert_same(got, cpu.gemm_u8s8_requant(a, 128, pw_cpu, None, half, y_zp, 0, 255))
        assert (got[[129, 131], 0].astype(int) - y_zp).tolist() == [0, 2]  # 0.5 -> 0, 1.5 -> 2


@pytest.mark.parametrize("K", [1024, 65536])
@pytest.mark.parametrize("a_value,w_value", [(255, -128), (255, 127), (0, -128)])
def test_extreme_values_match_cpu(cu, K, a_value, w_value):
    a = np.full((3, K), a_value, np.uint8)
    w = np.full((K, 17), w_value, np.int8)
    pw_gpu, pw_cpu = cu.pack_weight_s8(w), cpu.pack_weight_s8(w)
    got = cu.gemm_u8s8_s32(a, 0, pw_gpu)
    assert (got.astype(np.int64) == a_value * w_value * K).all()  # |Σ| up to 2.14e9 < 2^31
    assert_same(got, cpu.gemm_u8s8_s32(a, 0, pw_cpu))
    # Accumulators above 2^24 round when converted to fp32 (ties to even) before the multiply.
    mult = np.array([1.0 / (255 * 128 * K)], np.float32)
    got = cu.gemm_u8s8_requant(a, 0, pw_gpu, None, mult, 128, 0, 255)
    assert_same(got, cpu.gemm_u8s8_requant(a, 0, pw_cpu, None, mult, 128, 0, 255))
    s8 = np.full((2, K), -128, np.int8)
    assert_same(cu.gemm_s8s8_s32(s8, 0, pw_gpu), cpu.gemm_s8s8_s32(s8, 0, pw_cpu))


def test_int32_wraparound_matches_cpu(cu):
    # (255 - 0) * (-128 - 127) * 65536 = -4.26e9 does not fit int32: both wrap modulo 2^32.
    K = 65536
    a = np.full((2, K), 255, np.uint8)
    w = np.full((K, 3), -128, np.int8)
    zp = np.array([127], np.int32)
    got = cu.gemm_u8s8_s32(a, 0, cu.pack_weight_s8(w, zp))
    assert_same(got, cpu.gemm_u8s8_s32(a, 0, cpu.pack_weight_s8(w, zp)))
    assert int(got[0, 0]) == (255 * -255 * K + 2**31) % 2**32 - 2**31


# --- convolution ----------------------------------------------------------------------------------

CONVS = [  # (N, H, W, Cin, KH, KW, Cout, stride, padding)
    (1, 5, 5, 3, 3, 3, 4, 1, 1),
    (2, 7, 6, 5, 3, 3, 17, 2, 1),
    (1, 6, 6, 8, 1, 1, 16, 1, 0),
    (2, 4, 5, 33, 1, 1, 7, 1, 0),
    (1, 9, 8, 4, 5, 3, 6, (2, 1), (2, 0)),
    (3, 8, 8, 16, 3, 3, 65, 1, 0),
    (1, 12, 11, 7, 3, 3, 64, (1, 2), (1, 1)),
]


@pytest.mark.parametrize("geom", CONVS, ids=[str(i) for i in range(len(CONVS))])
def test_conv2d_matches_cpu(cu, geom):
    n, h, w_, cin, kh, kw, cout, stride, pad = geom
    r = rng(*[v for v in geom if isinstance(v, int)])
    x = r.integers(0, 256, (n, h, w_, cin)).astype(np.uint8)
    w = r.integers(-127, 128, (kh, kw, cin, cout)).astype(np.int8)
    w_zp = r.integers(-2, 3, cout).astype(np.int32) if cout % 2 else None
    pw_gpu, pw_cpu = cu.pack_conv_weight_s8(w, w_zp), cpu.pack_conv_weight_s8(w, w_zp)
    assert pw_gpu.kernel_shape == pw_cpu.kernel_shape == (kh, kw, cin, cout)
    for x_zp in (77, 128):
        got = cu.conv2d_u8s8_s32(x, x_zp, pw_gpu, stride, pad)
        assert_same(got, cpu.conv2d_u8s8_s32(x, x_zp, pw_cpu, stride, pad))
    bias = r.integers(-1000, 1000, cout).astype(np.int32)
    mult = np.full(cout, 1.0 / (kh * kw * cin * 64), np.float32)
    args = (stride, pad, bias, mult, 120, 120, 255)
    assert_same(
        cu.conv2d_u8s8_requant(x, 77, pw_gpu, *args), cpu.conv2d_u8s8_requant(x, 77, pw_cpu, *args)
    )
    scale = r.uniform(1e-3, 1e-2, cout).astype(np.float32)
    fbias = r.standard_normal(cout).astype(np.float32)
    args = (stride, pad, scale, fbias, True)
    assert_same(cu.conv2d_u8s8_f32(x, 77, pw_gpu, *args), cpu.conv2d_u8s8_f32(x, 77, pw_cpu, *args))


# --- weight-only ----------------------------------------------------------------------------------


def test_f16_pack_counts_match_cpu(cu):
    r = rng(15)
    edge = [65504, 65519.99, 65520, 7e4, -7e4, 6e-8, 2.98e-8, 1e-9, 6.1e-5, 0.0, -0.0]
    w = np.concatenate([r.standard_normal(200) * 100, edge]).astype(np.float32).reshape(-1, 1)
    got, expect = cu.pack_weight_f16(w), cpu.pack_weight_f16(w)
    assert (got.n_overflow, got.n_subnormal) == (expect.n_overflow, expect.n_subnormal)
    assert got.format == "float16" and (got.K, got.N) == (expect.K, expect.N)
    # Decode through a 1 x 1 identity GEMM: exact (up to the sign of zero, as 0 + -0 = 0), so the
    # stored halves must be numpy's.
    row = cu.gemm_f32_wf16(np.ones((1, 1), np.float32), cu.pack_weight_f16(w.reshape(1, -1)))
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(row.reshape(-1), w.reshape(-1).astype(np.float16))


@pytest.mark.parametrize(
    "M,K,N", [(1, 1, 1), (1, 64, 40), (3, 33, 17), (65, 16, 64), (5, 67, 130), (70, 200, 33)]
)
@pytest.mark.parametrize("fmt", ["f16", "bf16", "int4"])
def test_weight_only_gemm_close_to_cpu(cu, fmt, M, K, N):
    r = rng(M, K, N, len(fmt))
    x = r.standard_normal((M, K)).astype(np.float32)
    bias = r.standard_normal(N).astype(np.float32)
    if fmt == "int4":
        g = 8 if K > 8 else K
        wq = r.integers(-8, 8, (K, N)).astype(np.int8)
        scales = r.uniform(0.01, 0.1, (-(-K // g), N)).astype(np.float32)
        got = cu.gemm_f32_wint4(x, cu.pack_weight_int4(wq, scales, g), bias)
        expect = cpu.gemm_f32_wint4(x, cpu.pack_weight_int4(wq, scales, g), bias)
        wabs = np.abs(wq * np.repeat(scales, g, axis=0)[:K])
    else:
        w = r.standard_normal((K, N)).astype(np.float32)
        pack, gemm = f"pack_weight_{fmt}", f"gemm_f32_w{fmt}"
        got = getattr(cu, gemm)(x, getattr(cu, pack)(w), bias)
        expect = getattr(cpu, gemm)(x, getattr(cpu, pack)(w), bias)
        wabs = np.abs(w)
    assert got.dtype == np.float32 and got.shape == (M, N)
    # Both accumulate in fp32 in different orders: |error| <= 2 K eps Σ|x||w| (+ the bias add).
    tol = (np.abs(x) @ wabs.astype(np.float32)) * K * 2.4e-7 + 1e-6
    assert (np.abs(got - expect) <= tol).all()


# --- bad input ------------------------------------------------------------------------------------


def test_bad_arguments_raise_the_cpu_errors(cu):
    pw = cu.pack_weight_s8(np.ones((4, 3), np.int8))
    a = np.ones((2, 4), np.uint8)
    one = np.ones(1, np.float32)
    with pytest.raises(ValueError, match="^a: expected dtype uint8"):
        cu.gemm_u8s8_s32(a.astype(np.int32), 0, pw)
    with pytest.raises(ValueError, match="^a: has K = 5"):
        cu.gemm_u8s8_s32(np.ones((2, 5), np.uint8), 0, pw)
    with pytest.raises(ValueError, match="a_zero_point"):
        cu.gemm_u8s8_s32(a, 300, pw)
    with pytest.raises(ValueError, match="out_dtype"):
        cu.gemm_u8s8_requant(a, 0, pw, None, one, 0, 0, 255, "uint4")
    with pytest.raises(ValueError, match="multiplier"):
        cu.gemm_u8s8_requant(a, 0, pw, None, np.ones(2, np.float32), 0, 0, 255)
    with pytest.raises(ValueError, match="qmin/qmax"):
        cu.gemm_u8s8_requant(a, 0, pw, None, one, 0, 10, 5)
    with pytest.raises(ValueError, match="row_scale"):
        cu.gemm_u8s8_f32(a, 0, pw, one, None, False, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="scale"):
        cu.quantize_f32(np.ones(3, np.float32), np.zeros(1, np.float32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="w_q.*int4"):
        cu.pack_weight_int4(np.full((2, 2), 9, np.int8), np.ones((1, 2), np.float32), 2)
    with pytest.raises(ValueError, match="packed"):
        cu.gemm_f32_wbf16(
            np.ones((1, 2), np.float32), cu.pack_weight_f16(np.ones((2, 2), np.float32))
        )
    cw = cu.pack_conv_weight_s8(np.ones((3, 3, 2, 4), np.int8))
    with pytest.raises(ValueError, match="x: is smaller than the kernel"):
        cu.conv2d_u8s8_s32(np.ones((1, 2, 2, 2), np.uint8), 0, cw)
    with pytest.raises(ValueError, match="stride"):
        cu.conv2d_u8s8_s32(np.ones((1, 5, 5, 2), np.uint8), 0, cw, 0)
