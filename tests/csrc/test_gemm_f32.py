"""The packed fp32 GEMM (gemm_f32) and its chain twin (chain_gemm_f32): the NDArray sgemm's bits
for more than 4 rows on every panel remainder and across its K block of 256, the twin's bits for
any row count, every ISA and thread count, non-finite values, and a packed weight of K * N."""

import numpy as np
import pytest

kernels = pytest.importorskip("needle_qc._quant_cpu")
if not hasattr(kernels, "gemm_f32"):
    pytest.skip("_quant_cpu built before the packed fp32 GEMM", allow_module_level=True)


def _sgemm(a, w):
    import needle as ndl

    return (ndl.Tensor(a, device=ndl.cpu()) @ ndl.Tensor(w, device=ndl.cpu())).numpy()


def _data(m, k, n, seed=0):
    rng = np.random.default_rng(seed + m * 7919 + k * 31 + n)
    return (rng.standard_normal((m, k)).astype(np.float32),
            rng.standard_normal((k, n)).astype(np.float32))


def _bits(x):
    return x.view(np.uint32)


# every remainder of the three panel widths (8 for N <= 8, 16 up to 16, then 32)
N_VALUES = list(range(1, 17)) + [32 + r for r in range(32)] + [3375]


@pytest.mark.parametrize("n", N_VALUES)
def test_every_panel_remainder_gives_the_sgemm_bits(n):
    for m, k in [(5, 32), (20, 7)]:
        a, w = _data(m, k, n)
        packed = kernels.pack_gemm_f32(w)
        assert packed.size == k * n  # no padded columns stored
        np.testing.assert_array_equal(_bits(kernels.gemm_f32(a, packed, n)), _bits(_sgemm(a, w)))


@pytest.mark.parametrize("k", [1, 255, 256, 257, 512, 784, 1000])
@pytest.mark.parametrize("m", [5, 13, 40])
def test_k_split_at_256_gives_the_sgemm_bits(m, k):
    a, w = _data(m, k, 45)
    np.testing.assert_array_equal(_bits(kernels.gemm_f32(a, kernels.pack_gemm_f32(w), 45)),
                                  _bits(_sgemm(a, w)))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("k, n", [(3, 5), (300, 17), (784, 128), (32, 3375)])
def test_every_row_count_equals_the_chain_twin(m, k, n):
    """1-4 rows too (there the NDArray sgemm sums in another order: within 1e-6 of it)."""
    a, w = _data(m, k, n, seed=1)
    got = kernels.gemm_f32(a, kernels.pack_gemm_f32(w), n)
    np.testing.assert_array_equal(_bits(got), _bits(kernels.chain_gemm_f32(a, w)))
    want = _sgemm(a, w)
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


@pytest.mark.parametrize("isa", kernels.kernel_info()["available"])
@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_every_isa_and_thread_count_gives_the_same_bits(isa, threads, monkeypatch):
    a, w = _data(67, 300, 77)  # tiles for 3 threads, a K split, a compact last panel
    want = _sgemm(a, w)
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
    np.testing.assert_array_equal(_bits(kernels.gemm_f32(a, kernels.pack_gemm_f32(w), 77)),
                                  _bits(want))
    np.testing.assert_array_equal(_bits(kernels.chain_gemm_f32(a, w)), _bits(want))


def test_extreme_values_signed_zeros_and_non_finite_keep_the_bits():
    a, w = _data(11, 270, 21, seed=2)
    a[0] = 0.0
    w[:, 1] = -1.0  # 0 * -1 = -0: the chain from +0 keeps +0, as the sgemm
    a[1] *= 3e37  # sums overflow to inf
    a[2, 7] = np.inf
    a[3, 0] = -np.inf
    w[7, 3] = 0.0  # inf * 0 = NaN in row 2, column 3
    a[4] *= 1e-40  # subnormals
    with np.errstate(all="ignore"):
        want = _sgemm(a, w)
    got = kernels.gemm_f32(a, kernels.pack_gemm_f32(w), 21)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    assert np.isnan(got).any() and np.isinf(got).any()


def test_empty_shapes_and_bad_packed_weights():
    w = np.ones((3, 10), np.float32)
    packed = kernels.pack_gemm_f32(w)
    assert kernels.gemm_f32(np.zeros((0, 3), np.float32), packed, 10).shape == (0, 10)
    z = kernels.gemm_f32(np.ones((6, 0), np.float32), kernels.pack_gemm_f32(w[:0]), 10)
    np.testing.assert_array_equal(z, np.zeros((6, 10), np.float32))
    with pytest.raises(ValueError, match="packed.*K \\* N"):
        kernels.gemm_f32(np.zeros((2, 4), np.float32), packed, 10)


def _planted(x, seed):
    """``x`` with NaN, +-inf, -0, a subnormal and +-3e38 planted at spread positions."""
    flat = x.reshape(-1)
    for i, v in enumerate([np.nan, np.inf, -np.inf, -0.0, 1e-40, 3e38, -3e38]):
        flat[(seed + i * 7919) % flat.size] = v
    return x


def _assert_same_bits(got, want):
    """Bit for bit, NaN for NaN (a NaN's payload depends on which operand the FMA saw first)."""
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(_bits(got)[~nan], _bits(want)[~nan])


def _twin_layer(a, w, bias, relu):
    """The chain twin, then numpy's bias add and maximum (the bound layer's contract)."""
    with np.errstate(all="ignore"):
        y = kernels.chain_gemm_f32(a, w)
        if bias is not None:
            y = y + bias
        return np.maximum(y, np.float32(0)) if relu else y


# rows: every tile height 1..13 (tiles of 12, 6 or 3 rows and every remainder); columns: a
# compact last panel read in place, masked (5, 10, 20), whole panels (16, 64), whole panels and
# a compact tail (40, 70); K: around the block of 256 and two blocks plus one (the later blocks
# added onto y inside the tile)
@pytest.mark.parametrize("m", range(1, 14))
@pytest.mark.parametrize("k", [255, 256, 257, 513])
@pytest.mark.parametrize("n", [5, 10, 16, 20, 40, 64, 70])
def test_every_tile_remainder_with_extremes_equals_the_chain_twin(m, k, n):
    rng = np.random.default_rng(m * 10007 + k * 31 + n)
    a = _planted(rng.standard_normal((m, k)).astype(np.float32), m + n)
    w = _planted(rng.standard_normal((k, n)).astype(np.float32), k)
    bias = _planted(rng.standard_normal(n).astype(np.float32), n)
    packed = kernels.pack_gemm_f32(w)
    with np.errstate(all="ignore"):
        _assert_same_bits(kernels.gemm_f32(a, packed, n), kernels.chain_gemm_f32(a, w))
    for b, relu in [(bias, True), (None, True), (bias, False)]:
        got = kernels.GemmF32Layer(packed, k, n, b, relu)(a)
        _assert_same_bits(got, _twin_layer(a, w, b, relu))


@pytest.mark.parametrize("isa", kernels.kernel_info()["available"])
@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("m, k, n", [(64, 784, 256), (64, 257, 310), (13, 300, 96), (2, 513, 70)])
def test_thread_shares_keep_the_bits(m, k, n, isa, threads, monkeypatch):
    """Whole panels a worker (batch under the width) or whole row tiles: the same bits."""
    rng = np.random.default_rng(m + k + n)
    a = _planted(rng.standard_normal((m, k)).astype(np.float32), 3)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    want = _twin_layer(a, w, bias, True)
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
    packed = kernels.pack_gemm_f32(w)
    _assert_same_bits(kernels.GemmF32Layer(packed, k, n, bias, True)(a), want)
