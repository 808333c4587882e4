"""IR: nodes, use lists, insertion, erase, DCE, copy, lint, the op table and symbolic dims."""

import numpy as np
import pytest

from needle_qc import opset
from needle_qc.errors import IRError
from needle_qc.ir.graph import Graph, Node
from needle_qc.opset import OpDef, get_op, register_op


def small_graph():
    """x -> linear(fc) -> relu -> output, with fc params."""
    g = Graph()
    x = g.placeholder("x", ("N", 4), "float32")
    w = g.param("fc.weight", np.ones((4, 3), np.float32), module_path="fc")
    b = g.param("fc.bias", np.zeros((1, 3), np.float32), module_path="fc")
    fc = g.call("linear", [x, w, b], name="fc")
    relu = g.call("relu", [fc])
    g.output(relu)
    return g


def test_call_infers_meta_and_uniquifies_names():
    g = small_graph()
    fc = g.node("fc")
    assert fc.meta == {"shape": ("N", 3), "dtype": "float32"}
    r1 = g.call("relu", [fc])
    r2 = g.call("relu", [fc])
    assert (r1.name, r2.name) == ("relu_1", "relu_2")
    assert g.call("relu", [fc], name="weird name!").name == "weird_name_"
    assert g.call("relu", [fc], name="output").name == "output_1"
    assert [n.name for n in g.nodes][-1] == "output"
    g.lint()


def test_call_rejects_bad_inputs_right_away():
    g = small_graph()
    x, w = g.node("x"), g.node("fc.weight")
    with pytest.raises(IRError, match=r"linear: x\('N', 4\) does not match weight\(3, 3\)"):
        g.call("linear", [x, g.param("w2", np.ones((3, 3), np.float32))])
    with pytest.raises(IRError, match="add takes 2 inputs, got 1"):
        g.call("add", [x])
    with pytest.raises(IRError, match="unknown op 'rellu'; did you mean relu"):
        g.call("rellu", [x])
    with pytest.raises(IRError, match="not a node of this graph"):
        small_graph().call("relu", [w])
    with pytest.raises(IRError, match="not plain data"):
        g.call("reshape", [x], {"shape": object()})


def test_users_follow_input_assignment():
    g = small_graph()
    x, fc, relu = g.node("x"), g.node("fc"), g.node("relu")
    assert fc.users == [relu] and relu.users == [g.output_node]
    add = g.call("add", [fc, fc])
    assert fc.users == [relu, add]
    add.inputs = (relu, relu)
    assert fc.users == [relu] and add in relu.users
    add.replace_input(relu, fc)
    assert add.inputs == (fc, fc) and add not in relu.users
    assert x.users == [fc]


def test_replace_all_uses_with_and_except_for():
    g = small_graph()
    fc, relu = g.node("fc"), g.node("relu")
    with g.inserting_after(fc):
        tanh = g.call("tanh", [fc])
    changed = fc.replace_all_uses_with(tanh, except_for=(tanh,))
    assert changed == [relu]
    assert relu.inputs == (tanh,) and fc.users == [tanh]
    g.lint()


def test_inserting_before_and_after_keep_call_order():
    g = small_graph()
    fc = g.node("fc")
    with g.inserting_after(fc):
        a = g.call("tanh", [fc], name="a")
        g.call("tanh", [a], name="b")
    with g.inserting_before(g.node("x")):
        c = g.placeholder("c", (2,), "float32")
    names = [n.name for n in g.nodes]
    assert names.index("fc") + 1 == names.index("a") == names.index("b") - 1
    assert names[0] == c.name
    assert names[-1] == "output"
    g.lint()


def test_erase_and_dead_code_elimination():
    g = small_graph()
    fc = g.node("fc")
    with pytest.raises(IRError, match="erase: %fc is still used by %relu"):
        g.erase(fc)
    extra = g.call("exp", [fc])
    g.call("log", [extra])
    const = g.constant(np.ones(3, np.float32))
    assert const.attrs["tensor"] in g.tensors
    assert g.eliminate_dead_code() is True
    assert [n.op for n in g.nodes] == ["placeholder", "param", "param", "linear", "relu",
                                       "output"]
    assert const.attrs["tensor"] not in g.tensors and const.graph is None
    assert g.eliminate_dead_code() is False
    g.lint()


def test_copy_is_deep_for_nodes():
    g = small_graph()
    c = g.copy()
    assert str(c) == str(g)
    c.node("fc").attrs["x"] = 1
    c.call("relu", [c.node("relu")])
    assert "x" not in g.node("fc").attrs and len(g) == 6
    assert c.node("fc") is not g.node("fc") and c.node("fc").graph is c
    assert c.tensors["fc.weight"] is g.tensors["fc.weight"]


