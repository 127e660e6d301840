"""Numbered appends to Delta tables, with no lock: the write log of the Delta store.

A Delta table takes appends from many processes at once: each commit is one new file in its
``_delta_log`` folder, created only if absent, so two commits never share a version. Blind
appends (the rows of a feature) are merged by ``deltalake`` itself. A *numbered* append
(one row of the write log, with its write sequence) must also be the only one with its number:
each carries a Delta application transaction (``txn``) of one app id whose version is the
number, and ``deltalake`` fails a commit whose app id another commit set since it read the
table. The loser reads the table again, takes the next number and tries again. So numbers are
unique and dense, and their order is the order of the commits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from metaxy_core.errors import StoreError

__all__ = ["Tables", "append_numbered", "ensure_table", "open_table", "retry_commits"]

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
    one request each)."""

    def __init__(self, options: dict[str, str]) -> None:
        self.options = options
        self._loaded: dict[str, DeltaTable] = {}

    def get(self, uri: str) -> DeltaTable | None:
        """The table at ``uri`` as it is now, or ``None`` if there is none yet."""
        table = self._loaded.get(uri)
        if table is not None:
            table.update_incremental()
            return table
        table = open_table(uri, self.options)
        if table is not None:
            self._loaded[uri] = table
        return table


def ensure_table(uri: str, options: dict[str, str], schema: pa.Schema, description: str) -> None:
    """Create the table at ``uri`` unless it exists (another process may create it first)."""
    if open_table(uri, options) is not None:
        return
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
    app_id: str,
    rows: Callable[[int], pa.Table],
    *,
    attempts: int,
) -> int:
    """Append ``rows(n)`` to the table at ``uri`` with the next number ``n`` of ``app_id``;
    returns ``n``. Retries (with a random pause) when another commit took the number."""
    for attempt in range(attempts):
        table = tables.get(uri)
        assert table is not None, uri  # created by the caller
        number = (table.transaction_version(app_id) or 0) + 1
        try:
            write_deltalake(
                table,
                rows(number),
                mode="append",
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(app_id, number)], max_commit_retries=0
                ),
            )
        except CommitFailedError:
            time.sleep(_pause(attempt))
            continue
        return number
    raise StoreError(
        f"the Delta table {uri!r} took no commit of {app_id!r} in {attempts} tries: other "
        "writers took every number first. Raise commit_attempts of the store, or write from "
        "fewer processes at once."
    )


def retry_commits(commit: Callable[[], None], uri: str, *, attempts: int) -> None:
    """``commit()``, tried again (with a random pause) when another commit conflicted."""
    for attempt in range(attempts):
        try:
            commit()
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
