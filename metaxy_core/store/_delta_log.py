"""Numbered appends to Delta tables, with no lock: the write log of the Delta store.

A Delta table takes appends from many processes at once: each commit is one new file in its
``_delta_log`` folder, created only if absent, so two commits never share a version. Blind
appends (the rows of a feature) are merged by ``deltalake`` itself. A *numbered* append
(one row of the write log, with its write sequence) must also be the only one with its number:
the writer reads the table's latest version ``v`` (the statistics the log keeps of each file
give the largest number without reading a file), takes the largest number plus one, and
commits at version ``v + 1`` and nowhere else (no retry inside ``deltalake``). If another
commit took ``v + 1`` first, the writer reads the commits since, takes the next number and
tries again after a jittered pause. So numbers are unique and dense, their order is the order
of the commits, and a try costs a listing of the log, the few commits that are new, and two
writes. (Each commit also carries the number as a Delta application transaction of the table,
for other Delta readers; it is never read back here: ``deltalake`` replays the whole log to
find one.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from metaxy_core.errors import StoreError

__all__ = [
    "LogRows",
    "Tables",
    "append_numbered",
    "ensure_table",
    "open_table",
    "retry_commits",
]

_MAX_WAIT = 1.0
"""Longest pause (seconds) between two tries of a numbered append."""


def open_table(uri: str, options: dict[str, str]) -> DeltaTable | None:
    """The Delta table at ``uri``, or ``None`` if there is none yet."""
    try:
        return DeltaTable(uri, storage_options=options or None)
    except TableNotFoundError:
        return None


class Tables:
    """Delta tables by URI, each loaded once, then brought up to date by reading only the
    commits since (loading reads every commit since the last checkpoint: on object storage,
    one request each). Within an :meth:`operation`, a table is brought up to date once."""

    def __init__(self, options: dict[str, str]) -> None:
        self.options = options
        self._loaded: dict[str, DeltaTable] = {}
        self._depth = 0
        self._current: set[str] = set()
        """The tables brought up to date in the operation under way."""

    @contextmanager
    def operation(self) -> Iterator[None]:
        """One operation: each table is read as it was when the operation first asked."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self._current.clear()

    def known(self, uri: str) -> bool:
        """Whether the table at ``uri`` exists; asks the store only until it does."""
        return uri in self._loaded or self.get(uri) is not None

    def get(self, uri: str, *, refresh: bool = False) -> DeltaTable | None:
        """The table at ``uri`` as it is now (or when the operation under way first read
        it, unless ``refresh``), or ``None`` if there is none yet."""
        table = self._loaded.get(uri)
        if table is not None:
            if refresh or uri not in self._current:
                table.update_incremental()
        else:
            table = open_table(uri, self.options)
            if table is None:
                return None
            self._loaded[uri] = table
        if self._depth:
            self._current.add(uri)
        return table


class LogRows:
    """The rows of a small, append-only table (the write log, the records), read once, then
    brought up to date by reading only the files added since (a compaction, which replaces
    files, makes it read the table whole again)."""

    def __init__(self, options: dict[str, str], schema: pa.Schema) -> None:
        self.options = options
        self.schema = schema
        self._read: dict[str, tuple[frozenset[str], pl.DataFrame]] = {}

    def empty(self) -> pl.DataFrame:
        frame = pl.from_arrow(self.schema.empty_table())
        assert isinstance(frame, pl.DataFrame)
        return frame

    def of(self, table: DeltaTable) -> pl.DataFrame:
        """The rows of ``table`` at the version it is loaded at."""
        uri = table.table_uri
        files = frozenset(table.file_uris())
        known = self._read.get(uri)
        if known is not None and known[0] <= files:
            old, frame = known
            if files != old:
                new = pl.read_parquet(sorted(files - old), storage_options=self.options or None)
                frame = pl.concat([frame, new.select(frame.columns)])
        else:
            read = pl.from_arrow(table.to_pyarrow_table())
            assert isinstance(read, pl.DataFrame)
            frame = read
        self._read[uri] = (files, frame)
        return frame


def ensure_table(tables: Tables, uri: str, schema: pa.Schema, description: str) -> None:
    """Create the table at ``uri`` unless it exists (another process may create it first)."""
    if tables.known(uri):
        return
    options = tables.options
    try:
        DeltaTable.create(
            uri, schema, mode="ignore", description=description, storage_options=options or None
        )
    except DeltaError:
        if open_table(uri, options) is None:  # not a lost race: a real failure
            raise


def append_numbered(
    uri: str,
    tables: Tables,
    log: LogRows,
    column: str,
    rows: Callable[[int], pa.Table],
    *,
    attempts: int,
) -> int:
    """Append ``rows(n)`` to the table at ``uri``, ``n`` one more than the largest ``column``
    it holds; returns ``n``. Retries (with a random pause) when another commit came first."""
    for attempt in range(attempts):
        table = tables.get(uri, refresh=True)
        assert table is not None, uri  # created by the caller
        number = _largest(table, column, log) + 1
        try:
            write_deltalake(
                table,
                rows(number),
                mode="append",
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(f"metaxy/{column}", number)],
                    max_commit_retries=0,  # at the version read, or not at all
                ),
            )
        except CommitFailedError:
            time.sleep(_pause(attempt))
            continue
        return number
    raise StoreError(
        f"the Delta table {uri!r} took no numbered commit in {attempts} tries: other "
        "writers committed first each time. Raise commit_attempts of the store, or write "
        "from fewer processes at once."
    )


def _largest(table: DeltaTable, column: str, log: LogRows) -> int:
    """The largest ``column`` in ``table``: from the statistics its log keeps of every file
    (no file read), or from its rows if a file has none."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return 0
    stat = f"max.{column}"
    if stat in actions.column_names and actions.column(stat).null_count == 0:
        return int(pc.max(actions.column(stat)).as_py())
    return int(log.of(table).get_column(column).max() or 0)  # type: ignore[arg-type]


def retry_commits(commit: Callable[[bool], None], uri: str, *, attempts: int) -> None:
    """``commit(again)``, tried again (with a random pause, ``again`` true) when another
    commit conflicted."""
    for attempt in range(attempts):
        try:
            commit(attempt > 0)
        except CommitFailedError:
            time.sleep(_pause(attempt))
            continue
        return
    raise StoreError(
        f"the Delta table {uri!r} took no commit in {attempts} tries: other writers changed "
        "it first each time. Raise commit_attempts of the store, or write from fewer "
        "processes at once."
    )


def _pause(attempt: int) -> float:
    # Jittered, growing pauses: writers that collided do not collide again in step.
    return random.uniform(0, min(_MAX_WAIT, 0.01 * 2**attempt))
