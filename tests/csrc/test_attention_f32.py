"""The fused fp32 attention kernel's padded-block paths against its naive twin, the op-by-op
lowering on Needle's own NDArray kernels (needle_qc.lower.attention.attention_f32), bit for bit:
every Tk remainder mod 8 (padded logits rows, the 8-row sum lanes, Tk < 8 and > 128 sums), D mod
8 (padded v and result rows), Tq mod 8 and <= 4 (row groups, Needle's small-m products), Tq != Tk,
K blocks past 256, causal or not, B * H = 1; and extreme inputs (+-3e38, -0, subnormals, inf, a
NaN that hands the call back)."""

import numpy as np
import pytest

kernels = pytest.importorskip("needle_qc._quant_cpu")
if not hasattr(kernels, "attention_f32"):
    pytest.skip("_quant_cpu built before the fused attention", allow_module_level=True)
if not kernels.attention_f32_supported(1, 1, 1, 1, 1):
    pytest.skip("the NDArray backend's AVX2 kernels are not in use here", allow_module_level=True)


def _twin(q, k, v, causal):
    import needle as ndl
    from needle_qc.lower.attention import _Backend, attention_f32

    with np.errstate(all="ignore"):
        return attention_f32(_Backend(ndl.cpu().mod), q, k, v, causal)


def _qkv(b, h, tq, tk, d, scale=1.0, seed=0):
    rng = np.random.default_rng(seed + 1000 * tq + 10 * tk + d)
    q = rng.standard_normal((b, h, tq, d)) * scale
    k, v = (rng.standard_normal((b, h, tk, d)) * scale for _ in range(2))
    return [a.astype(np.float32) for a in (q, k, v)]


def _assert_same_bits(q, k, v, causal):
    got = kernels.attention_f32(q, k, v, causal)
    want = _twin(q, k, v, causal)
    assert got is not None
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tk", [1, 2, 5, 7, 8, 9, 12, 15, 16, 17, 20, 23, 24, 25, 31, 33])
def test_every_key_count_remainder(tk, causal):
    _assert_same_bits(*_qkv(2, 3, 20, tk, 32, scale=2.0), causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 40])
def test_every_head_dim_remainder(d, causal):
    _assert_same_bits(*_qkv(1, 2, 11, 13, d, scale=2.0), causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 25])
def test_every_query_count_remainder_and_the_small_m_path(tq, causal):
    _assert_same_bits(*_qkv(1, 2, tq, 19, 16, scale=2.0), causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [
    (1, 1, 20, 20, 32),   # B * H = 1
    (16, 8, 20, 20, 32),  # transformer_lm
    (1, 1, 9, 130, 5),    # Tk > 128: the sums' pairwise split; Tk > Tq
    (1, 1, 6, 300, 8),    # probs @ v over two K blocks of 256
    (1, 1, 9, 10, 260),   # q @ k^T over two K blocks of 256
    (2, 1, 30, 6, 8),     # Tq > Tk: whole masked rows when causal
])
def test_shapes_off_the_common_path(shape, causal):
    _assert_same_bits(*_qkv(*shape), causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [1e-38, 1e-20, 1e3, 1e18, 1e19])
def test_extreme_magnitudes(scale, causal):
    # 1e-38: subnormal products; 1e18 / 1e19: logits near or past float32's limit, inf - inf
    _assert_same_bits(*_qkv(2, 2, 13, 20, 9, scale=scale), causal)


@pytest.mark.parametrize("causal", [False, True])
def test_float_max_zeros_and_subnormals_in_the_operands(causal):
    q, k, v = _qkv(1, 2, 12, 17, 8)
    q[0, 0, :, 0] = 3e38
    k[0, 0, ::2, 0] = -3e38  # logits of +-inf and near -FLT_MAX
    k[0, 0, 1::2, 1] = -0.0
    q[0, 1] = -0.0
    v[0, 1, :, :4] = 1e-45
    v[0, 0, 3] = -3e38
    _assert_same_bits(q, k, v, causal)


def test_masked_logits_above_the_exp_floor_get_their_own_exp():
    # d = 1, q = 1: logits are k. Rows 0-2 see columns 0..i+10 with -3.4e38 and mask the
    # 3.3e38s past them: 3.3e38 + -FLT_MAX ~ -1e37 beats -3.4e38, so masked columns are the max
    # and get exp near 1 (no shortcut); later rows take the floor path
    q = np.ones((1, 1, 10, 1), np.float32)
    k = np.full((1, 1, 20, 1), -3.4e38, np.float32)
    k[0, 0, 13:, 0] = 3.3e38 - np.arange(7) * 1e36
    v = np.arange(20, dtype=np.float32).reshape(1, 1, 20, 1)
    got = kernels.attention_f32(q, k, v, True)
    assert got[1][0, 0, 0, 13] > 0.1
    _assert_same_bits(q, k, v, True)


@pytest.mark.parametrize("where", ["q", "k", "v"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_give_none_or_the_same_bits(where, value):
    q, k, v = _qkv(2, 2, 9, 20, 8)
    {"q": q, "k": k, "v": v}[where][1, 0, 3, 5] = value
    if value != value:  # a NaN in the logits or v: numpy picks which NaN, the caller goes op by op
        assert kernels.attention_f32(q, k, v, True) is None
    else:  # inf logits give inf - inf = NaN rows; inf in v meets probabilities of 0: NaN
        _assert_same_bits(q, k, v, True)


def test_a_nan_logit_in_a_masked_column_still_hands_the_call_back():
    q, k, v = _qkv(1, 1, 10, 10, 8)
    q[0, 0, 0, 0] = np.inf  # row 0 masks columns 1..9: inf * 0 = NaN there
    k[0, 0, 9, 0] = 0.0
    assert kernels.attention_f32(q, k, v, True) is None
