"""The issue-12 matrix on course-contract Needles: trace, interpreter == eager, fp32 compile ==
eager, int8 static / dynamic / weight-only SQNR, save/load; both array backends."""
import os

import pytest

from tests.needle_qc.frontend.course_env import TREES, run_student

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODELS = ("mlp", "cnn", "rnn", "lstm", "transformer")
MIN_SQNR_DB = 20.0
MAX_REL = 1e-4

CODE = """
import warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {repo!r})
import models
from tests.needle_qc.frontend import student_checks
print("RESULT:" + json.dumps({{name: student_checks.check(name, models)
                               for name in {models!r}}}))
"""

_CACHE = {}


def matrix(tree, backend):
    """All models of one tree and backend, run once per session (one subprocess)."""
    key = (tree, backend)
    if key not in _CACHE:
        models = [m for m in MODELS if tree != "2022" or m != "transformer"]
        _CACHE[key] = run_student(tree, CODE.format(repo=REPO, models=models), backend)
    return _CACHE[key]


@pytest.mark.parametrize("backend", ["nd", "np"])
@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("model", MODELS)
def test_student_model_matrix(tree, backend, model):
    results = matrix(tree, backend)
    if model not in results:
        pytest.skip(f"{tree} has no {model} (hw4_extra came after the 2022 layout)")
    res = results[model]
    assert res["trace"] > 0
    assert res["interp_rel"] == 0.0, "interpreter must equal eager bit for bit"
    assert res["fp32_rel"] <= MAX_REL
    assert res["fp32_tensor_rel"] <= MAX_REL
    for scheme in ("int8-static", "int8-dynamic", "int8-weight-only"):
        assert isinstance(res[scheme], float), f"{scheme}: {res[scheme]}"
        assert res[scheme] >= MIN_SQNR_DB, f"{scheme}: {res[scheme]:.1f} dB"
    assert res["save_load_equal"] is True
