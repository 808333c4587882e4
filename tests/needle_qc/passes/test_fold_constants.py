"""fold-constants: params/constant-only subgraphs become one constant; N-shaped nodes stay."""

import numpy as np

from needle_qc.passes import get_pass
from tests.needle_qc.passes.conftest import assert_same_numbers, parse

BEFORE = """\
%x = placeholder() : f32[N,3]
%w = param() {tensor="w"} : f32[2,3]
%wt = transpose(%w) {axes=None} : f32[3,2]
%ws = mul_scalar(%wt) {scalar=2.0} : f32[3,2]
%y = matmul(%x, %ws) : f32[N,2]
%h = full() {shape=(N, 2), value=0.0, dtype="float32"} : f32[N,2]
%z = add(%y, %h) : f32[N,2]
return %z"""

AFTER = """\
%x = placeholder() : f32[N,3]
%w = param() {tensor="w"} : f32[2,3]
%ws_folded = constant() {tensor="ws_folded"} : f32[3,2]
%y = matmul(%x, %ws_folded) : f32[N,2]
%h = full() {shape=(N, 2), value=0.0, dtype="float32"} : f32[N,2]
%z = add(%y, %h) : f32[N,2]
return %z"""


def test_fold_constants_folds_chains_into_one_constant():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    g = parse(BEFORE, w=w)
    before = g.copy()
    assert get_pass("fold-constants")(g) is True
    get_pass("dce")(g)
    after_dce = AFTER.replace('%w = param() {tensor="w"} : f32[2,3]\n', "")
    assert str(g) == after_dce
    np.testing.assert_array_equal(g.tensors["ws_folded"], w.T * 2)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    assert_same_numbers(before, g, x, rtol=0, atol=0)


def test_fold_constants_before_dce_keeps_the_unused_param():
    g = parse(BEFORE, w=np.ones((2, 3)))
    get_pass("fold-constants")(g)
    assert str(g) == AFTER
    assert get_pass("fold-constants")(g) is False
