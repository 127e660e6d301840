"""Shared fixtures. The reference graph itself lives in ``tests/reference.py``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# With --import-mode=importlib, pytest does not put the repository root on sys.path, so
# `tests.reference` (shared by several test modules) would only import under `python -m pytest`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from metaxy_core import FeatureGraph, FeatureSpec  # noqa: E402
from tests.reference import reference_graph as _reference_graph  # noqa: E402
from tests.reference import reference_specs as _reference_specs  # noqa: E402

if TYPE_CHECKING:
    import dagster as dg


@pytest.fixture
def reference_specs() -> list[FeatureSpec]:
    """The reference features at code version "1"; import ``tests.reference`` to bump some."""
    return _reference_specs()


@pytest.fixture
def reference_graph() -> FeatureGraph:
    """The reference graph at code version "1"."""
    return _reference_graph()


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """An ephemeral Dagster instance, disposed after the test: it holds an in-memory SQLite
    connection, which Python 3.13 reports as an unraisable ResourceWarning if left to the GC."""
    import dagster as dg  # only the tests that run Dagster pay for importing it

    with dg.DagsterInstance.ephemeral() as instance:
        yield instance
