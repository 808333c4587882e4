"""cse: identical pure computations merge; different attrs, keys or inputs do not."""

import numpy as np

from needle_qc.passes import get_pass
from tests.needle_qc.passes.conftest import assert_same_numbers, parse

BEFORE = """\
%x = placeholder() : f32[N,2]
%w = param() {tensor="w"} : f32[2,2]
%w_again = param() {tensor="w"} : f32[2,2]
%w_copy = param() {tensor="w_copy"} : f32[2,2]
%a = matmul(%x, %w) : f32[N,2]
%b = matmul(%x, %w_again) : f32[N,2]
%c = matmul(%x, %w_copy) : f32[N,2]
%s1 = mul_scalar(%a) {scalar=2.0} : f32[N,2]
%s2 = mul_scalar(%b) {scalar=2.0} : f32[N,2]
%s3 = mul_scalar(%b) {scalar=3.0} : f32[N,2]
%t1 = add(%s1, %s2) : f32[N,2]
%t2 = add(%t1, %s3) : f32[N,2]
%t3 = add(%t2, %c) : f32[N,2]
return %t3"""

AFTER = """\
%x = placeholder() : f32[N,2]
%w = param() {tensor="w"} : f32[2,2]
%w_copy = param() {tensor="w_copy"} : f32[2,2]
%a = matmul(%x, %w) : f32[N,2]
%c = matmul(%x, %w_copy) : f32[N,2]
%s1 = mul_scalar(%a) {scalar=2.0} : f32[N,2]
%s3 = mul_scalar(%a) {scalar=3.0} : f32[N,2]
%t1 = add(%s1, %s1) : f32[N,2]
%t2 = add(%t1, %s3) : f32[N,2]
%t3 = add(%t2, %c) : f32[N,2]
return %t3"""


def test_cse_merges_same_op_inputs_attrs_and_same_tensor_key():
    w = np.arange(4, dtype=np.float32).reshape(2, 2)
    g = parse(BEFORE, w=w, w_copy=w.copy())
    before = g.copy()
    assert get_pass("cse")(g) is True
    assert str(g) == AFTER
    x = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    assert_same_numbers(before, g, x)
    assert get_pass("cse")(g) is False


def test_cse_never_merges_placeholders():
    text = "%x = placeholder() : f32[N,2]\n%y = placeholder() : f32[N,2]\n" \
           "%z = add(%x, %y) : f32[N,2]\nreturn %z"
    g = parse(text)
    assert get_pass("cse")(g) is False
    assert str(g) == text
