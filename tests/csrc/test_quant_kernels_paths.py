"""int8 kernel paths added for speed (GEMV tiles, multi-panel tiles, small-Cin im2col, the
persistent thread pool) against the naive C++ twins, on every ISA path and thread count."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

q = pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

ISAS = q.kernel_info()["available"]
SEED = 1818
# N values hit 1..4 panels per multi-panel tile plus a partial panel; K values hit odd k-quads
# (the one-row kernel splits the depth in two chains) and K4 padding.
GEMV_SHAPES = [(m, k, n) for m in (1, 2, 3, 4) for k, n in ((1, 1), (7, 33), (13, 64), (97, 81))]
TILE_SHAPES = [(5, 9, 35), (6, 20, 48), (7, 31, 65), (8, 64, 129), (12, 5, 100), (100, 40, 97)]
THREADS = ["1", "2", "3"]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Forces one kernel path through NEEDLE_QC_ISA (every path this CPU has)."""
    monkeypatch.setenv("NEEDLE_QC_ISA", request.param)
    return request.param


@pytest.fixture(params=THREADS, ids=[f"t{t}" for t in THREADS])
def threads(request, monkeypatch):
    """Runs the kernel with 1, 2 and 3 threads (the split must not change any bit)."""
    monkeypatch.setenv("NEEDLE_NUM_THREADS", request.param)
    return int(request.param)


def rng(*salt):
    return np.random.default_rng([SEED, *salt])


def check_all_outputs(a, a_zp, w, w_zp, r):
    """s32, requant and f32 outputs of the optimized kernels equal the naive twins bit for bit."""
    K, N = w.shape
    pw = q.pack_weight_s8(w, w_zp)
    got = q.gemm_u8s8_s32(a, a_zp, pw)
    np.testing.assert_array_equal(got, q.gemm_u8s8_s32_naive(a, a_zp, w, w_zp))
    bias = r.integers(-3000, 3000, N).astype(np.int32)
    mult = (r.uniform(0.5, 2, N) / (K * 128)).astype(np.float32)
    got = q.gemm_u8s8_requant(a, a_zp, pw, bias, mult, 100, 0, 255, "uint8")
    expect = q.gemm_u8s8_requant_naive(a, a_zp, w, w_zp, bias, mult, 100, 0, 255, "uint8")
    np.testing.assert_array_equal(got, expect)
    scale = r.uniform(1e-3, 1e-2, N).astype(np.float32)
    fbias = r.standard_normal(N).astype(np.float32)
    got = q.gemm_u8s8_f32(a, a_zp, pw, scale, fbias, True)
    np.testing.assert_array_equal(got, q.gemm_u8s8_f32_naive(a, a_zp, w, w_zp, scale, fbias, True))


@pytest.mark.parametrize("M,K,N", GEMV_SHAPES)
def test_gemv_rows_match_naive(isa, threads, M, K, N):
    r = rng(M, K, N)
    a = r.integers(0, 256, (M, K)).astype(np.uint8)
    w = r.integers(-128, 128, (K, N)).astype(np.int8)
    w_zp = r.integers(-3, 4, N).astype(np.int32) if N % 2 else np.zeros(1, np.int32)
    check_all_outputs(a, int(r.integers(0, 256)), w, w_zp, r)


@pytest.mark.parametrize("M,K,N", TILE_SHAPES)
def test_multi_panel_tiles_match_naive(isa, threads, M, K, N):
    r = rng(M, K, N, 1)
    a = r.integers(0, 256, (M, K)).astype(np.uint8)
    w = r.integers(-128, 128, (K, N)).astype(np.int8)
    check_all_outputs(a, 131, w, r.integers(-2, 3, N).astype(np.int32), r)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 9])
def test_gemv_extremes_are_exact(isa, M):
    # 255 * -128 everywhere: the largest products, where an int16 intermediate would saturate;
    # K = 8195 -> |acc| ~ 2.7e8, far into int32 and across many depth quads of both chains.
    K, N = 8195, 37
    a = np.full((M, K), 255, np.uint8)
    w = np.full((K, N), -128, np.int8)
    w[::3] = 127
    pw = q.pack_weight_s8(w)
    got = q.gemm_u8s8_s32(a, 0, pw)
    expect = a[:1].astype(np.int64) @ w.astype(np.int64)
    np.testing.assert_array_equal(got, np.broadcast_to(expect, (M, N)))
    np.testing.assert_array_equal(got, q.gemm_u8s8_s32_naive(a, 0, w, np.zeros(1, np.int32)))


