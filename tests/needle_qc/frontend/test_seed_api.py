"""enable_seed_api(needle) on a course-contract Needle: the proposal's snippets run on it."""

import pytest

from tests.needle_qc.frontend.course_env import TREES, run_student

SNIPPETS = """
import warnings
warnings.simplefilter("ignore")
import numpy as np
import needle
import needle_qc
from models import LanguageModel, MLP

needle_qc.enable_seed_api(needle)
from needle import quantization

np.random.seed(0)
model = MLP()
model.eval()
batches = [needle.Tensor(np.random.randn(8, 12).astype("float32"), device=needle.cpu())
           for _ in range(4)]
x = batches[0]
ref = model(x).numpy()

def sqnr(out):
    out = out.numpy()
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - out) ** 2)))

# case 1. quantizing weights only
quantized_model = model.quantize(data_type="int8")
case1 = quantized_model(x)

# case 2. quantizing weights and activation
def calibrate(model, dataloader):
    for batch in dataloader:
        _ = model(batch)
    return model

quantized_model = quantization.insert_obserserver(model)
quantized_model = calibrate(quantized_model, batches)
case2 = quantization.convert(quantized_model)(x)
case3 = quantization.quantize(model, data_type="int8", activation="dynamic")(x)

lm = LanguageModel(6, 11, 8, 2, "lstm")
lm.eval()
ids = needle.Tensor(np.random.randint(0, 11, (5, 3)).astype("float32"), device=needle.cpu())
lm_ref = lm(ids)[0].numpy()
lm_out = lm.quantize(data_type="int8")(ids)[0].numpy()
print("RESULT:" + json.dumps({
    "tensor_types": [type(v).__module__.split(".")[0] for v in (case1, case2, case3)],
    "sqnr": [sqnr(case1), sqnr(case2), sqnr(case3)],
    "lm": quantization.is_language_model(lm), "mlp_lm": quantization.is_language_model(model),
    "lm_sqnr": float(10 * np.log10(np.sum(lm_ref.astype(np.float64) ** 2) /
                                  np.sum((lm_ref - lm_out) ** 2))),
    "module": needle.quantization.__name__}))
"""


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("backend", ["nd", "np"])
def test_proposal_snippets_on_a_student_needle(tree, backend):
    got = run_student(tree, SNIPPETS, backend)
    assert got["tensor_types"] == ["needle"] * 3
    assert min(got["sqnr"]) >= 20.0, got["sqnr"]
    assert got["lm"] is True and got["mlp_lm"] is False
    assert got["lm_sqnr"] >= 20.0
    assert got["module"] == "needle.quantization"


def test_enable_seed_api_on_the_bundled_needle_is_its_own():
    import needle
    import needle_qc

    assert needle_qc.enable_seed_api(needle) is needle.quantization
