"""Feature metadata in ClickHouse: embedded (chdb) or a server, with the same code.

Layout, in one database: per feature an append-only MergeTree ``"<key>:history"`` of every
row ever written (soft deletes are rows with ``metaxy_deleted``); ``metaxy_writes`` logs every
committed write; ``metaxy_claims`` the write sequences writers claimed (and
``metaxy_record_claims`` the numbers of records);
``metaxy_feature_versions``, ``metaxy_id_columns``, ``metaxy_store_info`` and
``metaxy_records`` as in the DuckDB store; ``metaxy_schemas`` the Arrow type of every column
as written, so reads give back the types a frame had (ClickHouse has one timestamp type with a
time zone).

ClickHouse has no multi-statement transactions, so a write **commits** by its row in
``metaxy_writes``, appended after all its rows: the current rows of a feature are the latest
row of every sample among committed writes, so a write that fails half way is never seen (its
rows are deleted if the writer is still alive). Write sequences come from claims: a writer
appends a claim for the next free sequence, then reads the claims of that sequence; it owns it
only if its claim is the only one, otherwise it claims again. Any two writers that claim the
same number both see each other's claim unless one read before the other appended, so at most
one of them owns it (on a server this needs reads that see earlier inserts: one replica, or
``insert_quorum`` with ``select_sequential_consistency``). Records (snapshots, audit rows,
failures) are numbered by the same claims, in their own table.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import polars as pl
import pyarrow as pa

from metaxy_core import columns as c
from metaxy_core.engines.clickhouse import ClickHouseEngine, cast_like, clickhouse_type
from metaxy_core.engines.sql import quote, sql_literal
from metaxy_core.errors import ColumnTypeError, ConfigError, StoreError, StoreFormatError
from metaxy_core.graph import FeatureGraph
from metaxy_core.hashing import HASH_ALGORITHM
from metaxy_core.store._clickhouse_client import ChdbClient, ClickHouseClient, ServerClient
from metaxy_core.store.base import Engine, MetadataStore, recipes_by_version
from metaxy_core.store.snapshots import Record
from metaxy_core.store.uri import without_credentials

__all__ = ["ClickHouseMetadataStore"]

FORMAT_VERSION = "2"
"""As the DuckDB store's: provenance and data versions are signed 64-bit integers."""

_TABLES = {
    "metaxy_store_info": "key String, value String",
    "metaxy_writes": (
        "write_seq Int64, feature String, rows Int64, deleted Bool, run_id Nullable(String), "
        "written_at DateTime64(6, 'UTC')"
    ),
    "metaxy_claims": "write_seq Int64, token String",
    "metaxy_record_claims": "seq Int64, token String",
    "metaxy_feature_versions": (
        "feature String, feature_version String, field String, recipe String"
    ),
    "metaxy_id_columns": "feature String, id_columns Array(String), write_seq Int64",
    "metaxy_schemas": "feature String, write_seq Int64, arrow_schema String",
    "metaxy_records": (
        "seq Int64, kind String, key String, body String, recorded_at DateTime64(6, 'UTC')"
    ),
}


