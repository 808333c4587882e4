"""With needle_qc installed, ``import needle`` gives the student's own Needle, not ours."""
import os

import pytest

from tests.needle_qc.frontend.course_env import PYTHON_DIR, TREES, run_student, tree_root

CODE = """
import needle, needle.nn, needle.ops
import needle_qc
print('RESULT:' + json.dumps({"needle": needle.__file__, "nn": needle.nn.__file__,
                               "ops": needle.ops.__file__,
                               "has_bool": "__bool__" in vars(needle.Tensor)}))
"""


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("backend", ["nd", "np"])
def test_import_needle_is_the_students(tree, backend):
    got = run_student(tree, CODE, backend)
    root = os.path.realpath(tree_root(tree))
    for key in ("needle", "nn", "ops"):
        assert os.path.realpath(got[key]).startswith(root + os.sep), (key, got[key])
    assert got["has_bool"] is False


def test_bundled_needle_without_a_user_tree():
    import needle

    here = os.path.realpath(os.path.dirname(needle.__file__))
    assert os.path.isfile(os.path.join(here, "_defer.py"))


def test_user_needle_dir_skips_the_bundled_tree(tmp_path):
    from needle._defer import OWN_DIR, user_needle_dir

    assert user_needle_dir([os.path.dirname(OWN_DIR)]) is None
    (tmp_path / "needle").mkdir()
    (tmp_path / "needle" / "__init__.py").write_text("")
    assert user_needle_dir([os.path.dirname(OWN_DIR), str(tmp_path)]) == \
        os.path.join(str(tmp_path), "needle")
    (tmp_path / "other").mkdir()
    assert user_needle_dir([str(tmp_path / "other")]) is None


def test_env_keeps_the_bundled_needle(monkeypatch, tmp_path):
    from needle._defer import FORCE_BUNDLED_ENV, user_needle_dir

    (tmp_path / "needle").mkdir()
    (tmp_path / "needle" / "__init__.py").write_text("")
    monkeypatch.setenv(FORCE_BUNDLED_ENV, "1")
    assert user_needle_dir([str(tmp_path)]) is None


def _editable_build_dirs():
    import sys

    return [f.path for f in sys.meta_path if getattr(f, "path", None) and
            type(f).__module__.startswith("_editable")]


def test_a_wheel_style_needle_yields_too(tmp_path):
    """A copy of the bundled needle first on sys.path (as a wheel puts it in site-packages),
    the editable finder switched off: the student's tree appended later still wins."""
    import shutil
    import subprocess
    import sys

    import needle

    site = tmp_path / "site"
    shutil.copytree(os.path.dirname(needle.__file__), site / "needle",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    root, python = tree_root("pkg"), PYTHON_DIR
    env = dict(os.environ, PYTHONPATH=str(site),
               SKBUILD_EDITABLE_SKIP=os.pathsep.join(_editable_build_dirs()))
    env.pop("NEEDLE_QC_BUNDLED_NEEDLE", None)
    code = (f"import sys; sys.path.append({python!r}); import needle, needle.nn; "
            "print(needle.__file__); print(needle.nn.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    real_root = os.path.realpath(root)
    for line in out.stdout.split():
        assert os.path.realpath(line).startswith(real_root + os.sep), out.stdout
    # and without the student tree, the wheel-style copy is what `import needle` gives
    out = subprocess.run([sys.executable, "-c", "import needle; print(needle.__file__)"],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert os.path.realpath(out.stdout.strip()).startswith(os.path.realpath(site)), out.stdout


def test_importing_needle_qc_first_does_not_pin_the_bundled_needle():
    import subprocess
    import sys

    root, python = tree_root("pkg"), PYTHON_DIR
    code = ("import sys, needle_qc; assert 'needle' not in sys.modules; "
            f"sys.path.append({python!r}); import needle; print(needle.__file__)")
    env = dict(os.environ)
    env.pop("NEEDLE_QC_BUNDLED_NEEDLE", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert os.path.realpath(out.stdout.strip()).startswith(os.path.realpath(root) + os.sep)
