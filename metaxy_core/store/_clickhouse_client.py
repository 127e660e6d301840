"""Two ways to talk to ClickHouse with one interface: embedded (chdb) and a server.

:class:`ClickHouseMetadataStore <metaxy_core.store.clickhouse.ClickHouseMetadataStore>` and
its engine run the same SQL on either; a client only runs statements, returns Arrow and
appends Arrow rows to a table.

chdb embeds one ClickHouse server per process, bound to one data directory: opening a session
on another directory first closes the open one. :class:`ChdbClient` therefore takes the
process's session for its directory at each operation (reopening it if another directory's
client took it since, about 0.1 s), so several chdb stores may coexist in one process; only
one process may use a directory at a time (chdb's own lock).
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SETTINGS", "ChdbClient", "ClickHouseClient", "ServerClient"]

SETTINGS: Mapping[str, str] = {
    # Outer joins give NULL, not the type's default, for a missing side (what SQL means).
    "join_use_nulls": "1",
    "session_timezone": "'UTC'",
    # Writes must be visible to the next read of the same client (the write sequence claims).
    "async_insert": "0",
}


class ClickHouseClient(Protocol):
    """What the store needs from a ClickHouse connection."""

    description: str
    """Where the server is, for messages."""

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing."""

    def query_arrow(self, sql: str) -> pa.Table:
        """The rows of a query, as Arrow."""

    def insert_arrow(self, database: str, table: str, rows: pa.Table) -> None:
        """Append ``rows`` to ``database.table`` (unquoted names), column by name."""

    def close(self) -> None:
        """Let go of the connection (the next operation opens it again)."""


_SESSION_LOCK = threading.RLock()
# chdb's one embedded server of this process, shared by every client of its directory: this
# mirrors chdb's own process-wide state rather than adding any.
_OPEN: dict[str, Any] = {}


class ChdbClient:
    """Embedded ClickHouse (chdb) on a data directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(Path(path).resolve())
        self.description = f"chdb:///{self.path.lstrip('/')}"
        Path(self.path).mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _session(self) -> Iterator[Any]:
        import chdb.session

        with _SESSION_LOCK:
            session = _OPEN.get(self.path)
            if session is None:
                for other in list(_OPEN):
                    _OPEN.pop(other).close()
                sessions: Any = chdb.session  # untyped
                session = sessions.Session(self.path)
                for name, value in SETTINGS.items():
                    session.query(f"SET {name} = {value}")
                _OPEN[self.path] = session
            yield session

    def command(self, sql: str) -> None:
        with self._session() as session:
            session.query(sql)

    def query_arrow(self, sql: str) -> pa.Table:
        with self._session() as session:
            result = session.query(sql, "ArrowStream")
            data = result.bytes()
        if not data:
            raise RuntimeError(f"chdb returned no Arrow stream for: {sql}")
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()

    def insert_arrow(self, database: str, table: str, rows: pa.Table) -> None:
        # chdb reads a file; Parquet keeps every type the store writes.
        with tempfile.TemporaryDirectory(prefix="metaxy-chdb-") as scratch:
            path = os.path.join(scratch, f"{uuid.uuid4().hex}.parquet")
            pq.write_table(rows, path)
            names = ", ".join(_quote(n) for n in rows.column_names)
            target = f"{_quote(database)}.{_quote(table)}"
            self.command(
                f"INSERT INTO {target} ({names}) SELECT {names} FROM file('{path}', Parquet)"
            )

    def close(self) -> None:
        """Close this directory's session if it is open (the next operation reopens it)."""
        with _SESSION_LOCK:
            session = _OPEN.pop(self.path, None)
            if session is not None:
                session.close()


class ServerClient:
    """A ClickHouse server over HTTP(S), through ``clickhouse-connect``."""

    def __init__(
        self,
        host: str,
        *,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        secure: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.secure = secure
        self._password = password
        self._client: Any = None
        scheme = "clickhouses" if secure else "clickhouse"
        self.description = f"{scheme}://{host}{f':{port}' if port else ''}"

    def _connect(self) -> Any:
        if self._client is None:
            import clickhouse_connect

            settings = {k: v.strip("'") for k, v in SETTINGS.items()}
            self._client = clickhouse_connect.get_client(
                host=self.host,
                port=self.port or 0,
                username=self.username or os.environ.get("CLICKHOUSE_USER", "default"),
                password=self._password or os.environ.get("CLICKHOUSE_PASSWORD", ""),
                secure=self.secure,
                settings=settings,
            )
        return self._client

    def command(self, sql: str) -> None:
        self._connect().command(sql)

    def query_arrow(self, sql: str) -> pa.Table:
        table: pa.Table = self._connect().query_arrow(sql)
        return table

    def insert_arrow(self, database: str, table: str, rows: pa.Table) -> None:
        self._connect().insert_arrow(table, rows, database=database)

    def close(self) -> None:
        """Close the HTTP connection (the next operation opens it again)."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