def test_find_node_lookup_and_properties():
    g = small_graph()
    assert [n.name for n in g.find(op="param")] == ["fc.weight", "fc.bias"]
    assert [n.name for n in g.find(op={"relu", "linear"})] == ["fc", "relu"]
    assert g.node("%fc") is g.node("fc")
    assert g.placeholders == [g.node("x")] and g.output_node.op == "output"
    with pytest.raises(IRError, match=r"no node %rellu in the graph; did you mean %relu"):
        g.node("rellu")
    assert repr(g.node("fc")) == "%fc" and isinstance(g.node("fc"), Node)


def test_output_takes_nested_results_once():
    g = Graph()
    x = g.placeholder("x", (2,), "float32")
    y = g.call("exp", [x])
    out = g.output((x, (y, x)))
    assert out.inputs == (x, y, x) and out.attrs["structure"] == (0, (1, 2))
    with pytest.raises(IRError, match="already has an output"):
        g.output(y)


def _lint_message(g):
    with pytest.raises(IRError) as err:
        g.lint()
    return str(err.value)


def test_lint_reports_every_violation():
    g = small_graph()
    fc, relu, x = g.node("fc"), g.node("relu"), g.node("x")
    fc.attrs["bogus"] = 1                           # unknown attr
    relu.meta["shape"] = ("N", 7)                   # disagrees with the shape rule
    g._nodes.remove(x)
    g._nodes.insert(4, x)                           # x now defined after its use
    g.tensors["fc.bias"] = np.zeros((2, 3), np.float32)  # tensor shape != meta
    x._users.pop(fc)                                # users list out of sync
    message = _lint_message(g)
    for expected in ["%fc: unknown attr 'bogus' for linear",
                     "%relu: meta says f32[N,7] but the shape rule gives f32[N,3]",
                     "%fc: input 0 %x is not defined before its use",
                     "%fc.bias: tensor 'fc.bias' has shape (2, 3), meta says (1, 3)",
                     "%fc: missing from the users of its input %x"]:
        assert expected in message, message


def test_lint_checks_ops_arity_attr_types_and_output():
    g = small_graph()
    g.node("relu").op = "nope"
    g.node("fc").inputs = (g.node("x"),)
    reshape = g.call("reshape", [g.node("x")], {"shape": ("N", 4)})
    reshape.attrs["shape"] = "N,4"
    g._nodes.remove(g.output_node)
    g._nodes.insert(0, g._by_name["output"])
    message = _lint_message(g)
    for expected in ["%relu: unknown op 'nope'", "%fc: linear takes 2 to 3 inputs, got 1",
                     "%reshape: attr shape='N,4' is not of type shape",
                     "the output node is not the last node"]:
        assert expected in message, message
    del g.tensors["fc.weight"]
    assert "tensor 'fc.weight' missing from graph.tensors" in _lint_message(g)


def test_propagate_shapes_from_example_inputs():
    g = small_graph()
    for node in g.nodes:
        if node.op in ("linear", "relu"):
            node.meta.clear()
    g.propagate_shapes(np.zeros((5, 4), np.float32))
    assert g.node("x").meta["shape"] == ("N", 4)
    assert g.node("relu").meta == {"shape": ("N", 3), "dtype": "float32"}
    g.lint()


def test_register_op_and_get_op():
    name = "test_ir_double"
    op = OpDef(name, 1, {"factor": "float"}, opset.unary_rule, "x * factor.", None,
               {"factor": 2.0})
    register_op(op)
    try:
        assert get_op(name) is op
        with pytest.raises(IRError, match="already registered"):
            register_op(op)
        register_op(op, replace=True)
        g = Graph()
        node = g.call(name, [g.placeholder("x", ("N",), "float32")])
        assert node.attrs == {"factor": 2.0} and node.meta["shape"] == ("N",)
    finally:
        opset.unregister_op(name)
    with pytest.raises(IRError, match="unknown attr type 'complex'"):
        register_op(OpDef("bad_attr_op", 1, {"a": "complex"}, None, ""))
    with pytest.raises(IRError, match="expects an OpDef"):
        register_op("relu")


def test_every_op_has_doc_and_valid_table_row():
    for name in opset.all_ops():
        op = get_op(name)
        assert op.doc and op.name == name
        for key in op.defaults:
            assert key in op.attrs, (name, key)


