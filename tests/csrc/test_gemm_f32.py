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
