"""With needle_qc installed, ``import needle`` gives the student's own Needle, not ours."""
import os

import pytest

from tests.needle_qc.frontend.course_env import TREES, run_student

CODE = """
import needle, needle.nn, needle.ops
import needle_qc
print('RESULT:' + json.dumps({"needle": needle.__file__, "nn": needle.nn.__file__,
                               "ops": needle.ops.__file__,
                               "has_bool": "__bool__" in vars(needle.Tensor)}))
"""


@pytest.mark.parametrize("tree", ["pkg", "2022"])
@pytest.mark.parametrize("backend", ["nd", "np"])
def test_import_needle_is_the_students(tree, backend):
    if not os.path.isdir(TREES[tree][0]):
        pytest.skip(f"fixture tree {tree} not present")
    got = run_student(tree, CODE, backend)
    root = os.path.realpath(TREES[tree][0])
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
