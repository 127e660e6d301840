"""The docs run: every ```python block of README.md and docs/*.md, in order, one namespace per
file, each file its own test.

- A block tagged ```python no-run is shown but not run (use it only when running is impossible).
- A ```output block right after a python block is what that block must print, exactly.
- Blocks run in a fresh temporary directory, so examples may write files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [*sorted(ROOT.glob("docs/*.md")), ROOT / "README.md"]


def _load_parser() -> ModuleType:
    """.ci/readme_examples.py, which CI runs against a plain install: one block parser."""
    spec = importlib.util.spec_from_file_location(
        "readme_examples", ROOT / ".ci" / "readme_examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_PARSER = _load_parser()
Block = _PARSER.Block
blocks = _PARSER.blocks


def test_block_parser() -> None:
    text = (
        "intro\n"
        "```python\nx = 1\n```\n"
        "```output\n1\n```\n"
        "````python no-run\n```\nnested fence\n````\n"
        "```\nplain\n```\n"
    )
    assert blocks(text) == [
        Block("python", (), "x = 1\n", 3),
        Block("output", (), "1\n", 6),
        Block("python", ("no-run",), "```\nnested fence\n", 9),
        Block("", (), "plain\n", 13),
    ]
    with pytest.raises(ValueError, match=r"^code block opened at line 1 is never closed$"):
        blocks("```python\nx = 1\n")


def run_blocks(path: Path) -> int:
    """Run the python blocks of ``path``; returns how many ran."""
    found = blocks(path.read_text(encoding="utf-8"))
    module = ModuleType(f"docs_{path.stem.replace('-', '_')}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # dataclasses and pydantic look their module up
    ran = 0
    try:
        for index, block in enumerate(found):
            if block.lang == "output":
                previous = found[index - 1] if index else None
                if previous is None or previous.lang != "python" or "no-run" in previous.tags:
                    raise AssertionError(
                        f"{path.name}:{block.line}: an output block must follow a python block"
                    )
                continue
            if block.lang != "python" or "no-run" in block.tags:
                continue
            # Pad with newlines so that tracebacks show the line number in the markdown file.
            code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(code, module.__dict__)
            ran += 1
            following = found[index + 1] if index + 1 < len(found) else None
            if following is not None and following.lang == "output":
                assert printed.getvalue() == following.code, (
                    f"{path.name}:{block.line}: the block printed something other than the "
                    f"output block at line {following.line}"
                )
    finally:
        del sys.modules[module.__name__]
    return ran


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    run_blocks(path)


@pytest.mark.parametrize("name", ["README.md", "docs/concepts.md"])
def test_docs_have_runnable_examples(name: str) -> None:
    found = blocks((ROOT / name).read_text(encoding="utf-8"))
    runnable = [b for b in found if b.lang == "python" and "no-run" not in b.tags]
    assert runnable, f"{name} has no runnable python block"
    assert any(b.lang == "output" for b in found), f"{name} shows no checked output"


def test_a_wrong_output_block_fails(tmp_path: Path) -> None:
    doc = tmp_path / "wrong.md"
    doc.write_text("```python\nprint(1 + 1)\n```\n```output\n3\n```\n", encoding="utf-8")
    with pytest.raises(
        AssertionError,
        match=r"^wrong\.md:2: the block printed something other than the output block at line 5",
    ):
        run_blocks(doc)
    doc.write_text(
        "```python\nx = 1\n```\n```python\nprint(x)\n```\n```output\n1\n```\n", encoding="utf-8"
    )
    assert run_blocks(doc) == 2
