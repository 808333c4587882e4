"""Lifetime stress for the C++ CPU backend: zero-copy views, GC of cycles, exit with live views."""

import gc
import subprocess
import sys

import numpy as np
import pytest

from needle.backend_ndarray import ndarray as nda

cpu = pytest.importorskip(
    "needle.backend_ndarray.ndarray_backend_cpu", reason="C++ CPU backend not built (make native)"
)

DTYPES = ["float32", "float16", "bfloat16", "int8", "uint8", "int32"]


class _Cycle:
    """An object in a reference cycle, so only the cyclic GC can free what it holds."""


def _strided_view(rng, dtype):
    a = nda.NDArray(rng.standard_normal((7, 9)).astype(np.float32), device=nda.cpu())
    a = a.astype(dtype)
    return a, a.permute((1, 0))[1:, ::2].storage_numpy()


@pytest.mark.parametrize("dtype", DTYPES)
def test_views_outlive_their_array_through_gc_cycles(dtype):
    gc.collect()
    before = cpu.memory_stats()["current_bytes"]
    rng = np.random.default_rng(0)
    views, expected = [], []
    for _ in range(40):
        a, view = _strided_view(rng, dtype)
        holder = _Cycle()
        holder.self, holder.arr, holder.view = holder, a, view
        expected.append(view.copy())
        views.append(view[::2])  # a view of the view: its base chain must keep the buffer alive
        del a, view, holder
    gc.collect()
    # Only the views reference the 40 buffers now: all must still be alive and counted.
    itemsize = views[0].itemsize
    assert cpu.memory_stats()["current_bytes"] - before == 40 * 7 * 9 * itemsize
    for got, want in zip(views, expected):
        np.testing.assert_array_equal(got, want[::2])
    del views, got, want  # the loop variables hold the last view too
    gc.collect()
    assert cpu.memory_stats()["current_bytes"] == before


def test_interpreter_exit_with_live_views_and_cycles_is_clean():
    code = (
        "import gc, numpy as np\n"
        "from needle.backend_ndarray import ndarray as nda\n"
        "from needle.backend_ndarray import ndarray_backend_cpu as cpu\n"
        "class C: pass\n"
        "keep = []\n"
        "for i in range(200):\n"
        "    a = nda.NDArray(np.arange(12, dtype=np.float32).reshape(3, 4), device=nda.cpu())\n"
        "    c = C(); c.c = c; c.a = a; c.v = a.permute((1, 0)).storage_numpy()\n"
        "    keep.append(c if i % 2 else c.v)\n"
        "    keep.append(cpu.to_numpy(cpu.Array(0, 'int8'), [0], [1], 0))\n"
        "gc.collect()\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"
