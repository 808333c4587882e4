"""The shared pool's claimed tasks: late or oversubscribed workers never change a bit or hang."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("needle_qc._quant_cpu", reason="native module not built (make native)")

SCRIPT = """
import threading, time
import numpy as np
from needle_qc import _quant_cpu as q

r = np.random.default_rng(5)
a = r.integers(0, 256, (256, 512)).astype(np.uint8)
w = r.integers(-128, 128, (512, 384)).astype(np.int8)
pw = q.pack_weight_s8(w)
expect = (a.astype(np.int64) - 7) @ w.astype(np.int64)
x = r.standard_normal((8, 14, 14, 32)).astype(np.float32)
wc = r.standard_normal((3, 3, 32, 32)).astype(np.float32)
pc = q.pack_conv_f32(wc)
conv0 = q.conv2d_nhwc_f32(x, pc, 3, 32, None, 1, 1, False)

stop = False
def busy():  # keeps a core taken, so pool workers often wake after the caller took their task
    while not stop:
        sum(range(1000))
hog = threading.Thread(target=busy)
hog.start()
bad = 0
try:
    for i in range(300):
        if i % 50 == 0:
            time.sleep(0.01)  # idle gaps: workers fall asleep on the condition variable
        bad += not np.array_equal(q.gemm_u8s8_s32(a, 7, pw), expect)
        bad += not np.array_equal(q.conv2d_nhwc_f32(x, pc, 3, 32, None, 1, 1, False), conv0)
finally:
    stop = True
    hog.join()
print("mismatches", bad)
"""


@pytest.mark.parametrize("threads", ["2", "7"])
def test_back_to_back_jobs_with_late_workers_give_identical_results(threads):
    env = dict(os.environ, NEEDLE_NUM_THREADS=threads)
    env.pop("NEEDLE_QC_ISA", None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "mismatches 0"
