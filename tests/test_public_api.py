"""One public door per package: a sorted ``__all__`` that is exactly what the package exposes,
and layers that point one way (``metaxy_core`` never imports ``dagster``).

The rule, checked for each package door: every attribute of the package whose name does not
start with ``_`` and that is not a module is in ``__all__``, and vice versa. A submodule is
public only when it is listed in ``__all__`` (``metaxy_core.errors``); such a module must follow
the same rule itself. Submodules a package merely imports (``metaxy_core.graph``) are
implementation: reachable, but not part of the door.
"""

from __future__ import annotations
import __future__

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import metaxy_core
from metaxy_core import errors

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["metaxy_core", "metaxy_dagster"]


def public_names(module: ModuleType) -> set[str]:
    """Names a user sees in ``dir(module)`` that are neither private nor modules."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and value is not __future__.annotations  # `from __future__ import annotations`
    }


def public_modules(module: ModuleType) -> set[str]:
    """Submodules that ``__all__`` lists."""
    return {name for name in module.__all__ if isinstance(getattr(module, name), ModuleType)}


def check_door(module: ModuleType) -> None:
    exported = module.__all__
    assert isinstance(exported, list)
    assert all(isinstance(name, str) for name in exported)
    assert exported == sorted(exported), f"{module.__name__}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{module.__name__}.__all__ repeats a name"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == [], f"{module.__name__}.__all__ names what it does not define"
    modules = public_modules(module)
    for name in modules:
        submodule = getattr(module, name)
        assert submodule.__name__ == f"{module.__name__}.{name}", "only own submodules"
        check_door(submodule)
    assert set(exported) == public_names(module) | modules


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_matches_the_public_names(package: str) -> None:
    check_door(importlib.import_module(package))


def test_core_door_has_the_core_names() -> None:
    for name in ["FeatureSpec", "FieldSpec", "FieldDep", "FeatureGraph", "errors"]:
        assert name in metaxy_core.__all__
    assert metaxy_core.errors is errors
    assert public_modules(metaxy_core) >= {"errors"}


def test_the_rule_catches_a_leak() -> None:
    """The check fails on a module that exposes a name ``__all__`` does not list, and on one
    whose ``__all__`` is unsorted, so it cannot pass vacuously."""
    leaky = ModuleType("leaky")
    leaky.__all__ = ["a"]  # type: ignore[attr-defined]
    leaky.a = 1  # type: ignore[attr-defined]
    leaky.b = 2  # type: ignore[attr-defined]
    with pytest.raises(AssertionError):
        check_door(leaky)
    unsorted = ModuleType("unsorted")
    unsorted.__all__ = ["b", "a"]  # type: ignore[attr-defined]
    unsorted.a = unsorted.b = 1  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="not sorted"):
        check_door(unsorted)


def test_every_error_derives_from_metaxy_error() -> None:
    for name in errors.__all__:
        error = getattr(errors, name)
        assert isinstance(error, type)
        assert issubclass(error, errors.MetaxyError)
    # Each specific error is also the builtin a caller would already catch.
    assert issubclass(errors.GraphError, ValueError)
    assert issubclass(errors.FeatureNotFoundError, KeyError)
    assert issubclass(errors.FieldNotFoundError, KeyError)
    assert issubclass(errors.WriteError, ValueError)
    assert issubclass(errors.ColumnTypeError, TypeError)
    assert issubclass(errors.StoreError, RuntimeError)
    assert issubclass(errors.StoreLockedError, TimeoutError)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_submodule_all_names_what_it_defines(package: str) -> None:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", [])
        missing = [name for name in exported if not hasattr(module, name)]
        assert missing == [], f"{info.name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_ship_py_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()


# -- layers point one way ---------------------------------------------------------------------

_IMPORT_EVERYTHING = """
import json, pkgutil, sys
import metaxy_core
for info in pkgutil.walk_packages(metaxy_core.__path__, prefix="metaxy_core."):
    __import__(info.name)
print(json.dumps(sorted(
    m for m in sys.modules if m == "dagster" or m.startswith(("dagster.", "dagster_"))
)))
"""


def test_importing_metaxy_core_does_not_import_dagster() -> None:
    """In a fresh interpreter: `import metaxy_core` and every one of its submodules."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_metaxy_core_source_never_imports_dagster() -> None:
    """Also imports inside functions, which importing the modules would not run."""
    offenders = []
    for path in sorted((ROOT / "metaxy_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "dagster" or top.startswith("dagster_") or top == "metaxy_dagster":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == []
