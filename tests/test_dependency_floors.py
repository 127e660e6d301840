"""The dependency floors in ``pyproject.toml`` are the versions CI tests, not guesses.

``requirements-min.lock`` (installed on the lowest Python by ``.ci/run``) pins every runtime
dependency at exactly the floor ``pyproject.toml`` declares, and ``requirements.lock`` pins each
inside its declared range; so a floor can only move together with the lock that tests it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest needs tomli below 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ["requirements.lock", "requirements-min.lock"]
# The Python each lock is installed on (the Makefile's choice), for requirements with markers.
LOCK_PYTHON = {"requirements.lock": "3.13", "requirements-min.lock": "3.10"}


def _runtime_requirements(lock: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    environment = {"python_version": LOCK_PYTHON[lock]}
    return [
        r
        for r in map(Requirement, project["dependencies"])
        if r.marker is None or r.marker.evaluate(environment)
    ]


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _floor(requirement: Requirement) -> Version:
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    assert len(floors) == 1, f"{requirement}: declare one floor (>=) or one exact version (==)"
    return floors[0]


@pytest.mark.parametrize("lock", LOCKS)
def test_each_lock_pins_every_runtime_dependency_inside_its_range(lock: str) -> None:
    pins = _pins(lock)
    outside = {}
    for requirement in _runtime_requirements(lock):
        version = pins.get(canonicalize_name(requirement.name))
        if version is None or version not in requirement.specifier:
            outside[str(requirement)] = version
    assert outside == {}


def test_the_min_lock_pins_every_runtime_dependency_at_its_floor() -> None:
    pins = _pins("requirements-min.lock")
    not_at_floor = {
        str(r): pins.get(canonicalize_name(r.name))
        for r in _runtime_requirements("requirements-min.lock")
        if Version(pins.get(canonicalize_name(r.name), "0")) != _floor(r)
    }
    assert not_at_floor == {}