def test_gemv_large_k_and_n_splits_across_threads(isa, threads):
    # Big enough (K * N >> 1M multiply-adds) that the GEMV path really splits N over threads.
    r = rng(7)
    a = r.integers(0, 256, (1, 1031)).astype(np.uint8)
    w = r.integers(-128, 128, (1031, 1200)).astype(np.int8)
    pw = q.pack_weight_s8(w)
    expect = (a.astype(np.int64) - 9) @ w.astype(np.int64)
    np.testing.assert_array_equal(q.gemm_u8s8_s32(a, 9, pw), expect)


SMALL_CIN_CONVS = [  # (N, H, W, Cin, KH, KW, Cout, stride, padding)
    (3, 28, 28, 1, 3, 3, 16, 1, 1),  # the SmallCNN stem
    (2, 9, 7, 2, 3, 3, 5, 2, 1),
    (2, 6, 5, 3, 5, 5, 33, 1, 2),  # kernel wider than the image with padding
    (1, 4, 11, 1, 3, 5, 8, (1, 2), (0, 2)),
    (5, 3, 3, 3, 3, 3, 4, 1, 0),  # one output pixel per image, batch spread over threads
]


@pytest.mark.parametrize("geom", SMALL_CIN_CONVS, ids=[str(i) for i in range(len(SMALL_CIN_CONVS))])
def test_small_cin_conv_matches_naive(isa, threads, geom):
    n, h, w_, cin, kh, kw, cout, stride, pad = geom
    r = rng(*[v for v in geom if isinstance(v, int)])
    x = r.integers(0, 256, (n, h, w_, cin)).astype(np.uint8)
    w = r.integers(-128, 128, (kh, kw, cin, cout)).astype(np.int8)
    w_zp = r.integers(-2, 3, cout).astype(np.int32)
    pw = q.pack_conv_weight_s8(w, w_zp)
    got = q.conv2d_u8s8_s32(x, 201, pw, stride, pad)
    np.testing.assert_array_equal(got, q.conv2d_u8s8_s32_naive(x, 201, w, w_zp, stride, pad))
    bias = r.integers(-1000, 1000, cout).astype(np.int32)
    mult = np.full(cout, 1.0 / (kh * kw * cin * 64), np.float32)
    got = q.conv2d_u8s8_requant(x, 201, pw, stride, pad, bias, mult, 120, 120, 255)
    expect = q.conv2d_u8s8_requant_naive(x, 201, w, w_zp, stride, pad, bias, mult, 120, 120, 255)
    np.testing.assert_array_equal(got, expect)


def test_concurrent_python_threads_get_their_own_results(monkeypatch):
    # While one thread's job holds the pool, another's runs serially on its own thread.
    monkeypatch.setenv("NEEDLE_NUM_THREADS", "2")
    r = rng(11)
    cases = []
    for i in range(4):
        a = r.integers(0, 256, (64, 300)).astype(np.uint8)
        w = r.integers(-128, 128, (300, 160 + 16 * i)).astype(np.int8)
        cases.append((a, q.pack_weight_s8(w), (a.astype(np.int64) - 5) @ w.astype(np.int64)))
    errors = []

    def work(a, pw, expect):
        for _ in range(20):
            if not np.array_equal(q.gemm_u8s8_s32(a, 5, pw), expect):
                errors.append("mismatch")

    workers = [threading.Thread(target=work, args=case) for case in cases]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in workers), "a GEMM thread hung"
    assert errors == []


def run_script(body, timeout=120):
    """Runs body in a fresh interpreter with 2 kernel threads; returns the finished process."""
    env = dict(os.environ, NEEDLE_NUM_THREADS="2")
    env.pop("NEEDLE_QC_ISA", None)
    code = textwrap.dedent(
        """
        import os, sys
        import numpy as np
        from needle_qc import _quant_cpu as q
        r = np.random.default_rng(3)
        a = r.integers(0, 256, (200, 256)).astype(np.uint8)
        w = r.integers(-128, 128, (256, 256)).astype(np.int8)
        pw = q.pack_weight_s8(w)
        expect = (a.astype(np.int64) - 3) @ w.astype(np.int64)
        def gemm_ok():
            return np.array_equal(q.gemm_u8s8_s32(a, 3, pw), expect)
        assert gemm_ok()
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_interpreter_exits_cleanly_with_a_live_pool():
    proc = run_script("print('done')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_pool_survives_fork():
    # The child has none of the parent's worker threads: it must build a fresh pool, not wait on
    # the dead one. The parent's pool must keep working after the fork too.
    body = """
    import signal
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)  # a deadlock fails loudly instead of hanging the test
        ok = all(gemm_ok() for _ in range(3))
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert gemm_ok()
    print('done')
    """
    proc = run_script(body)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
