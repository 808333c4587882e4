"""The fused fp32 attention kernel against the op-by-op lowering it replaces (Needle's NDArray
kernels, numpy's max and arithmetic), bit for bit: shapes with 1-5 query rows (Needle's 1-4 row
GEMM path), odd D, Tk != Tq, causal or not, extreme and non-finite logits, strided inputs, every
ISA and thread count; and the lowered transformer_lm with and without it."""

import numpy as np
import pytest

import needle_qc as qc

kernels = pytest.importorskip("needle_qc._quant_cpu")
if not hasattr(kernels, "attention_f32"):
    pytest.skip("_quant_cpu built before the fused attention", allow_module_level=True)
if not kernels.attention_f32_supported(1, 1, 1, 1, 1):
    pytest.skip("the NDArray backend's AVX2 kernels are not in use here", allow_module_level=True)

SHAPES = [  # (B, H, Tq, Tk, D)
    (1, 8, 20, 20, 32), (2, 3, 5, 5, 7), (1, 2, 4, 9, 9), (2, 2, 3, 3, 5), (1, 1, 2, 7, 3),
    (1, 3, 1, 1, 4), (1, 1, 1, 6, 1), (3, 2, 17, 33, 33), (1, 1, 9, 4, 16), (1, 2, 6, 300, 3),
    (1, 1, 13, 12, 300),
]


def _backend():
    import needle as ndl
    from needle_qc.lower.attention import _Backend

    return _Backend(ndl.cpu().mod)


def _unfused(q, k, v, causal):
    from needle_qc.lower.attention import attention_f32

    return attention_f32(_backend(), q, k, v, causal)


def _qkv(shape, scale=1.0, seed=0):
    b, h, tq, tk, d = shape
    rng = np.random.default_rng(seed + tq * 100 + tk * 10 + d)
    q = rng.standard_normal((b, h, tq, d)) * scale
    k, v = (rng.standard_normal((b, h, tk, d)) * scale for _ in range(2))
    return [a.astype(np.float32) for a in (q, k, v)]


def _assert_bits(got, want):
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_attention_equals_the_op_by_op_lowering_bit_for_bit(shape, causal):
    q, k, v = _qkv(shape, scale=3.0)
    _assert_bits(kernels.attention_f32(q, k, v, causal), _unfused(q, k, v, causal))


@pytest.mark.parametrize("scale", [1e-30, 1e6, 1e17])
@pytest.mark.parametrize("causal", [False, True])
def test_extreme_finite_logits_and_masked_rows_keep_the_bits(scale, causal):
    # 1e17: logits near the float32 limit, so -FLT_MAX + logit overflows to -inf in masked
    # places; Tq > Tk masks whole rows of the causal product
    for shape in [(1, 2, 7, 5, 9), (2, 1, 5, 5, 16), (1, 1, 3, 2, 4)]:
        q, k, v = _qkv(shape, scale)
        with np.errstate(all="ignore"):
            want = _unfused(q, k, v, causal)
        _assert_bits(kernels.attention_f32(q, k, v, causal), want)


def test_a_masked_logit_near_float_max_can_still_be_the_row_max():
    # d = 1, q = 1: logits are k. Row 0 masks column 1: 3.3e38 + -FLT_MAX = -1e37 beats the
    # unmasked -3.4e38, so a masked column gets exp(0) = 1 (no shortcut for masked columns)
    q = np.ones((1, 1, 2, 1), np.float32)
    k = np.array([-3.4e38, 3.3e38], np.float32).reshape(1, 1, 2, 1)
    v = np.array([2.0, 3.0], np.float32).reshape(1, 1, 2, 1)
    got = kernels.attention_f32(q, k, v, True)
    assert got[1][0, 0, 0, 1] == 1.0
    with np.errstate(all="ignore"):
        _assert_bits(got, _unfused(q, k, v, True))


def test_infinite_logits_give_the_same_nans():
    q, k, v = _qkv((1, 2, 6, 6, 5), 1e19)  # products overflow: rows with inf - inf
    q[0, 1, 2, 0] = np.inf
    with np.errstate(all="ignore"):
        want = _unfused(q, k, v, True)
    got = kernels.attention_f32(q, k, v, True)
    assert got is not None and np.isnan(got[1]).any()
    _assert_bits(got, want)


