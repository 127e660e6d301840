"""Helpers for testing code that uses metaxy: stores on every engine, and frame builders.

>>> from metaxy_core import FeatureGraph, FeatureSpec
>>> graph = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"], fields=["audio"])])
>>> store = make_store("memory", graph)
>>> store.write("clips", root_samples("id", ["a", "b"], audio=["h1", "h2"])).rows
2
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import polars as pl
import polars.testing

from metaxy_core.columns import data_version_column
from metaxy_core.graph import FeatureGraph
from metaxy_core.store.base import MetadataStore
from metaxy_core.store.duckdb import DuckDBMetadataStore
from metaxy_core.store.memory import InMemoryMetadataStore

__all__ = [
    "QUICK_STORE_KINDS",
    "S3_BUCKET_VARIABLE",
    "STORE_KINDS",
    "assert_same_rows",
    "make_store",
    "root_samples",
]

STORE_KINDS: Final = (
    "memory",
    "duckdb-memory",
    "duckdb-file-polars",
    "duckdb-file-sql",
    "clickhouse",
    "delta-file",
    "delta-s3",
    "delta-spark",
)
"""Every store and engine combination: parametrize a fixture over these."""

QUICK_STORE_KINDS: Final = tuple(k for k in STORE_KINDS if k != "delta-spark")
"""The kinds whose queries take milliseconds. Property tests run many examples on these and
few on ``delta-spark``, where each query is a Spark job of about a second."""

S3_BUCKET_VARIABLE: Final = "METAXY_TEST_S3_BUCKET"
"""Environment variable naming the bucket of ``delta-s3`` stores. Their endpoint and
credentials come from the usual ``AWS_*`` variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...), as a test session's S3 server sets them."""


def make_store(kind: str, graph: FeatureGraph, directory: Path | None = None) -> MetadataStore:
    """A fresh store of ``kind`` (one of :data:`STORE_KINDS`); file stores go in ``directory``."""
    if kind == "memory":
        return InMemoryMetadataStore(graph)
    if kind == "duckdb-memory":
        return DuckDBMetadataStore(graph, ":memory:", engine="duckdb")
    if kind in ("duckdb-file-polars", "duckdb-file-sql"):
        if directory is None:
            raise ValueError(f"store kind {kind!r} needs a directory for its file")
        path = Path(directory) / "metaxy.duckdb"
        if kind.endswith("polars"):
            return DuckDBMetadataStore(graph, path, engine="polars")
        return DuckDBMetadataStore(graph, path, engine="duckdb")
    if kind == "clickhouse":
        if directory is None:
            raise ValueError(f"store kind {kind!r} needs a directory for its data")
        from metaxy_core.store.clickhouse import ClickHouseMetadataStore  # needs chdb

        return ClickHouseMetadataStore(graph, Path(directory) / "clickhouse")
    if kind.startswith("delta-"):
        from metaxy_core.store.delta import DeltaMetadataStore  # the optional extra `delta`
    if kind == "delta-file":
        if directory is None:
            raise ValueError(f"store kind {kind!r} needs a directory for its tables")
        return DeltaMetadataStore(graph, Path(directory) / "metaxy-delta")
    if kind == "delta-spark":  # the optional extra `spark`: the process's local SparkSession
        if directory is None:
            raise ValueError(f"store kind {kind!r} needs a directory for its tables")
        return DeltaMetadataStore(graph, Path(directory) / "metaxy-delta", engine="spark")
    if kind == "delta-s3":
        bucket = os.environ.get(S3_BUCKET_VARIABLE)
        if not bucket:
            raise ValueError(
                f"store kind {kind!r} needs an S3 bucket: set {S3_BUCKET_VARIABLE} and the "
                "AWS_* variables of its server (tests/conftest.py starts one)."
            )
        return DeltaMetadataStore(graph, f"s3://{bucket}/{uuid.uuid4().hex}")
    raise ValueError(f"unknown store kind {kind!r}; choose one of {', '.join(STORE_KINDS)}")


def root_samples(
    id_column: str, ids: Sequence[Any], **data_versions: Sequence[str]
) -> pl.DataFrame:
    """A frame of root samples: ids and one data version column per field keyword."""
    return pl.DataFrame(
        {
            id_column: list(ids),
            **{data_version_column(f): list(v) for f, v in data_versions.items()},
        }
    )


def assert_same_rows(left: pl.DataFrame, right: pl.DataFrame, *, by: Sequence[str]) -> None:
    """Assert two frames hold the same rows, whatever their order."""
    polars.testing.assert_frame_equal(left.sort(by), right.sort(by), check_column_order=False)
