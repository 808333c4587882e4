"""replace_pattern (templates traced from Needle functions) and rewrite (rules to a fixed point)."""

import numpy as np
import pytest

import needle as ndl
from needle import ops
from needle_qc.errors import IRError
from needle_qc.ir.graph import Graph
from needle_qc.ir.pattern import Rule, replace_pattern, rewrite


def parse(text):
    return Graph.parse(text).lint()


def run(g, *xs):
    return g(*xs, device=ndl.cpu_numpy()).numpy()


TEXT = """\
%x = placeholder() : f32[N,2]
%y = placeholder() : f32[N,2]
%a = add(%x, %y) : f32[N,2]
%r = relu(%a) : f32[N,2]
%e = exp(%x) : f32[N,2]
%b = add(%e, %y) : f32[N,2]
%s = relu(%b) : f32[N,2]
%o = mul(%r, %s) : f32[N,2]
return %o"""

REPLACED = """\
%x = placeholder() : f32[N,2]
%y = placeholder() : f32[N,2]
%r_add_relu = add_relu(%x, %y) : f32[N,2]
%e = exp(%x) : f32[N,2]
%s_add_relu = add_relu(%e, %y) : f32[N,2]
%o = mul(%r_add_relu, %s_add_relu) : f32[N,2]
return %o"""


def add_then_relu(a, b):
    return ops.relu(a + b)


def test_replace_pattern_rewrites_every_match_and_keeps_numbers():
    import needle_qc.passes  # noqa: F401  (registers add_relu)

    g = parse(TEXT)
    before = g.copy()
    replacement = parse("%a = placeholder() : f32[N,2]\n%b = placeholder() : f32[N,2]\n"
                        "%add_relu = add_relu(%a, %b) : f32[N,2]\nreturn %add_relu")
    matches = replace_pattern(g, add_then_relu, replacement)
    assert [m.anchor.name for m in matches] == ["r", "s"]
    assert matches[0].nodes_map["a"] is g.node("x")
    assert str(g) == REPLACED
    x, y = (np.random.default_rng(i).standard_normal((3, 2)).astype(np.float32) for i in (0, 1))
    np.testing.assert_array_equal(run(g, x, y), run(before, x, y))


def test_intermediate_used_outside_blocks_the_match():
    text = TEXT.replace("%o = mul(%r, %s)", "%o = mul(%r, %a)")
    g = parse(text)
    matches = replace_pattern(g, add_then_relu, lambda a, b: ops.relu(a) + ops.relu(b))
    assert [m.anchor.name for m in matches] == ["s"]
    assert g.node("a").op == "add" and g.node("r").op == "relu"
    g.lint()


def test_attrs_must_match():
    g = parse("%x = placeholder() : f32[N,2]\n%a = mul_scalar(%x) {scalar=1.0} : f32[N,2]\n"
              "%b = mul_scalar(%a) {scalar=2.0} : f32[N,2]\nreturn %b")
    matches = replace_pattern(g, lambda x: ops.mul_scalar(x, 1.0), lambda x: x + 0.0)
    assert len(matches) == 1
    assert [n.op for n in g.nodes] == ["placeholder", "add_scalar", "mul_scalar", "output"]


def test_same_placeholder_must_bind_the_same_node():
    g = parse("%x = placeholder() : f32[N,2]\n%y = placeholder() : f32[N,2]\n"
              "%a = add(%x, %y) : f32[N,2]\n%b = add(%x, %x) : f32[N,2]\n"
              "%c = mul(%a, %b) : f32[N,2]\nreturn %c")
    matches = replace_pattern(g, lambda v: v + v, lambda v: ops.mul_scalar(v, 2.0))
    assert [m.anchor.name for m in matches] == ["b"]


def test_pattern_and_replacement_arity_must_agree():
    with pytest.raises(IRError, match="takes 2 inputs but the replacement takes 1"):
        replace_pattern(parse(TEXT), add_then_relu, lambda a: ops.relu(a))


def test_rewrite_reaches_a_fixed_point():
    g = parse("%x = placeholder() : f32[N,2]\n%a = negate(%x) : f32[N,2]\n"
              "%b = negate(%a) : f32[N,2]\n%c = negate(%b) : f32[N,2]\n"
              "%d = negate(%c) : f32[N,2]\nreturn %d")

    def double_negation(node):
        inner = node.inputs[0]
        return inner.inputs[0] if inner.op == "negate" else None

    count = rewrite(g, [Rule("negate", double_negation)])
    g.eliminate_dead_code()
    assert count == 2
    assert str(g) == "%x = placeholder() : f32[N,2]\nreturn %x"


def test_rules_that_undo_each_other_hit_the_cap():
    g = parse("%x = placeholder() : f32[N,2]\n%a = exp(%x) : f32[N,2]\nreturn %a")

    def flip(node):
        return node.graph.call("tanh" if node.op == "exp" else "exp", node.inputs)

    with pytest.raises(IRError, match="after 5 sweeps"):
        rewrite(g, [Rule(("exp", "tanh"), flip)], max_iterations=5)


def test_rule_returning_a_non_node_is_reported():
    g = parse("%x = placeholder() : f32[N,2]\n%a = exp(%x) : f32[N,2]\nreturn %a")
    with pytest.raises(IRError, match=r"returned 3 for %a"):
        rewrite(g, [Rule("exp", lambda node: 3)])
    with pytest.raises(IRError, match="not a Rule"):
        rewrite(g, [("exp", print)])


def test_in_place_rule_does_its_own_surgery_and_after_sweep_cleans_up():
    """negate(negate(x)) -> x done by the rule itself; the dead inner negate goes in after_sweep."""
    g = parse("%x = placeholder() : f32[N,2]\n%a = negate(%x) : f32[N,2]\n"
              "%b = negate(%a) : f32[N,2]\n%c = exp(%b) : f32[N,2]\nreturn %c")
    before = run(g, np.arange(4, dtype=np.float32).reshape(2, 2))

    def cancel(node):
        inner = node.inputs[0]
        if inner.op != "negate":
            return False
        node.replace_all_uses_with(inner.inputs[0])
        node.graph.erase(node)
        return True

    count = rewrite(g, [Rule("negate", cancel, in_place=True)],
                    after_sweep=lambda graph: graph.eliminate_dead_code())
    assert count == 1
    assert str(g) == "%x = placeholder() : f32[N,2]\n%c = exp(%x) : f32[N,2]\nreturn %c"
    np.testing.assert_array_equal(run(g, np.arange(4, dtype=np.float32).reshape(2, 2)), before)


def test_in_place_rule_must_say_true_or_false():
    g = parse("%x = placeholder() : f32[N,2]\n%a = exp(%x) : f32[N,2]\nreturn %a")
    with pytest.raises(IRError, match="expected True"):
        rewrite(g, [Rule("exp", lambda node: node, in_place=True)])


def test_module_docstring_example_runs():
    import doctest

    import needle_qc.ir.pattern

    assert doctest.testmod(needle_qc.ir.pattern).failed == 0