class ClickHouseMetadataStore(MetadataStore):
    """Feature metadata in ClickHouse, increments resolved inside it.

    Args:
        graph: the feature graph.
        client: where ClickHouse is: a directory for embedded ClickHouse (chdb), or a
            :class:`~metaxy_core.store._clickhouse_client.ServerClient`; see
            :meth:`server` for a server.
        database: the database holding the store's tables, created on first use.

    >>> import tempfile
    >>> from metaxy_core import FeatureGraph, FeatureSpec
    >>> graph = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"], fields=["audio"])])
    >>> store = ClickHouseMetadataStore(graph, tempfile.mkdtemp())
    >>> import polars as pl
    >>> clips = pl.DataFrame({"id": ["a", "b"], "metaxy_data_version__audio": ["1", "2"]})
    >>> store.write("clips", clips).rows
    2
    >>> store.resolve_update("clips", samples=clips).counts
    IncrementCounts(new=0, stale=0, orphaned=0, failed=0)
    """

    engine_name = "clickhouse"

    _keeps_records = True

    def __init__(
        self,
        graph: FeatureGraph,
        client: str | Path | ClickHouseClient,
        *,
        database: str = "metaxy",
    ) -> None:
        super().__init__(graph)
        self.client: ClickHouseClient = (
            ChdbClient(client) if isinstance(client, (str, Path)) else client
        )
        self.database = database
        self._ready = False

    @classmethod
    def server(
        cls,
        graph: FeatureGraph,
        host: str,
        *,
        port: int | None = None,
        database: str = "metaxy",
        username: str | None = None,
        password: str | None = None,
        secure: bool = False,
    ) -> ClickHouseMetadataStore:
        """A store on a ClickHouse server (HTTP interface, through ``clickhouse-connect``).

        The user and password default to ``CLICKHOUSE_USER`` and ``CLICKHOUSE_PASSWORD``.
        Nothing is sent until the first operation.
        """
        client = ServerClient(host, port=port, username=username, password=password, secure=secure)
        return cls(graph, client, database=database)

    @classmethod
    def from_uri(cls, graph: FeatureGraph, uri: str) -> ClickHouseMetadataStore:
        """A store from a URI: ``chdb:///path/to/dir`` (embedded), or
        ``clickhouse://[user[:password]@]host[:port][/database]`` (``clickhouses://`` for
        HTTPS); ``?database=name`` sets the database of a chdb store.

        >>> from metaxy_core import FeatureGraph
        >>> ClickHouseMetadataStore.from_uri(FeatureGraph([]), "clickhouse://ch.internal:8123/meta")
        ClickHouseMetadataStore('clickhouse://ch.internal:8123', database='meta')
        """
        parts = urlsplit(uri)
        query = parse_qs(parts.query)
        if parts.scheme == "chdb" and parts.path:
            database = query.get("database", ["metaxy"])[0]
            return cls(graph, unquote(parts.netloc + parts.path), database=database)
        if parts.scheme in ("clickhouse", "clickhouses") and parts.hostname:
            return cls.server(
                graph,
                parts.hostname,
                port=parts.port,
                database=unquote(parts.path.strip("/")) or "metaxy",
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                secure=parts.scheme == "clickhouses",
            )
        raise ConfigError(
            f"store URI {without_credentials(uri)!r} is not a ClickHouse URI. Use "
            "chdb:///path/to/directory for embedded ClickHouse, or clickhouse://host:8123/database "
            "(clickhouses://host:8443/database for HTTPS) for a server, with the user and "
            "password in CLICKHOUSE_USER and CLICKHOUSE_PASSWORD."
        )

    def __repr__(self) -> str:
        return f"ClickHouseMetadataStore({self.client.description!r}, database={self.database!r})"

    def close(self) -> None:
        """Close the connection; the next operation opens it again. Close an embedded (chdb)
        store before removing its directory: an open one merges its parts in the background,
        writing into the directory while it is being removed."""
        self.client.close()

    # -- connection and format ------------------------------------------------------------------

    def _name(self, table: str) -> str:
        return f"{quote(self.database)}.{quote(table)}"

    def _history(self, feature: str) -> str:
        return self._name(f"{feature}:history")

    def _run(self, sql: str) -> None:
        self.client.command(sql)

    def _query(self, sql: str) -> pa.Table:
        return self.client.query_arrow(sql)

    def _scalar(self, sql: str) -> Any:
        return self._query(sql).column(0)[0].as_py()

    @contextmanager
    def _session(self) -> Iterator[ClickHouseClient]:
        if not self._ready:
            self._setup()
        yield self.client

    def _setup(self) -> None:
        self._run(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")
        for table, columns in _TABLES.items():
            self._run(
                f"CREATE TABLE IF NOT EXISTS {self._name(table)} ({columns}) "
                "ENGINE = MergeTree ORDER BY tuple()"
            )
        info = dict(self._rows(f"SELECT key, value FROM {self._name('metaxy_store_info')}"))
        wanted = {"format_version": FORMAT_VERSION, "hash_algorithm": HASH_ALGORITHM}
        if not info:
            values = ", ".join(f"({sql_literal(k)}, {sql_literal(v)})" for k, v in wanted.items())
            self._run(f"INSERT INTO {self._name('metaxy_store_info')} VALUES {values}")
        for key, value in wanted.items():
            if info and info.get(key) != value:
                raise StoreFormatError(
                    f"ClickHouse store {self.client.description} (database {self.database!r}) "
                    f"was written with {key} {info.get(key)!r}, but this metaxy uses {value!r}. "
                    "Open it with the metaxy version that wrote it, or use a new database and "
                    "write the root features again."
                )
        self._ready = True

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        table = self._query(sql)
        return list(zip(*(col.to_pylist() for col in table.columns), strict=True))

    # -- reading --------------------------------------------------------------------------------

    def _features(self) -> set[str]:
        """The features with a committed write of rows (an empty write creates no table)."""
        rows = self._rows(
            f"SELECT DISTINCT feature FROM {self._name('metaxy_schemas')} WHERE write_seq IN "
            f"(SELECT write_seq FROM {self._name('metaxy_writes')})"
        )
        return {feature for (feature,) in rows}

    def _committed(self, feature: str) -> str:
        """SQL of every row of committed writes of ``feature``."""
        writes = (
            f"SELECT write_seq FROM {self._name('metaxy_writes')} "
            f"WHERE feature = {sql_literal(feature)}"
        )
        return f"(SELECT * FROM {self._history(feature)} WHERE {quote(c.WRITE_SEQ)} IN ({writes}))"

    def _current(self, feature: str) -> str:
        """SQL of the current rows of ``feature``: the latest committed row of each sample,
        unless it is a tombstone."""
        ids = ", ".join(map(quote, self.graph[feature].id_columns))
        latest = (
            f"SELECT * FROM {self._committed(feature)} AS __metaxy_h "
            f"ORDER BY {quote(c.WRITE_SEQ)} DESC LIMIT 1 BY {ids}"
        )
        live = f"NOT coalesce({quote(c.DELETED)}, false)"
        return f"(SELECT * FROM ({latest}) AS __metaxy_l WHERE {live})"

    def _schema(self, feature: str) -> dict[str, pa.DataType]:
        """The Arrow type of every column of ``feature`` as written (empty if never written)."""
        encoded = self._rows(
            f"SELECT arrow_schema FROM {self._name('metaxy_schemas')} WHERE feature = "
            f"{sql_literal(feature)} AND write_seq IN (SELECT write_seq FROM "
            f"{self._name('metaxy_writes')}) ORDER BY write_seq DESC LIMIT 1"
        )
        if not encoded:
            return {}
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded[0][0])))
        return {f.name: f.type for f in schema}

    def _engine(self, session: ClickHouseClient) -> Engine:
        features = self._features()
        return ClickHouseEngine(
            self.client,
            self.database,
            lambda f: self._current(f) if f in features else None,
            self._schema,
        )

    def _stored_columns(self, session: ClickHouseClient, feature: str) -> list[str] | None:
        return list(self._schema(feature)) or None

    def _stored_id_columns(self, session: ClickHouseClient) -> dict[str, tuple[str, ...]]:
        rows = self._rows(
            f"SELECT feature, argMin(id_columns, write_seq) FROM {self._name('metaxy_id_columns')} "
            "GROUP BY feature"
        )
        return {feature: tuple(ids) for feature, ids in rows}

    def _recipes_by_version(
        self, session: ClickHouseClient, feature: str
    ) -> dict[str, dict[str, str]]:
        rows = self._rows(
            f"SELECT DISTINCT feature_version, field, recipe FROM "
            f"{self._name('metaxy_feature_versions')} WHERE feature = {sql_literal(feature)}"
        )
        return recipes_by_version(rows)

    def _scan(
        self,
        session: ClickHouseClient,
        feature: str,
        *,
        history: bool,
        columns: Sequence[str] | None,
    ) -> pl.LazyFrame | None:
        if feature not in self._features():
            return None
        types = self._schema(feature)
        names = [n for n in (types if columns is None else columns) if n in types]
        source = self._committed(feature) if history else self._current(feature)
        rows = self._query(f"SELECT {', '.join(map(quote, names))} FROM {source} AS __metaxy_s")
        frame = pl.from_arrow(cast_like(rows, types), rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()

    def last_write_seq(self, feature: str | None = None) -> int:
        with self._session():
            where = "" if feature is None else f" WHERE feature = {sql_literal(feature)}"
            return int(
                self._scalar(f"SELECT max(write_seq) FROM {self._name('metaxy_writes')}{where}")
            )

    def _record(self, session: ClickHouseClient, kind: str, key: str, body: str) -> None:
        # Stores from before record claims hold records numbered without one: claims start
        # above those.
        seq = self._claim("metaxy_record_claims", "seq", after="metaxy_records")
        values = ", ".join([str(seq), *map(sql_literal, (kind, key, body)), "now64(6)"])
        self._run(f"INSERT INTO {self._name('metaxy_records')} VALUES ({values})")

    def _records(self, session: ClickHouseClient, kind: str) -> list[Record]:
        rows = self._query(
            f"SELECT seq, kind, key, body, recorded_at FROM {self._name('metaxy_records')} "
            f"WHERE kind = {sql_literal(kind)} ORDER BY seq"
        ).to_pylist()
        return [
            Record(
                r["seq"], r["kind"], r["key"], r["body"], r["recorded_at"].astimezone(timezone.utc)
            )
            for r in rows
        ]

    # -- writing --------------------------------------------------------------------------------

    def _claim(self, table: str, column: str, *, after: str | None = None) -> int:
        """A number of ``column`` in the claims ``table`` that no other writer owns (see the
        module docstring), above every ``column`` of the table ``after`` if given."""
        claims = self._name(table)
        start = f"(SELECT max({column}) FROM {claims})"
        if after is not None:
            start = f"greatest({start}, (SELECT max({column}) FROM {self._name(after)}))"
        for attempt in range(1000):
            token = uuid.uuid4().hex
            seq = int(self._scalar(f"SELECT {start} + 1"))
            self._run(f"INSERT INTO {claims} VALUES ({seq}, {sql_literal(token)})")
            owners = self._rows(f"SELECT token FROM {claims} WHERE {column} = {seq}")
            if owners == [(token,)]:
                return seq
            time.sleep(0.001 * (attempt % 50) * (1 + uuid.uuid4().int % 3))
        raise StoreError(
            f"ClickHouse store {self.client.description}: no number of {table} could be "
            "claimed after 1000 tries; too many writers at once. Retry the write."
        )

    def _append(
        self,
        session: ClickHouseClient,
        feature: str,
        chunks: Iterable[pl.DataFrame],
        recipes: Mapping[str, str],
    ) -> int:
        seq = self._claim("metaxy_claims", "write_seq")
        rows, deleted, run_id = 0, False, None
        schema = self._schema(feature)
        try:
            for index, chunk in enumerate(chunks):
                batch = chunk.with_columns(pl.lit(seq, dtype=pl.Int64).alias(c.WRITE_SEQ))
                arrow = batch.to_arrow()
                if index == 0:
                    deleted = chunk.height > 0 and bool(chunk.get_column(c.DELETED).all())
                    run_id = chunk.get_column(c.RUN_ID)[0] if chunk.height else None
                self._check_arrays(feature, arrow)
                schema = self._evolve(feature, arrow, schema)
                self.client.insert_arrow(
                    self.database, f"{feature}:history", cast_like(arrow, schema)
                )
                rows += chunk.height
            if rows or schema:
                self._save_schema(feature, seq, schema)
            self._commit(feature, seq, rows, deleted, run_id, recipes)
        except BaseException:
            if rows:  # the table exists: this write created or appended to it
                self._run(
                    f"DELETE FROM {self._history(feature)} WHERE {quote(c.WRITE_SEQ)} = {seq}"
                )
            raise
        return seq

    def _commit(
        self,
        feature: str,
        seq: int,
        rows: int,
        deleted: bool,
        run_id: str | None,
        recipes: Mapping[str, str],
    ) -> None:
        """Record the write's versions and id columns, then commit it (``metaxy_writes``)."""
        version = self.graph.versions.features[feature]
        known = self._scalar(
            f"SELECT count() FROM {self._name('metaxy_feature_versions')} WHERE feature = "
            f"{sql_literal(feature)} AND feature_version = {sql_literal(version)}"
        )
        if not known:
            values = ", ".join(
                f"({', '.join(map(sql_literal, (feature, version, f, r)))})"
                for f, r in sorted(recipes.items())
            )
            self._run(f"INSERT INTO {self._name('metaxy_feature_versions')} VALUES {values}")
        if feature not in self._stored_id_columns(self.client):
            ids = ", ".join(map(sql_literal, self.graph[feature].id_columns))
            self._run(
                f"INSERT INTO {self._name('metaxy_id_columns')} VALUES "
                f"({sql_literal(feature)}, [{ids}], {seq})"
            )
        run = "NULL" if run_id is None else sql_literal(run_id)
        self._run(
            f"INSERT INTO {self._name('metaxy_writes')} VALUES ({seq}, {sql_literal(feature)}, "
            f"{rows}, {'true' if deleted else 'false'}, {run}, now64(6))"
        )

    def _save_schema(self, feature: str, seq: int, schema: Mapping[str, pa.DataType]) -> None:
        encoded = pa.schema(list(schema.items())).serialize().to_pybytes()
        text = base64.b64encode(encoded).decode()
        self._run(
            f"INSERT INTO {self._name('metaxy_schemas')} VALUES "
            f"({sql_literal(feature)}, {seq}, {sql_literal(text)})"
        )

    def _check_arrays(self, feature: str, rows: pa.Table) -> None:
        for field in rows.schema:
            listed = pa.types.is_list(field.type) or pa.types.is_large_list(field.type)
            if listed and rows.column(field.name).null_count:
                raise ColumnTypeError(
                    f"feature {feature!r}: column {field.name!r} holds null lists, which "
                    "ClickHouse cannot store (its arrays are never null; a null would read "
                    "back as an empty list). Write empty lists instead, or use a DuckDB store."
                )

    def _evolve(
        self, feature: str, rows: pa.Table, schema: dict[str, pa.DataType]
    ) -> dict[str, pa.DataType]:
        """Create the history table or add and retype columns; returns the columns' Arrow
        types after this write. A column's type may change only from all-null."""
        history = self._history(feature)
        types = {
            f.name: clickhouse_type(f.type, feature=feature, column=f.name) for f in rows.schema
        }
        types[c.WRITE_SEQ] = "Int64"  # never null; the table's sorting key
        if not schema:
            columns = ", ".join(f"{quote(n)} {t}" for n, t in types.items())
            self._run(
                f"CREATE TABLE IF NOT EXISTS {history} ({columns}) ENGINE = MergeTree "
                f"ORDER BY {quote(c.WRITE_SEQ)}"
            )
            return {f.name: f.type for f in rows.schema}
        evolved = dict(schema)
        for field in rows.schema:
            stored = schema.get(field.name)
            if field.name == c.WRITE_SEQ:
                continue
            if stored is None:
                name = quote(field.name)
                self._run(
                    f"ALTER TABLE {history} ADD COLUMN IF NOT EXISTS {name} {types[field.name]}"
                )
                evolved[field.name] = field.type
            elif pa.types.is_null(field.type):
                continue
            elif pa.types.is_null(stored):
                # Only nulls were written so far, which told no type: this write's type holds.
                if types[field.name] != clickhouse_type(stored, feature=feature, column=field.name):
                    self._run(
                        f"ALTER TABLE {history} MODIFY COLUMN {quote(field.name)} "
                        f"{types[field.name]}"
                    )
                evolved[field.name] = field.type
            elif types[field.name] == clickhouse_type(stored, feature=feature, column=field.name):
                continue
            else:
                raise ColumnTypeError(
                    f"feature {feature!r}: column {field.name!r} has type "
                    f"{_polars_type(field.type)}, but the store holds it as "
                    f"{_polars_type(stored)}. Cast the column to {_polars_type(stored)} before "
                    "writing."
                )
        return evolved


def _polars_type(dtype: pa.DataType) -> pl.DataType:
    """The Polars type of Arrow ``dtype``, as the other stores' messages name types."""
    series = pl.from_arrow(pa.array([], type=dtype))
    assert isinstance(series, pl.Series)
    return series.dtype
