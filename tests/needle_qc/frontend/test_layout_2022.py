"""The 2022 single-file course tree generated from the package fixture (tests/fixtures/
layout_2022.py): its layout, its names, the 2022 differences, and loud failures on change."""
import ast
import filecmp
import os
import shutil

import pytest

from tests.fixtures import layout_2022 as layout
from tests.needle_qc.frontend.course_env import run_student, tree_root


def _parse(root, *parts):
    with open(os.path.join(root, *parts), encoding="utf-8") as f:
        return ast.parse(f.read())


def _top_names(tree):
    """Names a module binds at top level by def, class or assignment."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _definition(tree, name):
    (node,) = [n for n in ast.walk(tree) if getattr(n, "name", None) == name]
    return node


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
                  for f in fs if "__pycache__" not in d)


def test_the_packages_become_single_files():
    needle = os.path.join(tree_root("2022"), layout.NEEDLE)
    for name in layout.MERGES:
        assert os.path.isfile(os.path.join(needle, name + ".py"))
        assert not os.path.exists(os.path.join(needle, name))


def test_every_other_file_is_the_package_fixtures_own():
    root = tree_root("2022")
    edited = {e.path for e in layout.EDITS_2022}
    merged = tuple(os.path.join(layout.NEEDLE, name) + os.sep for name in layout.MERGES)
    copied = [p for p in _files(layout.PKG_ROOT) if not p.startswith(merged) and p not in edited]
    assert os.path.join(layout.NEEDLE, "backend_ndarray", "ndarray.py") in copied
    assert os.path.join(layout.NEEDLE, "__init__.py") in copied
    for path in copied:
        assert filecmp.cmp(os.path.join(layout.PKG_ROOT, path), os.path.join(root, path),
                           shallow=False), path
    merged_files = {os.path.join(layout.NEEDLE, name + ".py") for name in layout.MERGES}
    assert sorted(set(copied) | edited | merged_files) == _files(root)


@pytest.mark.parametrize("name", sorted(layout.MERGES))
def test_a_merged_file_defines_what_its_submodules_did(name):
    kept, dropped = layout.MERGES[name]
    expected = set().union(*(_top_names(_parse(layout.PKG_ROOT, layout.NEEDLE, name, s + ".py"))
                             for s in kept))
    got = _top_names(_parse(tree_root("2022"), layout.NEEDLE, name + ".py"))
    added = {"Tanh"} if name == "nn" else set()
    assert got == expected | added
    for sub in dropped:  # the Transformer's modules are not in the 2022 nn
        source = _parse(layout.PKG_ROOT, layout.NEEDLE, name, sub + ".py")
        only_there = _top_names(source) - expected
        assert only_there and not only_there & got


def test_merged_files_import_only_what_the_2022_layout_has():
    root = tree_root("2022")
    modules = {os.path.splitext(e)[0] for e in os.listdir(os.path.join(root, layout.NEEDLE))}
    for name in layout.MERGES:
        for node in ast.walk(_parse(root, layout.NEEDLE, name + ".py")):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in modules, (name, ast.dump(node))


def test_the_2022_differences_are_applied():
    root = tree_root("2022")
    autograd = _parse(root, layout.NEEDLE, "autograd.py")
    init = _definition(_definition(autograd, "Tensor"), "__init__")
    assert [d.value for d in init.args.kw_defaults][:2] == [None, "float32"]
    assert {"__rsub__", "__rmatmul__"} <= {n.name for n in _definition(autograd, "Tensor").body
                                           if isinstance(n, ast.FunctionDef)}
    ops = _parse(root, layout.NEEDLE, "ops.py")
    log_softmax = _definition(ops, "LogSoftmax")
    assert "__init__" not in {getattr(n, "name", None) for n in log_softmax.body}
    assert "self.axis" not in ast.unparse(log_softmax)
    assert "self.axis" in ast.unparse(_definition(ops, "Stack"))  # the edit stays in its class
    assert [a.arg for a in _definition(ops, "logsoftmax").args.args] == ["a"]
    nn = _parse(root, layout.NEEDLE, "nn.py")
    norm = ast.unparse(_definition(nn, "LayerNorm1d"))
    assert "self.weight " in norm and "self.weights" not in norm
    assert _definition(nn, "Tanh")
    lm_init = _definition(_definition(_parse(root, "apps", "models.py"), "LanguageModel"),
                          "__init__")
    assert "seq_len" not in [a.arg for a in lm_init.args.args]
    assert "Transformer" not in ast.unparse(lm_init)


@pytest.mark.parametrize("tree, ops_file, nn_file", [
    ("pkg", "ops_mathematic.py", "nn_basic.py"), ("2022", "ops.py", "nn.py")])
def test_each_tree_runs_with_its_own_module_names(tree, ops_file, nn_file):
    got = run_student(tree, """
