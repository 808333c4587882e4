"""Run code against a course-contract Needle in a fresh interpreter, as a student would."""
import json
import os
import subprocess
import sys
import textwrap

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")
TREES = {
    "pkg": (os.path.join(FIXTURES, "student_needle_pkg"), "./python"),
    "2022": (os.path.join(FIXTURES, "student_needle_2022"), "./python"),
}

PRELUDE = """
import json, sys
sys.path.append({python!r})
sys.path.append("./apps")
"""


def run_student(tree, code, backend="nd", timeout=600):
    """Run ``code`` with cwd = the tree's root and its ``python`` dir appended to sys.path (the
    notebooks' idiom). The code prints one JSON line prefixed ``RESULT:``; returns it parsed."""
    root, python = TREES[tree]
    env = dict(os.environ, NEEDLE_BACKEND=backend, OPENBLAS_NUM_THREADS="1")
    env.pop("NEEDLE_QC_BUNDLED_NEEDLE", None)
    source = PRELUDE.format(python=python) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", source], cwd=root, env=env, timeout=timeout,
                          capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT:")]
    if done.returncode != 0 or not lines:
        raise AssertionError(f"student run failed (rc {done.returncode}):\n{done.stdout[-3000:]}"
                             f"\n{done.stderr[-6000:]}")
    return json.loads(lines[-1][len("RESULT:"):])


def emit(value):
    """Code snippet helper: the line a student script uses to hand back its result."""
    return f"print('RESULT:' + json.dumps({value}))"