@pytest.mark.parametrize("dim,parts", [(7, (7, 0)), ("N", (1, 1)), ("12*N", (12, 1))])
def test_symbolic_dims(dim, parts):
    assert opset.dim_parts(dim) == parts
    assert opset.make_dim(*parts) == dim
    assert opset.resolve_dim(dim, 3) == (parts[0] * 3 if parts[1] else parts[0])


def test_symbolic_dim_errors():
    for bad in ("M", "N*2", 1.5, True):
        with pytest.raises(IRError, match="bad dim"):
            opset.dim_parts(bad)
    with pytest.raises(IRError, match="needs the batch size"):
        opset.resolve_dim("N", None)
    assert opset.shape_size(("N", 3, "2*N")) == (6, 2)


@pytest.mark.parametrize("op,shapes,attrs,want", [
    ("reshape", [("N", 4, 3)], {"shape": (-1, 3)}, ("4*N", 3)),
    ("reshape", [("5*N", 2)], {"shape": (5, "N", 2)}, (5, "N", 2)),
    ("matmul", [("N", 3, 4), (4, 2)], {}, ("N", 3, 2)),
    ("transpose", [("N", 3, 4)], {"axes": None}, ("N", 4, 3)),
    ("transpose", [("N", 3, 4)], {"axes": (0, 1)}, (3, "N", 4)),
    ("summation", [("N", 3, 4)], {"axes": None}, ()),
    ("summation", [("N", 3, 4)], {"axes": (1,)}, ("N", 4)),
    ("max", [("N", 3)], {"axes": 1, "keepdims": True}, ("N", 1)),
    ("broadcast_to", [(1, 3)], {"shape": ("N", 3)}, ("N", 3)),
    ("conv", [("N", 8, 8, 3), (3, 3, 3, 5)], {"stride": 2, "padding": 1}, ("N", 4, 4, 5)),
    ("conv2d", [("N", 3, 8, 8), (3, 3, 3, 5)], {"stride": 1, "padding": 1}, ("N", 5, 8, 8)),
    ("dilate", [("N", 3)], {"axes": (0, 1), "dilation": 1}, ("2*N", 6)),
    ("getitem", [("N", 6, 4)], {"index": (0, [1, 5, 2])}, (2, 4)),
    ("permute", [("N", 6, 4)], {"axes": (2, 0, 1)}, (4, "N", 6)),
    ("stack", [("N", 2), ("N", 2), ("N", 2)], {"axis": 1}, ("N", 3, 2)),
])
def test_shape_rules(op, shapes, attrs, want):
    g = Graph()
    inputs = [g.placeholder(f"x{i}", s, "float32") for i, s in enumerate(shapes)]
    assert g.call(op, inputs, attrs).meta["shape"] == want


@pytest.mark.parametrize("op,shapes,attrs,match", [
    ("reshape", [("N", 4)], {"shape": (3, -1)}, "cannot infer -1"),
    ("reshape", [("N", 4)], {"shape": (4, 4)}, "different sizes"),
    ("add", [("N", 4), ("N", 5)], {}, "shape mismatch in add"),
    ("matmul", [("N", 3), (4, 2)], {}, "inner dims differ"),
    ("split", [("N", 3)], {"axis": 0}, "batch dim; cannot unroll"),
    ("broadcast_to", [(2, 3)], {"shape": ("N", 3)}, "cannot broadcast"),
])
def test_shape_rule_errors(op, shapes, attrs, match):
    g = Graph()
    inputs = [g.placeholder(f"x{i}", s, "float32") for i, s in enumerate(shapes)]
    with pytest.raises(IRError, match=match):
        g.call(op, inputs, attrs)


def test_dtype_mismatch_is_an_error():
    g = Graph()
    a = g.placeholder("a", (2,), "float32")
    b = g.placeholder("b", (2,), "int8")
    with pytest.raises(IRError, match="dtype mismatch in add: float32 vs int8"):
        g.call("add", [a, b])


def test_lint_checks_output_structure_numbering():
    g = small_graph()
    g.output_node.attrs["structure"] = (0, 1)
    assert "structure (0, 1) does not number its 1 inputs in order" in _lint_message(g)


def test_optional_attrs_may_be_left_out():
    name = "test_ir_optional"
    register_op(OpDef(name, 1, {"activation": "str?", "k": "int"}, opset.unary_rule, "Test."))
    try:
        g = Graph()
        node = g.call(name, [g.placeholder("x", (2,), "float32")], {"k": 1})
        g.output(node)
        g.lint()
        del node.attrs["k"]
        assert "missing attr 'k'" in _lint_message(g)
    finally:
        opset.unregister_op(name)
