"""User docs stay true: every Python block of the pages below runs, docs/ops.md equals what the
op table generates, and relative links point at files of the repository."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")
RUN_WHOLE_PAGE = ("coming-from-torch-ao-and-ort.md", "qconfig-guide.md")
RUN_SECTION = {"writing-a-pass.md": "## 4."}  # the other sections are fragments of one example


def _read(name):
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def _run(blocks, where, tmp_path, monkeypatch):
    assert blocks, f"{where}: no python blocks"
    monkeypatch.chdir(tmp_path)  # snippets may write files (model.onnx)
    namespace = {"__name__": "__doc_snippet__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{where} block {i}", "exec"), namespace)


@pytest.mark.parametrize("page", RUN_WHOLE_PAGE)
def test_every_snippet_of_the_page_runs(page, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    _run(_python_blocks(_read(page)), page, tmp_path, monkeypatch)


@pytest.mark.parametrize("page, heading", sorted(RUN_SECTION.items()))
def test_runnable_section_runs(page, heading, tmp_path, monkeypatch):
    _run(_python_blocks(_section(_read(page), heading)), f"{page} {heading}", tmp_path,
         monkeypatch)


def test_ops_page_is_generated_from_the_op_table(tmp_path):
    # a fresh process: tests that register throwaway ops must not leak into the page
    out = tmp_path / "ops.md"
    subprocess.run([sys.executable, "-m", "needle_qc.tools.opdoc", str(out)], check=True,
                   cwd=ROOT, capture_output=True)
    assert out.read_text(encoding="utf-8") == _read("ops.md"), \
        "docs/ops.md is stale: python -m needle_qc.tools.opdoc docs/ops.md"


def _pages():
    names = [os.path.join(DOCS, n) for n in sorted(os.listdir(DOCS)) if n.endswith(".md")]
    return names + [os.path.join(ROOT, "README.md")]


@pytest.mark.parametrize("path", _pages(), ids=os.path.basename)
def test_relative_links_exist(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert "shared/docs/" not in text, f"{path} points into shared/docs (not in the repo)"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
        assert os.path.exists(resolved), f"{os.path.basename(path)}: broken link {target}"
