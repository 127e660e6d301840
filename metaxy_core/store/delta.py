"""A store of Delta Lake tables, at a local path or on object storage, with many writers.

Layout under the store's URI: one Delta table per feature, ``features/<key>`` (``/`` in the
key written ``__``), holding every row ever written (the history), each row tagged with the
random 63-bit id of its write (``metaxy_write_id``); and two tables of the store's own:
``_metaxy/writes``, the write log (one row per write: its sequence, id, feature, row count,
run id, time, feature version with its field recipes, id columns), and ``_metaxy/records``
(graph snapshots and audit rows, see :mod:`metaxy_core.store.snapshots`).

A write appends its rows to the feature's table (one commit, however many chunks), then one
row to the log, numbered by a Delta application transaction (see
:mod:`metaxy_core.store._delta_log`): that number is the write sequence. Rows count once their
write is in the log: a reader reads the log first and joins each feature's rows to it, so a
crash between the two commits leaves rows nobody sees, and a reader never sees half a write.
No process holds a lock; every commit is Delta's optimistic, put-if-absent commit.

The current rows of a feature are its rows of the latest logged write of every sample, less
deleted samples; the Polars engine resolves increments over lazy scans of the tables (columns
and predicates pushed into the Parquet reads).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from metaxy_core import columns as c
from metaxy_core.engines.polars import PolarsEngine
from metaxy_core.errors import ColumnTypeError, StoreFormatError
from metaxy_core.graph import FeatureGraph
from metaxy_core.hashing import HASH_ALGORITHM
from metaxy_core.store._delta_log import (
    LogRows,
    Tables,
    append_numbered,
    ensure_table,
    retry_commits,
)
from metaxy_core.store.base import Engine, MetadataStore
from metaxy_core.store.snapshots import Record

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DeltaMetadataStore"]

FORMAT_VERSION = "1"
WRITE_ID = "metaxy_write_id"
"""The id of the write a stored row belongs to; replaced by its write sequence when read."""
_INFO = json.dumps(
    {"format_version": FORMAT_VERSION, "hash_algorithm": HASH_ALGORITHM, "store": "metaxy"},
    sort_keys=True,
)
_WRITES_SCHEMA = pa.schema(
    [
        ("write_seq", pa.int64()),
        ("write_id", pa.int64()),
        ("feature", pa.string()),
        ("rows", pa.int64()),
        ("deleted", pa.bool_()),
        ("run_id", pa.string()),
        ("written_at", pa.timestamp("us", tz="UTC")),
        ("feature_version", pa.string()),
        ("recipes", pa.string()),
        ("id_columns", pa.list_(pa.string())),
    ]
)
_RECORDS_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("body", pa.string()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class _Session:
    """What one operation reads once: the write log as it was when the operation began."""

    writes: pl.DataFrame
    views: list[str] = field(default_factory=list)
    """Spark views of current rows made for this operation (the Spark engine's)."""


class DeltaMetadataStore(MetadataStore):
    """Feature metadata in Delta Lake tables, at a local path or ``s3://bucket/prefix``.

    Args:
        graph: the feature graph.
        uri: a local folder (created on first write) or an object-storage URI such as
            ``s3://bucket/prefix``.
        storage_options: options of the object store (``deltalake``'s), e.g.
            ``{"aws_endpoint_url": ..., "aws_access_key_id": ...}``; by default the usual
            ``AWS_*`` environment variables are read. Never shown in ``repr`` or errors.
        commit_attempts: tries of one write's log commit while other writers take sequence
            numbers first.
        engine: ``"polars"`` (default) resolves increments over lazy Polars scans of the
            tables; ``"spark"`` resolves them in Spark SQL (see
            :mod:`metaxy_core.engines.spark`), reading the tables' Parquet files.
        spark: the SparkSession of ``engine="spark"``; by default the process's active
            session, else a local one (:func:`metaxy_core.engines.spark.local_session`).

    Many processes and machines may write at once: see the module's documentation.

    >>> import tempfile
    >>> from metaxy_core import FeatureGraph, FeatureSpec
    >>> graph = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"], fields=["audio"])])
    >>> store = DeltaMetadataStore(graph, tempfile.mkdtemp())
    >>> clips = pl.DataFrame({"id": ["a", "b"], "metaxy_data_version__audio": ["1", "2"]})
    >>> store.write("clips", clips).write_seq
    1
    >>> store.resolve_update("clips", samples=clips).counts
    IncrementCounts(new=0, stale=0, orphaned=0, failed=0)
    """

    _keeps_records = True

    def __init__(
        self,
        graph: FeatureGraph,
        uri: str | Path,
        *,
        storage_options: Mapping[str, str] | None = None,
        commit_attempts: int = 200,
        engine: Literal["polars", "spark"] = "polars",
        spark: SparkSession | None = None,
    ) -> None:
        super().__init__(graph)
        if engine not in ("polars", "spark"):
            raise ValueError(f"engine must be 'polars' or 'spark', got {engine!r}.")
        self.engine_name = engine
        self._spark = spark
        self.uri = str(uri).rstrip("/")
        self.commit_attempts = commit_attempts
        self._options = dict(storage_options or {})
        self._tables = Tables(self._options)
        self._writes = LogRows(self._options, _WRITES_SCHEMA)
        self._records_read = LogRows(self._options, _RECORDS_SCHEMA)

    def __repr__(self) -> str:
        return f"DeltaMetadataStore({self.uri!r})"  # never the storage options: credentials

    @property
    def path(self) -> str:
        """Where the store lives (its URI)."""
        return self.uri

    def _uri(self, *parts: str) -> str:
        return "/".join([self.uri, *parts])

    def _feature_uri(self, feature: str) -> str:
        return self._uri("features", feature.replace("/", "__"))

    # -- sessions -------------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[_Session]:
        with self._tables.operation():
            session = _Session(self._read_writes())
            try:
                yield session
            finally:
                if session.views:
                    from metaxy_core.store._delta_spark import drop_views

                    drop_views(self._spark_session(), session.views)

    def _read_writes(self) -> pl.DataFrame:
        table = self._tables.get(self._uri("_metaxy", "writes"))
        if table is None:
            return self._writes.empty()
        self._check_format(table)
        return self._writes.of(table)

    def _check_format(self, table: DeltaTable) -> None:
        found = table.metadata().description
        if found == _INFO:
            return
        raise StoreFormatError(
            f"store {self.uri!r} holds a write log of another format ({found!r}; this metaxy "
            f"writes {_INFO}). Open it with the metaxy version that wrote it, or start a new "
            "store at another URI and write the root features again."
        )

    def _engine(self, session: _Session) -> Engine:
        if self.engine_name == "spark":
            return self._spark_engine(session)
        return PolarsEngine(lambda f, cols: self._scan(session, f, history=False, columns=cols))

    def _spark_session(self) -> SparkSession:
        if self._spark is None:
            from pyspark.sql import SparkSession

            from metaxy_core.engines.spark import local_session

            self._spark = SparkSession.getActiveSession() or local_session()
        return self._spark

    def _spark_engine(self, session: _Session) -> Engine:
        from metaxy_core.engines.spark import SparkEngine
        from metaxy_core.store._delta_spark import current_rows_view

        spark = self._spark_session()
        made: dict[str, tuple[str, dict[str, pa.DataType]] | None] = {}

        def view(feature: str) -> tuple[str, dict[str, pa.DataType]] | None:
            if feature not in made:
                writes = self._writes_of(session, feature)
                made[feature] = None
                if writes.height:
                    ids = list(self.graph[feature].id_columns)
                    uri = self._feature_uri(feature)
                    made[feature] = current_rows_view(
                        spark, uri, self._options, writes, ids, WRITE_ID, session.views
                    )
            return made[feature]

        def table(feature: str) -> str | None:
            found = view(feature)
            return None if found is None else found[0]

        def types(feature: str) -> dict[str, pa.DataType]:
            found = view(feature)
            return {} if found is None else found[1]

        return SparkEngine(spark, table, types)

    # -- reads ----------------------------------------------------------------------------------

    def _writes_of(self, session: _Session, feature: str) -> pl.DataFrame:
        return session.writes.filter(pl.col("feature") == feature)

    def _stored_columns(self, session: _Session, feature: str) -> list[str] | None:
        if self._writes_of(session, feature).height == 0:
            return None
        table = self._tables.get(self._feature_uri(feature))
        if table is None:  # only empty writes so far
            return [*self.graph[feature].id_columns, c.WRITE_SEQ]
        names = [f.name for f in table.schema().fields if f.name != WRITE_ID]
        return [*names, c.WRITE_SEQ]

    def _stored_id_columns(self, session: _Session) -> dict[str, tuple[str, ...]]:
        first = session.writes.sort("write_seq").unique("feature", keep="first")
        return {f: tuple(ids) for f, ids in first.select("feature", "id_columns").iter_rows()}

    def _recipes_by_version(self, session: _Session, feature: str) -> dict[str, dict[str, str]]:
        rows = self._writes_of(session, feature).unique("feature_version", keep="first")
        return {v: json.loads(r) for v, r in rows.select("feature_version", "recipes").iter_rows()}

    def _scan(
        self, session: _Session, feature: str, *, history: bool, columns: Sequence[str] | None
    ) -> pl.LazyFrame | None:
        writes = self._writes_of(session, feature)
        if writes.height == 0:
            return None
        table = self._tables.get(self._feature_uri(feature))
        ids = list(self.graph[feature].id_columns)
        if table is None:
            return pl.LazyFrame(schema={**{i: pl.String for i in ids}, c.WRITE_SEQ: pl.Int64})
        stored = [f.name for f in table.schema().fields if f.name != WRITE_ID]
        wanted = stored if columns is None else [n for n in stored if n in columns]
        read = list(dict.fromkeys([*wanted, *ids, c.DELETED, WRITE_ID]))
        rows = (
            pl.scan_delta(table, storage_options=self._options or None)
            .select(read)
            .join(
                writes.lazy().select(
                    pl.col("write_id").alias(WRITE_ID), pl.col("write_seq").alias(c.WRITE_SEQ)
                ),
                on=WRITE_ID,
                how="inner",
                maintain_order="left",
            )
        )
        if not history:
            rows = rows.filter(pl.col(c.WRITE_SEQ) == pl.col(c.WRITE_SEQ).max().over(ids)).filter(
                ~pl.col(c.DELETED)
            )
        keep = [*wanted, c.WRITE_SEQ] if columns is None or c.WRITE_SEQ in columns else wanted
        return rows.select(keep)

    def last_write_seq(self, feature: str | None = None) -> int:
        writes = self._read_writes()
        if feature is not None:
            writes = writes.filter(pl.col("feature") == feature)
        return int(writes.get_column("write_seq").max() or 0)  # type: ignore[arg-type]

    # -- writes ---------------------------------------------------------------------------------

    def _append(
        self,
        session: _Session,
        feature: str,
        chunks: Iterable[pl.DataFrame],
        recipes: Mapping[str, str],
    ) -> int:
        write_id = secrets.randbits(63)
        rows, deleted, run_id = self._commit_rows(feature, chunks, write_id)
        writes_uri = self._uri("_metaxy", "writes")
        ensure_table(self._tables, writes_uri, _WRITES_SCHEMA, _INFO)
        entry = {
            "write_id": write_id,
            "feature": feature,
            "rows": rows,
            "deleted": deleted,
            "run_id": run_id,
            "written_at": datetime.now(timezone.utc),
            "feature_version": self.graph.versions.features[feature],
            "recipes": json.dumps(dict(sorted(recipes.items()))),
            "id_columns": list(self.graph[feature].id_columns),
        }
        return append_numbered(
            writes_uri,
            self._tables,
            self._writes,
            "write_seq",
            lambda seq: pa.Table.from_pylist([{"write_seq": seq, **entry}], _WRITES_SCHEMA),
            attempts=self.commit_attempts,
        )

    def _commit_rows(
        self, feature: str, chunks: Iterable[pl.DataFrame], write_id: int
    ) -> tuple[int, bool, str | None]:
        """Append every chunk to the feature's table in one commit; returns the row count,
        whether it deletes, and its run id. Nothing is visible until the log names it."""
        it = iter(chunks)
        first = next(it, None)
        if first is None:
            return 0, False, None
        uri = self._feature_uri(feature)
        tagged_first = _tag(_conform(first, _check_types(feature, first, {})), write_id)
        ensure_table(self._tables, uri, tagged_first.to_arrow().schema, f"metaxy {feature}")
        table = self._tables.get(uri)
        assert table is not None, uri
        stored = _stored_schema(table)
        schema = _check_types(feature, first, stored)
        counted = {"rows": 0}

        blind = set(schema) <= set(stored) and all(stored[n] != pl.Null for n in schema)
        # A blind append has the table's columns, in its order: nulls for those it lacks.
        missing = {n: t for n, t in stored.items() if n not in schema and n != WRITE_ID}
        missing = missing if blind else {}
        order = list(stored) if blind else None

        def shaped(chunk: pl.DataFrame) -> pl.DataFrame:
            frame = _tag(_conform(chunk, schema), write_id)
            if missing:
                frame = frame.with_columns(
                    pl.lit(None, dtype=t).alias(n) for n, t in missing.items()
                )
            return frame if order is None else frame.select(order)

        def batches() -> Iterator[pa.RecordBatch]:
            for index, chunk in enumerate((first, *it)):
                if index:  # the first was checked above
                    _check_types(feature, chunk, schema)
                counted["rows"] += chunk.height
                yield from shaped(chunk).to_arrow().to_batches()

        arrow_schema = shaped(first.head(0)).to_arrow().schema
        # Kept whole, so that a commit that lost to another (the table's creation, a new
        # column) is tried again; appends of rows alone commute, and deltalake retries those.
        kept = list(batches())

        def commit(again: bool) -> None:
            write_deltalake(
                self._tables.get(uri, refresh=again) or uri,
                pa.Table.from_batches(kept, arrow_schema),
                mode="append",
                schema_mode=None if blind else "merge",
                commit_properties=CommitProperties(max_commit_retries=self.commit_attempts),
            )

        retry_commits(commit, uri, attempts=self.commit_attempts)
        deleted = first.height > 0 and bool(first.get_column(c.DELETED).all())
        run_id = first.get_column(c.RUN_ID)[0] if first.height else None
        return counted["rows"], deleted, run_id

    # -- records --------------------------------------------------------------------------------

    def _record(self, session: _Session, kind: str, key: str, body: str) -> None:
        uri = self._uri("_metaxy", "records")
        ensure_table(self._tables, uri, _RECORDS_SCHEMA, _INFO)
        now = datetime.now(timezone.utc)
        append_numbered(
            uri,
            self._tables,
            self._records_read,
            "seq",
            lambda seq: pa.Table.from_pylist(
                [{"seq": seq, "kind": kind, "key": key, "body": body, "recorded_at": now}],
                _RECORDS_SCHEMA,
            ),
            attempts=self.commit_attempts,
        )

    def _records(self, session: _Session, kind: str) -> list[Record]:
        table = self._tables.get(self._uri("_metaxy", "records"))
        if table is None:
            return []
        rows = self._records_read.of(table).filter(pl.col("kind") == kind).sort("seq")
        return [Record(*row) for row in rows.select(*_RECORDS_SCHEMA.names).iter_rows()]

    # -- maintenance ----------------------------------------------------------------------------

    def vacuum(self, *, retention_hours: int = 168) -> dict[str, int]:
        """Compact every table's small files and delete files unused for ``retention_hours``.

        Never run by metaxy itself. Safe while others write (compaction commits like any
        writer); readers older than ``retention_hours`` may lose files they still read.
        Returns the number of files deleted per table.
        """
        uris = [self._uri("_metaxy", "writes"), self._uri("_metaxy", "records")]
        uris += [self._feature_uri(f) for f in self.graph.topological_order()]
        removed: dict[str, int] = {}
        for uri in uris:
            table = self._tables.get(uri, refresh=True)
            if table is None:
                continue
            table.optimize.compact()
            files = table.vacuum(retention_hours, dry_run=False, enforce_retention_duration=False)
            removed[uri.removeprefix(self.uri + "/")] = len(files)
        return removed


def _stored_schema(table: DeltaTable) -> dict[str, pl.DataType]:
    arrow = pa.schema(table.schema())
    frame = pl.from_arrow(arrow.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return dict(frame.schema)


def _check_types(
    feature: str, chunk: pl.DataFrame, stored: Mapping[str, pl.DataType]
) -> dict[str, pl.DataType]:
    """The types the chunk's columns are written with: the stored ones (a chunk's all-null
    column takes them), or its own for new columns. Raises on a type that differs."""
    out: dict[str, pl.DataType] = {}
    for name, given in chunk.schema.items():
        held = stored.get(name)
        dtype = _delta_type(given)
        if given != dtype:
            _check_microseconds(feature, name, chunk)
        if held is None or held == pl.Null or held == dtype or dtype == pl.Null:
            # Only nulls so far told no type: this write's type holds (Delta merges the schema).
            out[name] = dtype if held is None or held == pl.Null else held
            continue
        if _same_storage(held, dtype):
            out[name] = held
            continue
        raise ColumnTypeError(
            f"feature {feature!r}: column {name!r} has type {dtype}, but the store holds it as "
            f"{held}. Cast the column to {held} before writing."
        )
    return out


def _delta_type(dtype: pl.DataType) -> pl.DataType:
    """The type Delta keeps a column as: timestamps to the microsecond."""
    if isinstance(dtype, pl.Datetime) and dtype.time_unit != "us":
        return pl.Datetime("us", dtype.time_zone)
    return dtype


def _check_microseconds(feature: str, name: str, chunk: pl.DataFrame) -> None:
    """Refuse timestamps finer than Delta keeps: they would come back as other ids."""
    finer = chunk.select((pl.col(name).dt.epoch("ns") % 1000 != 0).any()).item()
    if finer:
        raise ColumnTypeError(
            f"feature {feature!r}: column {name!r} holds timestamps finer than a microsecond, "
            "which a Delta table cannot keep. Round the column to microseconds "
            "(.dt.truncate('1us')), or use a DuckDB store."
        )


def _same_storage(held: pl.DataType, dtype: pl.DataType) -> bool:
    """Types Delta stores alike (it has no unsigned or view types)."""
    return held == dtype or (held.is_integer() and dtype.is_integer() and held.is_signed_integer())


def _tag(chunk: pl.DataFrame, write_id: int) -> pl.DataFrame:
    return chunk.with_columns(pl.lit(write_id, dtype=pl.Int64).alias(WRITE_ID))


def _conform(chunk: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return chunk.cast({n: t for n, t in schema.items() if chunk.schema[n] != t})
