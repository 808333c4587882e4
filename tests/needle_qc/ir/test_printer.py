"""Text form: exact printing, parse(str(g)) round trips (hand-made and generated), parse errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from needle_qc import opset
from needle_qc.errors import IRError
from needle_qc.ir.graph import Graph
from needle_qc.ir.printer import format_value

EXPECTED = """\
%x = placeholder() : f32[N,1,28,28]
%conv1.weight = param() {tensor="conv1.weight"} : f32[3,3,1,16]
%conv1 = conv2d(%x, %conv1.weight) {stride=1, padding=1} : f32[N,16,28,28]
%relu = relu(%conv1) : f32[N,16,28,28]
%flat = reshape(%relu) {shape=(N, -1)} : f32[N,12544]
%pairs = getitem(%flat) {index=([None, None, None], [0, 2, 1])} : f32[N,2]
%parts = split(%pairs) {axis=1} : (f32[N], f32[N])
%first = tuple_get_item(%parts) {index=0} : f32[N]
%zeros = full() {shape=(3, N), value=0.0, dtype="float32"} : f32[3,N]{s=0.1, z=128}
return %relu, (%first,), %zeros"""


def hand_made():
    g = Graph()
    x = g.placeholder("x", ("N", 1, 28, 28), "float32")
    w = g.param("conv1.weight", np.zeros((3, 3, 1, 16), np.float32))
    conv = g.call("conv2d", [x, w], {"stride": 1, "padding": 1}, name="conv1")
    relu = g.call("relu", [conv])
    flat = g.call("reshape", [relu], {"shape": ("N", -1)}, name="flat")
    pairs = g.call("getitem", [flat], {"index": ([None, None, None], [0, 2, 1])}, name="pairs")
    parts = g.call("split", [pairs], {"axis": 1}, name="parts")
    first = g.call("tuple_get_item", [parts], {"index": 0}, name="first")
    zeros = g.call("full", [], {"shape": (3, "N"), "value": 0.0, "dtype": "float32"},
                   name="zeros")
    zeros.meta["qparams"] = {"s": 0.1, "z": 128}
    g.output((relu, (first,), zeros))
    return g


def test_exact_text_of_a_hand_made_graph():
    g = hand_made()
    g.lint()
    assert str(g) == EXPECTED
    assert g.node("conv1").format() == EXPECTED.splitlines()[2]


def test_round_trip_keeps_text_meta_and_tensors():
    g = hand_made()
    again = Graph.parse(str(g), tensors=g.tensors)
    assert str(again) == str(g)
    again.lint()
    assert again.node("zeros").meta["qparams"] == {"s": 0.1, "z": 128}
    assert again.output_node.attrs["structure"] == (0, (1,), 2)
    assert set(again.tensors) == {"conv1.weight"}


@pytest.mark.parametrize("structure_text,structure", [
    ("return %a", 0), ("return %a, %b", (0, 1)), ("return (%a,)", (0,)),
    ("return ((%a, %b),)", ((0, 1),)), ("return %a, (%b, (%a,))", (0, (1, (2,)))),
])
def test_return_structures(structure_text, structure):
    text = f"%a = placeholder() : f32[2]\n%b = exp(%a) : f32[2]\n{structure_text}"
    g = Graph.parse(text)
    assert g.output_node.attrs["structure"] == structure
    assert str(g) == text


@pytest.mark.parametrize("value,text", [
    (1e-05, "1e-05"), (math.inf, "inf"), (-math.inf, "-inf"), (-0.0, "-0.0"), (True, "True"),
    (None, "None"), ("N", "N"), ("4*N", "4*N"), ("a\"b", '"a\\"b"'), ((1,), "(1,)"),
    ([1, [2.5]], "[1, [2.5]]"), ({"k": (1, "x")}, '{k=(1, "x")}'), ((), "()"),
])
def test_value_syntax(value, text):
    assert format_value(value) == text


def test_parse_errors_point_at_the_problem():
    cases = [
        ("%x = placeholder() : f32[N]\n%y = rleu(%x)", "line 2, column 6: unknown op 'rleu'; "
                                                       "did you mean relu"),
        ("%y = relu(%x)", "line 1, column 11: %x is used before it is defined"),
        ("%x = placeholder()\n%x = placeholder()", "line 2, column 1: %x is defined twice"),
        ("%x = placeholder() {a=(1)}", "one-element tuple needs a trailing comma"),
        ("%x = placeholder() : f32[N,M]", "expected a dim (int, N or k*N), found 'M'"),
        ("%x = placeholder() ; f32[N]", "unexpected character ';'"),
        ("%x = placeholder()\nreturn %x\n%y = exp(%x)", "line 3: nothing may follow"),
        ("%x = placeholder() {a=1, a=2}", "attr 'a' given twice"),
        ("%output = placeholder()", "%output is reserved for the return line"),
        ("%x = placeholder( : f32[2]", "column 19: expected a %name, found ':'"),
    ]
    for text, message in cases:
        with pytest.raises(IRError) as err:
            Graph.parse(text)
        assert message in str(err.value), (text, str(err.value))


def test_unprintable_attr_keys_are_refused():
    g = Graph()
    x = g.placeholder("x", (2,), "float32")
    node = g.call("exp", [x])
    node.attrs["bad key"] = 1
    with pytest.raises(IRError, match="keys must be identifiers"):
        str(g)


# ----------------------------------------------------------------------------- generated graphs

ANY_OP = "test_printer_any"


@pytest.fixture(scope="module", autouse=True)
def any_op():
    opset.register_op(opset.OpDef(ANY_OP, "variadic", {"value": "any"}, None,
                                  "Test op carrying one attr of any plain type."),
                      replace=True)
    yield
    if ANY_OP in opset.all_ops():
        opset.unregister_op(ANY_OP)


_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
            | st.sampled_from(["N", "3*N"]))
_values = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
                   | st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=8)
_dims = st.integers(0, 64) | st.sampled_from(["N", "2*N"])
_dtypes = st.sampled_from(["float32", "float16", "bfloat16", "int8", "uint8", "int32", "int4",
                           "complex64"])
_qparams = st.none() | st.dictionaries(_keys, st.floats(allow_nan=False) | st.integers(),
                                       min_size=1, max_size=3)


@st.composite
def graphs(draw):
    g = Graph()
    nodes = [g.placeholder("x", tuple(draw(st.lists(_dims, max_size=4))), draw(_dtypes))]
    for _ in range(draw(st.integers(0, 6))):
        inputs = draw(st.lists(st.sampled_from(nodes), max_size=3))
        meta = {}
        if draw(st.booleans()):
            meta = {"shape": tuple(draw(st.lists(_dims, max_size=4))), "dtype": draw(_dtypes)}
            qparams = draw(_qparams)
            if qparams:
                meta["qparams"] = qparams
        name = draw(st.from_regex(r"[a-z0-9_.]{1,8}", fullmatch=True))
        nodes.append(g.call(ANY_OP, inputs, {"value": draw(_values)}, name=name, meta=meta))
    g.output(tuple(draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=3))))
    return g


@settings(max_examples=150, deadline=None, derandomize=True)
@given(graphs())
def test_generated_graphs_round_trip(g):
    text = str(g)
    again = Graph.parse(text)
    assert str(again) == text
    assert [n.name for n in again.nodes] == [n.name for n in g.nodes]