import inspect
import needle
t = needle.Tensor([[1.0, 2.0]], device=needle.cpu())
print("RESULT:" + json.dumps({
    "add": needle.ops.EWiseAdd.__module__, "ops": inspect.getsourcefile(needle.ops.EWiseAdd),
    "linear": needle.nn.Linear.__module__, "nn": inspect.getsourcefile(needle.nn.Linear),
    "dtype": str(needle.Tensor([1.0], requires_grad=False).dtype),
    "rsub": (2.0 - t).numpy().tolist() if hasattr(needle.Tensor, "__rsub__") else None,
    "tanh": hasattr(needle.nn, "Tanh"), "transformer": hasattr(needle.nn, "Transformer"),
    "norm": sorted(vars(needle.nn.LayerNorm1d(2)).keys() & {"weight", "weights"})}))
""")
    assert os.path.basename(got["ops"]) == ops_file and os.path.basename(got["nn"]) == nn_file
    is_2022 = tree == "2022"
    assert got["add"] == "needle.ops" + ("" if is_2022 else ".ops_mathematic")
    assert got["linear"] == "needle.nn" + ("" if is_2022 else ".nn_basic")
    assert got["rsub"] == ([[1.0, 0.0]] if is_2022 else None)
    assert (got["tanh"], got["transformer"]) == (is_2022, not is_2022)
    assert got["norm"] == (["weight"] if is_2022 else ["weights"])
    if is_2022:
        assert got["dtype"] == "float32"


def test_generation_is_deterministic_and_never_overwrites(tmp_path):
    first, second = layout.generate(str(tmp_path / "a")), layout.generate(str(tmp_path / "b"))
    assert _files(first) == _files(second)
    for path in _files(first):
        assert filecmp.cmp(os.path.join(first, path), os.path.join(second, path), shallow=False)
    with pytest.raises(layout.LayoutError, match="exists"):
        layout.generate(first)


def test_an_edit_that_no_longer_matches_fails_loudly():
    edit = layout.Edit("m.py", "x = 1", "x = 2", 1, "why")
    assert layout.apply_edit("x = 1\n", edit) == "x = 2\n"
    with pytest.raises(layout.LayoutError, match=r"'why' expects 1 occurrence.*m\.py, found 2"):
        layout.apply_edit("x = 1\nx = 1\n", edit)
    scoped = layout.Edit("m.py", "x = 1", "x = 2", 1, "why", within="f")
    text = "x = 1\n\n\ndef f():\n    x = 1\n"
    assert layout.apply_edit(text, scoped) == "x = 1\n\n\ndef f():\n    x = 2\n"
    with pytest.raises(layout.LayoutError, match="defines 0 top-level 'f'"):
        layout.apply_edit("x = 1\n", scoped)


@pytest.mark.parametrize("source, earlier", [
    ("from .later import a\n", ()),
    ("def f():\n    from ..autograd import Tensor\n", ()),
    ("from ...elsewhere import a\n", ()),
])
def test_a_relative_import_it_cannot_merge_is_refused(source, earlier):
    with pytest.raises(layout.LayoutError, match="sub.py:[12]: cannot merge"):
        layout.flatten_submodule(source, "sub.py", earlier)


def test_flatten_hoists_imports_and_rewrites_them():
    source = ('"""Doc."""\nimport math\n\nfrom ..autograd import Tensor  # noqa\n'
              'from .basic import Module\n\n\nx = 1\n')
    imports, rest = layout.flatten_submodule(source, "sub.py", ("basic",))
    assert imports == ["import math\n", "from .autograd import Tensor  # noqa\n"]
    assert rest == "x = 1\n"


@pytest.mark.parametrize("change", ["new submodule", "init does more"])
def test_a_package_shape_the_generator_does_not_know_is_refused(tmp_path, change):
    source = tmp_path / "src"
    shutil.copytree(layout.PKG_ROOT, source, ignore=shutil.ignore_patterns("__pycache__"))
    ops_dir = source / layout.NEEDLE / "ops"
    if change == "new submodule":
        (ops_dir / "ops_extra.py").write_text("X = 1\n")
        match = "update MERGES"
    else:
        with open(ops_dir / "__init__.py", "a") as f:
            f.write("EXTRA = 1\n")
        match = "star-import"
    with pytest.raises(layout.LayoutError, match=match):
        layout.generate(str(tmp_path / "out"), source=str(source))
