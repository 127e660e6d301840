"""The embedded default store: one DuckDB file.

Layout: per feature, an append-only history table ``"<key>:history"`` and a table of current
rows ``"<key>"`` (the latest write of every live sample), both changed in the same transaction,
so a crash mid-write leaves both as they were. ``metaxy_writes`` logs every write with its
sequence number; ``metaxy_feature_versions`` the recipes of every feature version written;
``metaxy_id_columns`` the id columns of every feature when it was first written (created by
the first write that needs it, so older files keep working); ``metaxy_store_info`` the format
version and hash algorithm; ``metaxy_records`` graph snapshots and audit rows (see
:mod:`metaxy_core.store.snapshots`).

DuckDB lets one process at a time open a file for writing. A file store therefore opens its
connection for one operation (or one ``with store:`` block), under a lock on ``<file>.lock``
taken before opening and released after closing (see :mod:`metaxy_core.store._lock`): shared
with a read-only connection to read, exclusive with a read-write one to write.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import polars as pl

from metaxy_core import columns as c
from metaxy_core.engines.duckdb import NO_DOWNLOADS, DuckDBEngine, quote, sql_literal
from metaxy_core.engines.polars import PolarsEngine
from metaxy_core.errors import (
    ColumnTypeError,
    StoreFormatError,
    StoreLockedError,
    StorePathError,
)
from metaxy_core.graph import FeatureGraph
from metaxy_core.hashing import HASH_ALGORITHM
from metaxy_core.store._lock import FileAccess, LockTimeout, file_access
from metaxy_core.store.base import Engine, MetadataStore, recipes_by_version
from metaxy_core.store.snapshots import Record

__all__ = ["DuckDBMetadataStore"]

FORMAT_VERSION = "2"
"""2: provenance and data versions are signed 64-bit integers (BIGINT); 1 held 16-hex strings."""
_FORMATS = {"1": "16-character hex strings", "2": "signed 64-bit integers"}
_ID_COLUMNS = "metaxy_id_columns"


def _check_path(path: str) -> None:
    """Refuse a path that cannot be a store file, before anything is created."""
    if path == ":memory:":
        return
    where = Path(path)
    if where.is_dir():
        problem = "is a directory"
    elif where.exists() and not where.is_file():
        problem = "is not a regular file (a device, a pipe or a socket)"
    else:
        blocking = next((p for p in where.parents if p.exists() and not p.is_dir()), None)
        if blocking is None:
            return
        problem = f"is under {str(blocking)!r}, which is a file, not a directory"
    raise StorePathError(
        f"store path {path!r} {problem}: a store is one DuckDB file. Pass the path of a file "
        "in a directory (created if missing), e.g. 'data/metaxy.duckdb'."
    )


# A DuckDB file holds these 4 bytes at offset 8.
_MAGIC: Final = b"DUCK"


def _connect_file(path: str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, with a file that is not a DuckDB database as a metaxy error."""
    problem = None
    if path != ":memory:" and os.path.isfile(path) and os.path.getsize(path) >= 12:
        with open(path, "rb") as file:
            if file.read(12)[8:] != _MAGIC:
                problem = "its header is not DuckDB's"
    if problem is None:
        try:
            return duckdb.connect(path, read_only=read_only, config=dict(NO_DOWNLOADS))
        except duckdb.IOException as exc:
            if "not a valid DuckDB database file" not in str(exc):
                raise
            problem = str(exc)
    raise StoreFormatError(
        f"store {path!r} is not a DuckDB database file ({problem}); it was left as it is. "
        "Pass the path of a store file metaxy wrote, or a new path to start a store."
    )


class _Uninitialized(Exception):
    """A read-only connection found a file without the store's tables."""


def _close(con: duckdb.DuckDBPyConnection) -> None:
    con.close()  # a write's checkpoint happens here, still under the exclusive lock


def _scalar(con: duckdb.DuckDBPyConnection, query: str, params: list[object] | None = None) -> Any:
    return con.execute(query, params or []).fetchall()[0][0]


