"""dce: unused nodes and their tensors go; placeholders, the output and used nodes stay."""

import numpy as np

from needle_qc.passes import get_pass
from tests.needle_qc.passes.conftest import assert_same_numbers, parse

BEFORE = """\
%x = placeholder() : f32[N,2]
%w = param() {tensor="w"} : f32[2]
%unused = relu(%x) : f32[N,2]
%dead_chain = negate(%unused) : f32[N,2]
%y = relu(%x) : f32[N,2]
return %y"""

AFTER = """\
%x = placeholder() : f32[N,2]
%y = relu(%x) : f32[N,2]
return %y"""


def test_dce_removes_unused_nodes_and_their_tensors():
    g = parse(BEFORE, w=np.ones(2))
    before = g.copy()
    assert get_pass("dce")(g) is True
    assert str(g) == AFTER
    assert "w" not in g.tensors
    x = np.array([[-1.0, 2.0]], np.float32)
    assert_same_numbers(before, g, x)


def test_dce_on_a_clean_graph_reports_no_change():
    g = parse(AFTER)
    assert get_pass("dce")(g) is False
    assert str(g) == AFTER
