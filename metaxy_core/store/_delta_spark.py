"""The Delta store's current rows as Spark views, for the Spark engine.

Spark reads a feature's Delta table through the Parquet files of the table's current version
(``deltalake`` lists them; no Delta jars needed), joins them to the write log as the operation
read it, and keeps each sample's rows of its latest write, less deleted samples: the same
current rows the Polars engine scans. Object storage is read through Spark's own file systems:
``s3://`` paths are given to Spark as ``s3a://``, which needs Hadoop's S3A connector and
credentials in the user's session (the bundled jars of the ``pyspark`` wheel have none).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from metaxy_core import columns as c
from metaxy_core.engines.sql import quote
from metaxy_core.store._delta_log import open_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

__all__ = ["current_rows_view", "drop_views"]

_ids = itertools.count()


def _spark_path(uri: str) -> str:
    return "s3a://" + uri.removeprefix("s3://") if uri.startswith("s3://") else uri


def current_rows_view(
    spark: SparkSession,
    uri: str,
    options: dict[str, str],
    writes: pl.DataFrame,
    ids: list[str],
    write_id: str,
    views: list[str],
) -> tuple[str, dict[str, pa.DataType]]:
    """A temporary view (quoted name) of the current rows of the feature table at ``uri``,
    whose logged writes are ``writes``, and the Arrow types of its columns. The view's name
    is added to ``views`` for the caller to drop."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    table = open_table(uri, options)
    name = f"__metaxy_delta_{next(_ids)}"
    if table is None:  # only empty writes so far
        empty = pa.schema([*((i, pa.string()) for i in ids), (c.WRITE_SEQ, pa.int64())])
        spark.createDataFrame(empty.empty_table()).createOrReplaceTempView(name)
        views.append(name)
        return quote(name), dict(zip(empty.names, empty.types, strict=True))
    schema = pa.schema(table.schema())
    stored = [n for n in schema.names if n != write_id]
    files = [_spark_path(f) for f in table.file_uris()]
    if files:
        rows = spark.read.option("mergeSchema", "true").schema(_spark_schema(spark, schema))
        frame = rows.parquet(*files)
    else:
        frame = spark.createDataFrame(schema.empty_table())
    logged = writes.select(
        pl.col("write_id").alias(write_id), pl.col("write_seq").alias(c.WRITE_SEQ)
    )
    log = spark.createDataFrame(logged.to_arrow(compat_level=pl.CompatLevel.oldest()))
    latest = F.max(c.WRITE_SEQ).over(Window.partitionBy(*ids))
    current = (
        frame.join(log, on=write_id, how="inner")
        .withColumn("__metaxy_latest", latest)
        .where((F.col(c.WRITE_SEQ) == F.col("__metaxy_latest")) & ~F.col(c.DELETED))
        .select(*stored, c.WRITE_SEQ)
    )
    current.createOrReplaceTempView(name)
    views.append(name)
    types = {n: schema.field(n).type for n in stored}
    return quote(name), {**types, c.WRITE_SEQ: pa.int64()}


def _spark_schema(spark: SparkSession, schema: pa.Schema) -> StructType:
    """The Spark schema of an Arrow schema (files lacking a column read it as null)."""
    return spark.createDataFrame(schema.empty_table()).schema


def drop_views(spark: SparkSession, views: list[str]) -> None:
    """Drop the temporary views ``current_rows_view`` made."""
    while views:
        spark.catalog.dropTempView(views.pop())