class DuckDBMetadataStore(MetadataStore):
    """Feature metadata in a DuckDB file (or in memory).

    Args:
        graph: the feature graph.
        path: the DuckDB file, created on first use; ``":memory:"`` for a private in-memory
            store.
        engine: ``"duckdb"`` (default) runs the whole increment as SQL inside DuckDB, so only
            the increment leaves the file; ``"polars"`` scans the rows into Polars and resolves
            there. Results are identical.
        lock_timeout: seconds to wait for other processes to release the file (readers wait
            for a writer, a writer for everyone before it); ``math.inf`` waits for ever.

    >>> from metaxy_core import FeatureGraph, FeatureSpec
    >>> graph = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"], fields=["audio"])])
    >>> store = DuckDBMetadataStore(graph, ":memory:")
    >>> import polars as pl
    >>> clips = pl.DataFrame({"id": ["a", "b"], "metaxy_data_version__audio": ["1", "2"]})
    >>> store.resolve_update("clips", samples=clips).counts
    IncrementCounts(new=2, stale=0, orphaned=0, failed=0)
    >>> store.write("clips", clips).rows
    2
    >>> store.resolve_update("clips", samples=clips).counts
    IncrementCounts(new=0, stale=0, orphaned=0, failed=0)
    """

    def __init__(
        self,
        graph: FeatureGraph,
        path: str | Path = ":memory:",
        *,
        engine: Literal["polars", "duckdb"] = "duckdb",
        lock_timeout: float = 120.0,
    ) -> None:
        super().__init__(graph)
        if engine not in ("polars", "duckdb"):
            raise ValueError(f"engine must be 'polars' or 'duckdb', got {engine!r}.")
        _check_path(str(path))
        self.path = str(path)
        self.engine_name = engine
        self.lock_timeout = lock_timeout
        self._memory: duckdb.DuckDBPyConnection | None = None
        self._holds: list[Any] = []
        if self.path == ":memory:":
            self._memory = self._connect(write=True)  # never closed: the data lives in it
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    @property
    def _access(self) -> FileAccess[duckdb.DuckDBPyConnection] | None:
        # Looked up each time, not kept: a forked child gets its own (see store._lock).
        return None if self._memory is not None else file_access(self.path)

    def __repr__(self) -> str:
        return f"DuckDBMetadataStore({self.path!r}, engine={self.engine_name!r})"

    # -- connections ----------------------------------------------------------------------------

    def __enter__(self) -> DuckDBMetadataStore:
        """Keep one connection (and its lock) for the whole block: reads in it see one state
        of the file; the first write in it waits for the exclusive lock and keeps it."""
        access = self._access
        if access is not None:
            stack = ExitStack()
            with self._lock_errors():
                stack.enter_context(access.hold(self._timeout()))
            self._holds.append(stack)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._holds:
            self._holds.pop().__exit__(*exc)

    @contextmanager
    def _session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._open(write=False) as con:
            yield con

    @contextmanager
    def _write_session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._open(write=True) as con:
            yield con

    @contextmanager
    def _open(self, *, write: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._memory is not None:
            yield self._memory
            return
        access = file_access(self.path)
        # A reader of a store nobody created yet creates it, which takes the writer's lock.
        write = write or not Path(self.path).exists()
        with ExitStack() as stack:
            try:
                with self._lock_errors():
                    con = stack.enter_context(
                        access.session(write, self._timeout(), self._connect, _close)
                    )
            except _Uninitialized:  # a file without our tables: create them, as a writer
                with self._lock_errors():
                    con = stack.enter_context(
                        access.session(True, self._timeout(), self._connect, _close)
                    )
            yield con

    def _timeout(self) -> float:
        return float(self.lock_timeout)

    @contextmanager
    def _lock_errors(self) -> Iterator[None]:
        try:
            yield
        except LockTimeout:
            raise StoreLockedError(
                f"store {self.path!r} stayed locked by other processes for "
                f"{self.lock_timeout:g} s (lock file {self.path}.lock). Wait for the other "
                "writers to finish, stop the process that holds it, or raise lock_timeout."
            ) from None

    def _connect(self, write: bool) -> duckdb.DuckDBPyConnection:
        con = _connect_file(self.path, read_only=not write)
        try:
            # DuckDB's default Arrow output is kept on purpose: plain strings export faster than
            # string views, and the row hash reads either in place (engines/classify.py).
            self._check_format(con, write)
        except BaseException:
            con.close()
            raise
        return con

    def _check_format(self, con: duckdb.DuckDBPyConnection, write: bool) -> None:
        if _scalar(
            con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'metaxy_store_info'"
        ):
            info = dict(con.sql("SELECT key, value FROM metaxy_store_info").fetchall())
            wanted = {"format_version": FORMAT_VERSION, "hash_algorithm": HASH_ALGORITHM}
            for key, value in wanted.items():
                found = info.get(key)
                if found != value:
                    detail = ""
                    if key == "format_version" and found in _FORMATS:
                        detail = (
                            f" (its hashes are {_FORMATS[found]}; this metaxy stores "
                            f"{_FORMATS[FORMAT_VERSION]})"
                        )
                    raise StoreFormatError(
                        f"store {self.path!r} was written with {key} {found!r}, but this "
                        f"metaxy uses {value!r}{detail}. Open it with the metaxy version that "
                        "wrote it, or start a new store file and write the root features again."
                    )
            return
        if not write:
            raise _Uninitialized
        con.execute("BEGIN")
        con.execute("CREATE TABLE IF NOT EXISTS metaxy_store_info (key VARCHAR, value VARCHAR)")
        con.execute(
            "INSERT INTO metaxy_store_info VALUES ('format_version', ?), ('hash_algorithm', ?)",
            [FORMAT_VERSION, HASH_ALGORITHM],
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS metaxy_writes (write_seq BIGINT, feature VARCHAR, "
            "rows BIGINT, deleted BOOLEAN, run_id VARCHAR, written_at TIMESTAMPTZ)"
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS metaxy_feature_versions (feature VARCHAR, "
            "feature_version VARCHAR, field VARCHAR, recipe VARCHAR)"
        )
        con.execute("COMMIT")

    # -- primitives -----------------------------------------------------------------------------

    def _tables(self, con: duckdb.DuckDBPyConnection) -> set[str]:
        return {row[0] for row in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}

    def _table(self, con: duckdb.DuckDBPyConnection, feature: str) -> str | None:
        return quote(feature) if feature in self._tables(con) else None

    def _engine(self, session: duckdb.DuckDBPyConnection) -> Engine:
        if self.engine_name == "duckdb":
            tables = self._tables(session)
            return DuckDBEngine(session, lambda f: quote(f) if f in tables else None)
        return PolarsEngine(lambda f, cols: self._scan(session, f, history=False, columns=cols))

    def _stored_columns(self, session: duckdb.DuckDBPyConnection, feature: str) -> list[str] | None:
        if self._table(session, feature) is None:
            return None
        return [r[0] for r in session.sql(f"DESCRIBE {quote(feature)}").fetchall()]

    def _stored_id_columns(self, session: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, ...]]:
        if _ID_COLUMNS not in self._tables(session):
            return {}
        rows = session.sql(f"SELECT feature, id_columns FROM {_ID_COLUMNS}").fetchall()
        return {feature: tuple(ids) for feature, ids in rows}

    def _recipes_by_version(
        self, session: duckdb.DuckDBPyConnection, feature: str
    ) -> dict[str, dict[str, str]]:
        rows = session.execute(
            "SELECT feature_version, field, recipe FROM metaxy_feature_versions WHERE feature = ?",
            [feature],
        ).fetchall()
        return recipes_by_version(rows)

    def _scan(
        self,
        session: duckdb.DuckDBPyConnection,
        feature: str,
        *,
        history: bool,
        columns: Sequence[str] | None,
    ) -> pl.LazyFrame | None:
        if self._table(session, feature) is None:
            return None
        table = quote(f"{feature}:history" if history else feature)
        cols = "*"
        if columns is not None:
            names = {r[0] for r in session.sql(f"DESCRIBE {table}").fetchall()}
            cols = ", ".join(quote(n) for n in columns if n in names)
        scanned = session.sql(f"SELECT {cols} FROM {table}").to_arrow_table()
        frame = pl.from_arrow(scanned, rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()

    _keeps_records = True

    def _record(self, session: duckdb.DuckDBPyConnection, kind: str, key: str, body: str) -> None:
        # Created on first use, so stores written before records existed gain the table too.
        session.execute(
            "CREATE TABLE IF NOT EXISTS metaxy_records (seq BIGINT, kind VARCHAR, key VARCHAR, "
            "body VARCHAR, recorded_at TIMESTAMPTZ)"
        )
        session.execute(
            "INSERT INTO metaxy_records SELECT coalesce(max(seq), 0) + 1, ?, ?, ?, now() "
            "FROM metaxy_records",
            [kind, key, body],
        )

    def _records(self, session: duckdb.DuckDBPyConnection, kind: str) -> list[Record]:
        if "metaxy_records" not in self._tables(session):
            return []
        rows = session.execute(
            "SELECT seq, kind, key, body, epoch_us(recorded_at) FROM metaxy_records "
            "WHERE kind = ? ORDER BY seq",
            [kind],
        ).fetchall()
        # As epoch microseconds: a TIMESTAMPTZ would come back through the session's time zone.
        return [
            Record(seq, kind, key, body, datetime.fromtimestamp(us / 1e6, timezone.utc))
            for seq, kind, key, body, us in rows
        ]

    def last_write_seq(self, feature: str | None = None) -> int:
        with self._session() as con:
            where = "" if feature is None else f"WHERE feature = {sql_literal(feature)}"
            return int(
                _scalar(con, f"SELECT coalesce(max(write_seq), 0) FROM metaxy_writes {where}")
            )

    def _append(
        self,
        session: duckdb.DuckDBPyConnection,
        feature: str,
        chunks: Iterable[pl.DataFrame],
        recipes: Mapping[str, str],
    ) -> int:
        con = session
        current, history = quote(feature), quote(f"{feature}:history")
        match = " AND ".join(f"t.{quote(i)} = b.{quote(i)}" for i in self.graph[feature].id_columns)
        con.execute("BEGIN")
        try:
            seq = int(_scalar(con, "SELECT coalesce(max(write_seq), 0) + 1 FROM metaxy_writes"))
            exists = self._table(con, feature) is not None
            rows, deleted, run_id = 0, False, None
            for index, chunk in enumerate(chunks):
                # Read by DuckDB's replacement scan of this local variable: unlike register(),
                # it keeps no reference until COMMIT, so a large write holds one chunk at a time.
                # In one piece: DuckDB inserts Arrow batches in parallel, and the partly filled
                # row groups that leaves took 1.7 s to merge when closing after a 1M-row write.
                metaxy_batch = (
                    chunk.with_columns(pl.lit(seq, dtype=pl.Int64).alias(c.WRITE_SEQ))
                    .rechunk()
                    .to_arrow()
                )
                if index == 0:
                    deleted = chunk.height > 0 and bool(chunk.get_column(c.DELETED).all())
                    run_id = chunk.get_column(c.RUN_ID)[0] if chunk.height else None
                    if not exists:
                        for table in (history, current):
                            con.execute(
                                f"CREATE TABLE {table} AS SELECT * FROM metaxy_batch LIMIT 0"
                            )
                    else:
                        self._evolve_schema(con, feature, metaxy_batch)
                con.execute(f"DELETE FROM {current} t USING metaxy_batch b WHERE {match}")
                con.execute(f"INSERT INTO {history} BY NAME SELECT * FROM metaxy_batch")
                if not deleted:
                    con.execute(f"INSERT INTO {current} BY NAME SELECT * FROM metaxy_batch")
                rows += chunk.height
                del metaxy_batch
            con.execute(
                "INSERT INTO metaxy_writes VALUES (?, ?, ?, ?, ?, now())",
                [seq, feature, rows, deleted, run_id],
            )
            version = self.graph.versions.features[feature]
            known = _scalar(
                con,
                "SELECT count(*) FROM metaxy_feature_versions WHERE feature = ? "
                "AND feature_version = ?",
                [feature, version],
            )
            if not known:
                con.executemany(
                    "INSERT INTO metaxy_feature_versions VALUES (?, ?, ?, ?)",
                    [[feature, version, f, r] for f, r in sorted(recipes.items())],
                )
            self._record_id_columns(con, feature)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return seq

    def _record_id_columns(self, con: duckdb.DuckDBPyConnection, feature: str) -> None:
        """Record the feature's id columns at its first write (within the write's transaction)."""
        if _ID_COLUMNS not in self._tables(con):  # a file written before they were recorded
            con.execute(f"CREATE TABLE {_ID_COLUMNS} (feature VARCHAR, id_columns VARCHAR[])")
        con.execute(
            f"INSERT INTO {_ID_COLUMNS} SELECT ?, ? "
            f"WHERE NOT EXISTS (SELECT 1 FROM {_ID_COLUMNS} WHERE feature = ?)",
            [feature, list(self.graph[feature].id_columns), feature],
        )

    def _only_nulls(self, con: duckdb.DuckDBPyConnection, feature: str, column: str) -> bool:
        history = quote(f"{feature}:history")
        return not _scalar(con, f"SELECT count({quote(column)}) FROM {history}")

    def _evolve_schema(
        self, con: duckdb.DuckDBPyConnection, feature: str, metaxy_batch: object
    ) -> None:
        """Check column types against the stored table; add columns the table lacks."""
        stored = {r[0]: r[1] for r in con.sql(f"DESCRIBE {quote(feature + ':history')}").fetchall()}
        for name, dtype, *_ in con.sql("DESCRIBE SELECT * FROM metaxy_batch").fetchall():
            if name not in stored:
                for table in (feature, f"{feature}:history"):
                    con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {dtype}")
            elif (
                stored[name] != dtype and dtype != '"NULL"' and self._only_nulls(con, feature, name)
            ):
                # Only nulls were written so far, which told no type (DuckDB 2 stores them as
                # NULL, older versions as INTEGER): this write's type holds.
                for table in (feature, f"{feature}:history"):
                    con.execute(f"ALTER TABLE {quote(table)} ALTER {quote(name)} TYPE {dtype}")
            elif stored[name] != dtype and dtype != '"NULL"':
                raise ColumnTypeError(
                    f"feature {feature!r}: column {name!r} has type {dtype}, but the store holds "
                    f"it as {stored[name]}. Cast the column to {stored[name]} before writing."
                )
