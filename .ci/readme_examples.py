"""Run the README's Python examples against an installed package, as a user would.

``python .ci/readme_examples.py README.md`` runs every ```python block (but ``no-run`` ones) of
the file in order, in one namespace, in an empty temporary directory, and checks that a block
followed by an ```output block prints exactly that. Standard library only: it runs in a venv
that holds nothing but ``pip install .``. tests/test_docs.py does the same inside the suite;
this copy exists because that one needs pytest and the repository on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^`]*?)\s*$")


def blocks(text: str) -> list[tuple[list[str], str, int]]:
    """``(info words, code, first code line)`` of each fenced block."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening[1]
        j = i + 1
        while j < len(lines) and not (
            lines[j].startswith(fence) and not lines[j].strip(fence[0]).strip()
        ):
            j += 1
        found.append((opening[2].split(), "".join(f"{line}\n" for line in lines[i + 1 : j]), i + 2))
        i = j + 1
    return found


def main(path: Path) -> int:
    found = blocks(path.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": "readme"}
    ran = 0
    with tempfile.TemporaryDirectory() as workdir:
        os.chdir(workdir)
        for index, (info, code, line) in enumerate(found):
            if info[:1] != ["python"] or "no-run" in info:
                continue
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)
            ran += 1
            following = found[index + 1] if index + 1 < len(found) else None
            if following and following[0][:1] == ["output"] and printed.getvalue() != following[1]:
                print(
                    f"{path}:{line}: the block printed\n{printed.getvalue()}"
                    f"instead of the output block at line {following[2]}:\n{following[1]}",
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
