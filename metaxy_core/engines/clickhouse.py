"""The ClickHouse engine: the SQL of :mod:`metaxy_core.engines.sql` inside ClickHouse.

Provenance is hashed in the server with ClickHouse's own ``xxHash64Spark`` (XXH64 with seed
42 as a signed ``Int64``, ClickHouse 26.7+), over the same canonical strings as the Polars
hash, so only the candidates leave the server, already hashed. ClickHouse returns every
timestamp with a time zone and has no null arrays; the rows are cast back to the types they
were written with (see :class:`ClickHouseEngine`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import narwhals as nw
import polars as pl
import pyarrow as pa

from metaxy_core.engines.sql import INT64, TEXT, SqlEngine, quote
from metaxy_core.errors import ColumnTypeError
from metaxy_core.plan import ResolvePlan

if TYPE_CHECKING:
    from metaxy_core.store._clickhouse_client import ClickHouseClient

__all__ = ["ClickHouseEngine", "cast_like", "clickhouse_type"]

_NULLS = {INT64: "Int64", TEXT: "String"}
_SCALARS = {
    pa.int8(): "Int8",
    pa.int16(): "Int16",
    pa.int32(): "Int32",
    pa.int64(): "Int64",
    pa.uint8(): "UInt8",
    pa.uint16(): "UInt16",
    pa.uint32(): "UInt32",
    pa.uint64(): "UInt64",
    pa.float32(): "Float32",
    pa.float64(): "Float64",
    pa.bool_(): "Bool",
    pa.date32(): "Date32",
    pa.null(): "String",  # a column of nulls tells no type: the first typed write decides
}
_PRECISION = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def _scalar_type(dtype: pa.DataType) -> str | None:
    if dtype in _SCALARS:
        return _SCALARS[dtype]
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "String"
    if pa.types.is_string_view(dtype) or pa.types.is_binary(dtype):
        return "String"
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return "String"
    if pa.types.is_timestamp(dtype):
        return f"DateTime64({_PRECISION[dtype.unit]}, 'UTC')"
    if pa.types.is_decimal(dtype):
        return f"Decimal({dtype.precision}, {dtype.scale})"
    return None


def clickhouse_type(dtype: pa.DataType, *, feature: str, column: str) -> str:
    """The ClickHouse column type holding Arrow ``dtype`` (nullable; lists as arrays)."""
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype):
        inner = _scalar_type(dtype.value_type)
        if inner is not None:
            return f"Array(Nullable({inner}))"
    else:
        scalar = _scalar_type(dtype)
        if scalar is not None:
            return f"Nullable({scalar})"
    raise ColumnTypeError(
        f"feature {feature!r}: column {column!r} has type {dtype}, which the ClickHouse store "
        "cannot hold (it holds integers, floats, decimals, booleans, strings, dates, "
        "timestamps and lists of those). Cast the column to one of these, or use a DuckDB "
        "store."
    )


def _cast_column(column: pa.ChunkedArray, dtype: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_null(dtype):
        return pa.chunked_array([pa.nulls(len(column))], pa.null())
    if pa.types.is_timestamp(column.type) and pa.types.is_timestamp(dtype):
        # Same instants: ClickHouse adds UTC, the writer's type may have none.
        column = column.cast(pa.timestamp(column.type.unit, dtype.tz))
    return column.cast(dtype)


def cast_like(rows: pa.Table, types: Mapping[str, pa.DataType]) -> pa.Table:
    """``rows`` with every column named in ``types`` cast to that Arrow type."""
    for i, name in enumerate(rows.column_names):
        dtype = types.get(name)
        if dtype is not None and rows.schema.field(i).type != dtype:
            rows = rows.set_column(i, name, _cast_column(rows.column(i), dtype))
    return rows


class ClickHouseEngine(SqlEngine):
    """Resolves increments with SQL inside ClickHouse (chdb or a server)."""

    name = "clickhouse"

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        table: Callable[[str], str | None],
        types: Callable[[str], Mapping[str, pa.DataType]],
    ):
        """``table(feature)`` gives SQL of a feature's current rows, or ``None``;
        ``types(feature)`` the Arrow types its columns were written with."""
        super().__init__(table)
        self._client = client
        self._database = database
        self._feature_types = types
        self._sample_types: dict[str, pa.DataType] = {}

    def _fetch(self, query: str, plan: ResolvePlan) -> pl.LazyFrame:
        """The rows of ``query`` with their provenance, hashed in ClickHouse."""
        rows = self._client.query_arrow(self._with_provenance(query, plan))
        frame = pl.from_arrow(cast_like(rows, self._arrow_types(plan)), rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()

    def _arrow_types(self, plan: ResolvePlan) -> dict[str, pa.DataType]:
        """The Arrow type each column of the rows had when written (keyed by the names the
        plan gives them)."""
        types = dict(self._sample_types)
        for up in plan.upstreams:
            stored = self._feature_types(up.feature)
            for source, alias in up.columns.items():
                if source not in stored:
                    continue
                listed = up.aggregated and source not in up.on and source not in up.versions
                types[alias] = pa.large_list(stored[source]) if listed else stored[source]
        types.update(self._feature_types(plan.feature))
        return types

    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        table = self._client.query_arrow(query)
        return list(zip(*(col.to_pylist() for col in table.columns), strict=True))

    def _types(self, query: str) -> dict[str, str]:
        described = self._client.query_arrow(f"DESCRIBE ({query})")
        names = described.column("name").to_pylist()
        return dict(zip(names, described.column("type").to_pylist(), strict=True))

    def _register(self, rows: pa.Table) -> str:
        name = f"__metaxy_view_{uuid.uuid4().hex}"
        self._sample_types.update({f.name: f.type for f in rows.schema})
        columns = ", ".join(
            f"{quote(f.name)} {clickhouse_type(f.type, feature=name, column=f.name)}"
            for f in rows.schema
        )
        table = f"{quote(self._database)}.{quote(name)}"
        self._client.command(f"CREATE TABLE {table} ({columns}) ENGINE = Memory")
        if rows.num_rows:
            self._client.insert_arrow(self._database, name, rows)
        return table

    def _unregister(self, name: str) -> None:
        self._client.command(f"DROP TABLE IF EXISTS {name}")

    def _predicate(self, query: str, filter: nw.Expr) -> str:
        # ClickHouse has no Narwhals backend: the rows the predicate reads are filtered in
        # Polars and sent back (see docs/clickhouse.md, limits).
        rows = pl.from_arrow(self._client.query_arrow(query))
        assert isinstance(rows, pl.DataFrame)
        kept = nw.from_native(rows).filter(filter).to_native()
        return self._view(kept.to_arrow())

    def _text(self, expr: str) -> str:
        return f"toString({expr})"

    def _hash_text(self, text: str) -> str:
        return f"xxHash64Spark({text})"

    def _hex(self, expr: str) -> str:
        return f"lower(leftPad(hex({expr}), 16, '0'))"

    def _id_text(self, expr: str, sql_type: str) -> str:
        if "DateTime64" in sql_type:
            return f"toString(toUnixTimestamp64Nano({expr}))"
        return f"toString({expr})"

    def _null(self, sql_type: str) -> str:
        inner = _NULLS.get(sql_type, sql_type)
        if not inner.startswith(("Nullable(", "Array(")):
            inner = f"Nullable({inner})"
        return f"CAST(NULL AS {inner})"

    def _char(self, code: int) -> str:
        return f"char({code})"

    def _ordered_list(self, expr: str, order: str) -> str:
        return f"arrayMap(m -> m.2, arraySort(m -> m.1, groupArray(({order}, {expr}))))"

    def _ordered_concat(self, expr: str, order: str, separator: str) -> str:
        return f"arrayStringConcat({self._ordered_list(expr, order)}, {separator})"

    def _except(self, relation: str, columns: Sequence[str]) -> str:
        return f"SELECT * EXCEPT ({', '.join(map(quote, columns))}) FROM {relation}"

    def _is_text(self, sql_type: str | None) -> bool:
        return sql_type in ("String", "Nullable(String)", "LowCardinality(Nullable(String))")
