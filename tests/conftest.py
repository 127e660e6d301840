"""Shared fixtures. The reference graph itself lives in ``tests/reference.py``."""

from __future__ import annotations

import os
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

from bench.s3_server import local_s3_server  # noqa: E402
from metaxy_core import FeatureGraph, FeatureSpec  # noqa: E402
from metaxy_core.testing import S3_BUCKET_VARIABLE  # noqa: E402
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


S3_BUCKET = "metaxy-tests"


@pytest.fixture(scope="session", autouse=True)
def s3_server(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A real S3 server (:func:`bench.s3_server.local_s3_server`) for the session's
    ``delta-s3`` stores and S3 tests, started only when one was collected; its endpoint,
    credentials and bucket go to the ``AWS_*`` and ``METAXY_TEST_S3_BUCKET`` variables, which
    ``make_store("delta-s3", ...)`` and child processes read. Yields the endpoint."""
    if not any(
        "delta-s3" in item.nodeid or item.get_closest_marker("s3") for item in request.session.items
    ):
        yield None
        return
    import boto3

    with local_s3_server() as endpoint:
        variables = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "metaxy-test-key",
            "AWS_SECRET_ACCESS_KEY": "metaxy-test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            S3_BUCKET_VARIABLE: S3_BUCKET,
        }
        saved = {k: os.environ.get(k) for k in variables}
        os.environ.update(variables)
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
            yield endpoint
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
