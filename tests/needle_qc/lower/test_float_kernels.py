"""Native fp32 kernels (embedding, layer norm, direct NHWC conv) against their naive twins and
the op table's evaluation (bit for bit; the conv within 1e-5); lowered LMs vs the reference."""

import numpy as np
import pytest

import needle_qc as qc

kernels = pytest.importorskip("needle_qc._quant_cpu")
if not hasattr(kernels, "layer_norm_f32"):
    pytest.skip("_quant_cpu built before the sequence kernels", allow_module_level=True)


def _needle_eval(op, arrays, **attrs):
    """The op table's evaluation of ``op`` on ``arrays`` (what the interpreter computes)."""
    import needle as ndl
    from needle_qc.opset import get_op

    tensors = [ndl.Tensor(a, device=ndl.cpu()) for a in arrays]
    return get_op(op).evaluate(tensors, attrs, None).numpy()


@pytest.mark.parametrize("rows, dim", [(1, 1), (5, 7), (33, 32), (4, 129), (3, 300), (0, 8)])
def test_layer_norm_equals_twin_and_needle(rows, dim):
    rng = np.random.default_rng(rows * 1000 + dim)
    x = (rng.standard_normal((rows, dim)) * 3 + 2).astype(np.float32)
    w = rng.standard_normal(dim).astype(np.float32)
    b = rng.standard_normal(dim).astype(np.float32)
    got = kernels.layer_norm_f32(x, w, b, 1e-5)
    np.testing.assert_array_equal(got, kernels.layer_norm_f32_naive(x, w, b, 1e-5))
    if rows:
        np.testing.assert_array_equal(got, _needle_eval("layer_norm", [x, w, b], eps=1e-5))


def test_layer_norm_keeps_leading_dims_and_splits_rows_across_threads():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3000, 16)).astype(np.float32)  # > one thread's share of rows
    w, b = np.ones(16, np.float32), np.zeros(16, np.float32)
    got = kernels.layer_norm_f32(x, w, b, 1e-3)
    assert got.shape == x.shape
    np.testing.assert_array_equal(got, kernels.layer_norm_f32_naive(x, w, b, 1e-3))


