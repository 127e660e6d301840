"""The base install never needs an extra: importing metaxy_core and metaxy_dagster imports
neither Ray nor SQLModel; only their integration modules do (``pip install '.[ray]'`` and
``'.[sqlmodel]'`` in a fresh venv are checked by .ci/run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("ray", "sqlmodel")

_LOADED = """
import json, sys
import metaxy_core, metaxy_dagster, metaxy_core.integrations
{extra}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {extras!r})))
"""


def loaded(extra: str = "") -> list[str]:
    """Which of the extras' libraries a fresh interpreter holds after the imports."""
    code = _LOADED.format(extra=extra, extras=set(EXTRAS))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout)
    return found


def test_the_packages_import_no_extra() -> None:
    assert loaded() == []


@pytest.mark.parametrize(
    ("extra", "libraries"),
    # The SQLModel integration reads the classes through pydantic, which SQLModel builds on.
    [("ray", ["ray"]), ("sqlmodel", [])],
)
def test_an_integration_imports_no_other_extra(extra: str, libraries: list[str]) -> None:
    assert loaded(f"import metaxy_core.integrations.{extra}") == libraries
