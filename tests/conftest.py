"""Shared fixtures. The reference graph itself lives in ``tests/reference.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# With --import-mode=importlib, pytest does not put the repository root on sys.path, so
# `tests.reference` (shared by several test modules) would only import under `python -m pytest`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from metaxy_core import FeatureGraph, FeatureSpec  # noqa: E402
from tests.reference import reference_graph as _reference_graph  # noqa: E402
from tests.reference import reference_specs as _reference_specs  # noqa: E402


@pytest.fixture
def reference_specs() -> list[FeatureSpec]:
    """The reference features at code version "1"; import ``tests.reference`` to bump some."""
    return _reference_specs()


@pytest.fixture
def reference_graph() -> FeatureGraph:
    """The reference graph at code version "1"."""
    return _reference_graph()
