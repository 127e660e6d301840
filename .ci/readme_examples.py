"""Run the README's Python examples against an installed package, as a user would.

``python .ci/readme_examples.py README.md`` runs every ```python block (but ``no-run`` ones) of
the file in order, in one namespace, in an empty temporary directory, and checks that a block
followed by an ```output block prints exactly that. Standard library only: it runs in a venv
that holds nothing but ``pip install .``. tests/test_docs.py does the same inside the suite;
it parses the blocks with :func:`blocks` of this file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    tags: tuple[str, ...]
    code: str
    line: int  # 1-based line of the first line of code


def blocks(text: str) -> list[Block]:
    """Fenced code blocks at the start of a line (CommonMark fences, no indentation)."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening["fence"]
        info = opening["info"].split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].startswith(fence[0] * len(fence)) and not lines[j].strip(fence[0]).strip()
        ):
            body.append(lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"code block opened at line {i + 1} is never closed")
        found.append(
            Block(
                lang=info[0] if info else "",
                tags=tuple(info[1:]),
                code="\n".join(body) + "\n",
                line=i + 2,
            )
        )
        i = j + 1
    return found


def main(path: Path) -> int:
    found = blocks(path.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": "readme"}
    ran = 0
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)
        for index, block in enumerate(found):
            if block.lang != "python" or "no-run" in block.tags:
                continue
            line = block.line
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile("\n" * (line - 1) + block.code, str(path), "exec"), namespace)
            ran += 1
            following = found[index + 1] if index + 1 < len(found) else None
            if following and following.lang == "output" and printed.getvalue() != following.code:
                print(
                    f"{path}:{line}: the block printed\n{printed.getvalue()}"
                    f"instead of the output block at line {following.line}:\n{following.code}",
                    file=sys.stderr,
                )
                return 1
    if not ran:
        print(f"{path}: no python block to run", file=sys.stderr)
        return 1
    print(f"{path}: {ran} python blocks ran and printed what the file shows")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