def test_layer_norm_refuses_a_weight_of_the_wrong_length():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="weight"):
        kernels.layer_norm_f32(x, np.ones(3, np.float32), np.zeros(4, np.float32), 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_embedding_equals_twin_and_needle(dtype):
    rng = np.random.default_rng(2)
    table = rng.standard_normal((50, 24)).astype(np.float32)
    ids = rng.integers(0, 50, (7, 3)).astype(dtype)
    got = kernels.embedding_f32(ids, table)
    assert got.shape == (7, 3, 24)
    np.testing.assert_array_equal(got, kernels.embedding_f32_naive(ids, table))
    want = _needle_eval("embedding", [ids.astype(np.float32), table])
    np.testing.assert_array_equal(got, want)


def test_embedding_splits_many_rows_across_threads():
    rng = np.random.default_rng(3)
    table = rng.standard_normal((100, 8)).astype(np.float32)
    ids = rng.integers(0, 100, 10000).astype(np.float32)
    np.testing.assert_array_equal(kernels.embedding_f32(ids, table), table[ids.astype(int)])


@pytest.mark.parametrize("bad", [-1.0, 50.0, 2.5, np.nan])
def test_embedding_refuses_ids_needle_refuses(bad):
    table = np.zeros((50, 4), np.float32)
    ids = np.array([0, 1, bad], np.float32)
    with pytest.raises(ValueError, match=r"ids: entry 2 .* whole numbers in \[0, 50\)"):
        kernels.embedding_f32(ids, table)


@pytest.mark.parametrize("name", ["lstm_lm", "transformer_lm"])
@pytest.mark.parametrize("scheme", ["fp32", "int8"])
@pytest.mark.filterwarnings("ignore::UserWarning")  # a zero hidden state calibrates to one level
def test_lowered_language_models_equal_the_reference_target(name, scheme):
    entry = qc.zoo.get(name)
    graph = qc.trace(qc.zoo.load_pretrained(name), qc.zoo.example_input(name, 4),
                     batch_dims=entry.input.batch_dim)
    if scheme == "fp32":
        qc.run_passes(graph, qc.FLOAT_PIPELINE)
    else:
        graph = qc.quantize_pass(graph, qc.QConfig(weight="int8", activation="static"))
        qc.calibrate(graph, [qc.zoo.example_input(name, 4, seed=s) for s in (2, 3)],
                     progress=False)
    x = qc.zoo.example_input(name, 3, seed=1)
    cm = qc.compile(graph, tune_kernels=False)
    kernels_used = {step.active.kernel for step in cm.program.steps}
    assert not any(k.startswith("op-table eval (embedding") for k in kernels_used)
    ref = qc.compile(graph, target="reference", tune_kernels=False)
    got, want = np.asarray(cm(x)), np.asarray(ref(x))
    if name == "lstm_lm" and scheme == "fp32":
        # the float sigmoid/tanh builders are numpy's, Needle's exp rounds differently
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- direct fp32 conv

CONV_CASES = [  # n, h, w, cin, cout, k, stride, pad
    (2, 5, 6, 3, 5, 3, 1, 0), (1, 7, 7, 3, 40, 2, 2, 1), (3, 9, 9, 1, 16, 3, 1, 1),
    (2, 8, 8, 16, 32, 3, 2, 1), (1, 4, 4, 32, 70, 3, 1, 1), (2, 6, 5, 5, 8, 7, 1, 3),
    (1, 1, 1, 12, 9, 3, 1, 1), (3, 6, 6, 2, 16, 3, 1, 1), (1, 1, 1, 3, 8, 2, 1, 2),
    (2, 11, 11, 3, 16, 7, 4, 3),
]


@pytest.mark.parametrize("n, h, w, cin, cout, k, stride, pad", CONV_CASES)
@pytest.mark.parametrize("bias, relu", [(True, True), (False, False)])
def test_direct_conv_equals_twin_and_is_close_to_needle(n, h, w, cin, cout, k, stride, pad,
                                                         bias, relu):
    rng = np.random.default_rng(n * h * w + cin * cout + k)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    got = kernels.conv2d_nhwc_f32(x, kernels.pack_conv_f32(wt), k, cout, b, stride, pad, relu)
    np.testing.assert_array_equal(got, kernels.conv2d_nhwc_f32_naive(x, wt, b, stride, pad, relu))
    attrs = {"stride": stride, "padding": pad, "activation": "relu" if relu else None}
    want = _needle_eval("conv2d", [x.transpose(0, 3, 1, 2).copy(), wt] + ([b] if bias else []),
                        **attrs).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("isa", kernels.kernel_info()["available"])
def test_direct_conv_leaves_padding_taps_out_of_the_sum(isa, monkeypatch):
    # an inf weight that only ever meets the zero padding adds nothing (0 * inf would be NaN);
    # 1e30 on the taps that do meet the input keeps the extremes on the summed path
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)
    wt[0, :] = np.inf  # kernel row 0 sees only padding for output row 0
    wt[1:, 1:] *= 1e30
    got = kernels.conv2d_nhwc_f32(x, kernels.pack_conv_f32(wt), 3, 8, None, 1, 1, False)
    want = kernels.conv2d_nhwc_f32_naive(x, wt, None, 1, 1, False)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got[:, 0]).all() and not np.isfinite(got[:, 1:]).all()


ROW_CASES = [  # n, h, w, cin, cout: interior rows of odd widths, each row path panel width
    (1, 28, 28, 1, 16), (2, 7, 15, 1, 8), (3, 5, 13, 2, 24), (1, 9, 15, 3, 32), (2, 6, 21, 4, 16),
    (1, 3, 5, 2, 32), (2, 5, 7, 3, 40),
    (3, 4, 8, 4, 8),  # interior rows shorter than a tile: the tiles alone
]


