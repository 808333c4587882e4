"""Run code against a course-contract Needle in a fresh interpreter, as a student would."""
import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

from tests.fixtures import layout_2022

FIXTURES = os.path.dirname(layout_2022.PKG_ROOT)
TREES = ("pkg", "2022")  # the 2023+ package layout, the 2022 single-file layout
PYTHON_DIR = "./python"  # relative to a tree's root, as in the course notebooks


def tree_root(tree):
    """Root folder of a course tree: "pkg" is the fixture in the repository, "2022" is generated
    from it (tests/fixtures/layout_2022.py) once per process, so each pytest-xdist worker
    writes its own copy."""
    if tree == "pkg":
        return layout_2022.PKG_ROOT
    if tree == "2022":
        return _generated_2022()
    raise ValueError(f"unknown course tree {tree!r}; one of {TREES}")


@functools.cache
def _generated_2022():
    base = tempfile.mkdtemp(prefix="needle_2022_")
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return layout_2022.generate(os.path.join(base, "student_needle_2022"))


PRELUDE = """
import json, sys
sys.path.append({python!r})
sys.path.append("./apps")
"""


def run_student(tree, code, backend="nd", timeout=600):
    """Run ``code`` with cwd = the tree's root and its ``python`` dir appended to sys.path (the
    notebooks' idiom). The code prints one JSON line prefixed ``RESULT:``; returns it parsed."""
    root = tree_root(tree)
    env = dict(os.environ, NEEDLE_BACKEND=backend, OPENBLAS_NUM_THREADS="1")
    env.pop("NEEDLE_QC_BUNDLED_NEEDLE", None)
    source = PRELUDE.format(python=PYTHON_DIR) + textwrap.dedent(code)
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