@pytest.mark.parametrize("where", ["q", "v"])
def test_a_nan_input_hands_the_call_back_to_the_op_by_op_path(where):
    from needle_qc.lower.attention import fused_attention_f32

    q, k, v = _qkv((1, 2, 5, 5, 8))
    {"q": q, "v": v}[where][0, 1, 2, 3] = np.nan
    assert kernels.attention_f32(q, k, v, True) is None  # numpy's max picks the NaN bits
    run, _ = fused_attention_f32(True, _backend(), (5, 5, 8))
    with np.errstate(all="ignore"):
        _assert_bits(run(q, k, v), _unfused(q, k, v, True))


def test_strided_views_are_read_in_place_with_the_same_bits():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20, 8, 32)).astype(np.float32)  # (B, T, H, D) projections
    q, k = x.transpose(0, 2, 1, 3), (x * 0.5).transpose(0, 2, 1, 3)
    v = np.ascontiguousarray(k)[..., ::-1]  # negative last-axis stride: copied first
    _assert_bits(kernels.attention_f32(q, k, v, True),
                 _unfused(*(np.ascontiguousarray(a) for a in (q, k, v)), True))


@pytest.mark.parametrize("isa", kernels.kernel_info()["available"])
@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_every_isa_and_thread_count_gives_the_same_bits(isa, threads, monkeypatch):
    q, k, v = _qkv((3, 4, 20, 20, 32))
    want = _unfused(q, k, v, True)
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
    _assert_bits(kernels.attention_f32(q, k, v, True), want)


def test_shapes_needle_would_thread_or_empty_ones_are_refused_and_run_op_by_op():
    from needle_qc.lower.attention import FUSED, UNFUSED, fused_attention_f32

    assert kernels.attention_f32_supported(16, 8, 20, 20, 32)
    assert not kernels.attention_f32_supported(1, 1, 128, 128, 64)  # 2 m n k >= 2e6
    assert not kernels.attention_f32_supported(1, 1, 0, 4, 4)
    q, k, v = _qkv((1, 1, 128, 128, 64))
    with pytest.raises(ValueError, match="attention_f32_supported"):
        kernels.attention_f32(q, k, v)
    run, label = fused_attention_f32(False, _backend(), (128, 128, 64))
    assert label == UNFUSED
    _assert_bits(run(q, k, v), _unfused(q, k, v, False))
    run, label = fused_attention_f32(False, _backend())  # shapes decided per call
    assert label[0] == FUSED[0] + " where supported"
    _assert_bits(run(q, k, v), _unfused(q, k, v, False))


def test_bad_operands_are_named():
    q, k, v = _qkv((1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="q"):
        kernels.attention_f32(q.astype(np.float64), k, v)
    with pytest.raises(ValueError, match="k/v"):
        kernels.attention_f32(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        kernels.attention_f32(q[0], k, v)


@pytest.mark.parametrize("stage", ["float", "int8"])
def test_lowered_transformer_runs_the_fused_kernel_with_the_op_by_op_numbers(stage, monkeypatch):
    name = "transformer_lm"
    model, entry = qc.zoo.load_pretrained(name), qc.zoo.get(name)
    g = qc.trace(model, qc.zoo.example_input(name, 8), batch_dims=entry.input.batch_dim)
    if stage == "float":
        qc.run_passes(g, qc.FLOAT_PIPELINE)
    else:
        g = qc.quantize_pass(g, qc.QConfig(weight="int8", activation="static",
                                           weight_granularity="per_channel"))
        qc.calibrate(g, [qc.zoo.example_input(name, 8, seed=s) for s in (2, 3)], progress=False)
    x = qc.zoo.example_input(name, 3, seed=1)
    fused = qc.compile(g, tune_kernels=False)
    assert "C++ fused" in str(fused.explain())
    import needle_qc.lower.attention as attention

    monkeypatch.setattr(attention, "_kernels", lambda: None)  # the op-by-op lowering
    plain = qc.compile(g, tune_kernels=False)
    assert "C++ fused" not in str(plain.explain())
    np.testing.assert_array_equal(np.asarray(fused(x)), np.asarray(plain(x)))


def test_without_the_backends_simd_kernels_the_fused_kernel_steps_aside():
    """NEEDLE_CPU_NO_SIMD puts the NDArray backend on its portable kernels (other sums, libm
    exp): the fused kernel must not claim their bits (read once per process: a subprocess)."""
    import os
    import subprocess
    import sys

    code = ("from needle_qc import _quant_cpu as k; "
            "from needle_qc.lower.attention import fused_attention_f32, UNFUSED; "
            "assert not k.attention_f32_supported(1, 1, 4, 4, 4); "
            "assert fused_attention_f32(True, None, (4, 4, 4))[1] == UNFUSED")
    env = dict(os.environ, NEEDLE_CPU_NO_SIMD="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
