"""The DuckDB engine: the SQL of :mod:`metaxy_core.engines.sql` inside the store's file.

Only the candidates leave DuckDB (new samples, orphaned ones, and those whose inputs changed),
as Arrow, with their input columns as they are stored: 64-bit integers, 8 bytes a value;
:mod:`metaxy_core.engines.classify` hashes them in Polars and classifies the candidates.
DuckDB has no XXH64 built in and cannot download extensions offline, and a Python function in
SQL is called per 2,048-row vector, so provenance is never hashed inside DuckDB.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Final

import duckdb
import narwhals as nw
import polars as pl
import pyarrow as pa

from metaxy_core.engines import classify
from metaxy_core.engines.sql import INT64, TEXT, SqlEngine, quote, sql_literal
from metaxy_core.hashing import (
    DUCKDB_FUNCTION,
    register_duckdb_hash,
    sql_hex,
    sql_id_text,
)
from metaxy_core.plan import ResolvePlan

__all__ = ["NO_DOWNLOADS", "DuckDBEngine", "quote", "sql_literal"]

# DuckDB installs and loads the extensions it knows of when a query or a file needs one (a
# SQLite file, say): a download, which metaxy never does. Every connection it opens has these.
NO_DOWNLOADS: Final = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

_view_ids = itertools.count()
_NULLS = {INT64: "BIGINT", TEXT: "VARCHAR"}
# Rows per record batch DuckDB exports; each batch is hashed while DuckDB exports the next.
_BATCH_ROWS = 1 << 17


class DuckDBEngine(SqlEngine):
    """Resolves increments with SQL inside a DuckDB connection."""

    name = "duckdb"

    def __init__(self, connection: duckdb.DuckDBPyConnection, table: Callable[[str], str | None]):
        """``table(feature)`` gives the quoted current-rows table of a feature, or ``None``."""
        super().__init__(table)
        self._con = connection
        self._hash_registered = False

    def _fetch(self, query: str, plan: ResolvePlan) -> pl.LazyFrame:
        """The rows of ``query``, hashed in Polars batch by batch as DuckDB exports them (see
        :func:`classify.hash_arrow`)."""
        rel = self._con.sql(query)
        # ``to_arrow_reader`` in newer DuckDB; ``fetch_arrow_reader`` (deprecated there) in older.
        reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
        return classify.hash_arrow(plan, reader(_BATCH_ROWS))

    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        return self._con.sql(query).fetchall()

    def _types(self, query: str) -> dict[str, str]:
        """The DuckDB type of each column of ``query`` (bound, not run)."""
        rel = self._con.sql(query)
        return {n: str(t) for n, t in zip(rel.columns, rel.types, strict=True)}

    def _register(self, rows: pa.Table | pl.LazyFrame | duckdb.DuckDBPyRelation) -> str:
        name = f"__metaxy_view_{next(_view_ids)}"
        self._con.register(name, rows)
        return quote(name)

    def _unregister(self, name: str) -> None:
        self._con.unregister(name[1:-1].replace('""', '"'))

    def _predicate(self, query: str, filter: nw.Expr) -> str:
        rel = self._con.sql(query)
        return self._view(nw.from_native(rel).filter(filter).to_native())

    def _text(self, expr: str) -> str:
        return f"CAST({expr} AS VARCHAR)"

    def _hash_text(self, text: str) -> str:
        self._register_hash()
        return f"{DUCKDB_FUNCTION}({text})"

    def _hex(self, expr: str) -> str:
        return sql_hex(expr)

    def _id_text(self, expr: str, sql_type: str) -> str:
        return sql_id_text(expr, sql_type)

    def _null(self, sql_type: str) -> str:
        return f"NULL::{_NULLS.get(sql_type, sql_type)}"

    def _char(self, code: int) -> str:
        return f"chr({code})"

    def _ordered_list(self, expr: str, order: str) -> str:
        return f"list({expr} ORDER BY {order})"

    def _ordered_concat(self, expr: str, order: str, separator: str) -> str:
        return f"string_agg({expr}, {separator} ORDER BY {order})"

    def _semi(self, left: str, right: str, keys: Sequence[str], *, anti: bool) -> str:
        how = "ANTI" if anti else "SEMI"
        return f"(SELECT * FROM {left} {how} JOIN {right} USING ({', '.join(map(quote, keys))}))"

    def _except(self, relation: str, columns: Sequence[str]) -> str:
        return f"SELECT * EXCLUDE ({', '.join(map(quote, columns))}) FROM {relation}"

    def _register_hash(self) -> None:
        """Register the SQL hash function, needed only by hash shards and group versions."""
        if not self._hash_registered:
            register_duckdb_hash(self._con)
            self._hash_registered = True