@pytest.mark.parametrize("n, h, w, cin, cout", ROW_CASES)
@pytest.mark.parametrize("bias, relu", [(True, True), (True, False), (False, True), (False, False)])
def test_small_cin_row_kernel_equals_twin_bit_for_bit(n, h, w, cin, cout, bias, relu):
    # the 3x3 stride-1 interior of a Cin <= 4 conv runs the row kernel, the border the tiles;
    # extremes: overflow to inf, NaN, signed zeros, subnormals
    rng = np.random.default_rng(n * h * w + cin * cout)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    x.flat[rng.integers(0, x.size, 6)] = [3e38, -3e38, np.nan, -0.0, 0.0, 1e-41]
    x[0, h // 2] = -0.0  # a whole row of -0 products: the sum's zero sign rides on the start
    wt[1, 1, 0, : cout // 2] *= 1e30
    got = kernels.conv2d_nhwc_f32(x, kernels.pack_conv_f32(wt), 3, cout, b, 1, 1, relu)
    want = kernels.conv2d_nhwc_f32_naive(x, wt, b, 1, 1, relu)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # zero signs too


def test_direct_conv_refuses_a_weight_packed_for_another_shape():
    packed = kernels.pack_conv_f32(np.zeros((3, 3, 4, 8), np.float32))
    with pytest.raises(ValueError, match="packed"):
        kernels.conv2d_nhwc_f32(np.zeros((1, 5, 5, 3), np.float32), packed, 3, 8)


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("shape", [(2, 8, 20, 32), (1, 3, 5, 7), (3, 1, 1, 4)])
def test_attention_equals_needle_bit_for_bit(causal, shape):
    import needle as ndl
    from needle_qc.lower.attention import _Backend, attention_f32
    from needle_qc.opset import get_op

    rng = np.random.default_rng(sum(shape))
    q, k, v = (rng.standard_normal(shape).astype(np.float32) * 2 for _ in range(3))
    result, probs = attention_f32(_Backend(ndl.cpu().mod), q, k, v, causal)
    tensors = [ndl.Tensor(a, device=ndl.cpu()) for a in (q, k, v)]
    want = get_op("multi_head_attention").evaluate(tensors, {"causal": causal}, None)
    np.testing.assert_array_equal(result, want[0].numpy())
    np.testing.assert_array_equal(probs, want[1].numpy())


@pytest.mark.parametrize("isa", kernels.kernel_info()["available"])
@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_direct_conv_paths_and_thread_counts_give_the_same_bits(isa, threads, monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 30, 30, 5)).astype(np.float32)  # enough tiles for 3 threads
    wt = rng.standard_normal((3, 3, 5, 21)).astype(np.float32)
    b = rng.standard_normal(21).astype(np.float32)
    want = kernels.conv2d_nhwc_f32_naive(x, wt, b, 1, 1, True)
    monkeypatch.setenv("NEEDLE_QC_ISA", isa)
    monkeypatch.setenv("NEEDLE_NUM_THREADS", threads)
    got = kernels.conv2d_nhwc_f32(x, kernels.pack_conv_f32(wt), 3, 21, b, 1, 1, True)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("m", [5, 16, 33])
@pytest.mark.parametrize("k, n", [(1, 8), (31, 16), (32, 64), (256, 128)])
def test_direct_gemm_gives_the_ndarray_sgemm_bits_above_four_rows(m, k, n):
    import needle as ndl
    from needle_qc.lower.conv_f32 import direct_gemm_f32

    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    want = (ndl.Tensor(a, device=ndl.cpu()) @ ndl.Tensor(w, device=ndl.cpu())).numpy()
    np.testing.assert_array_equal(direct_gemm_f32(w)(a), want)


def test_fp32_matmul_takes_the_direct_gemm_past_its_k_block_and_for_any_column_count():
    from needle_qc.lower.float_ops import F32Matmul

    for k, n in [(256, 32), (257, 32), (784, 128), (32, 3), (32, 3375)]:
        mm = F32Matmul(np.zeros((k, n), np.float32))
        assert mm.direct is not None and mm.nbytes == k * n * 4  # no padded columns kept
