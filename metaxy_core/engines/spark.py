"""The Spark engine: the SQL of :mod:`metaxy_core.engines.sql` in Spark SQL.

Provenance is hashed inside Spark with its built-in ``xxhash64`` (XXH64 with seed 42 as a
signed ``bigint``) over the same canonical strings as the Polars hash, so only the candidates
leave Spark, already hashed, as Arrow. The SQL is the shared builder's: it quotes identifiers
with double quotes, which Spark reads as identifiers under ANSI mode with
``spark.sql.ansi.doubleQuotedIdentifiers``; the engine sets both (and case-sensitive names)
while Spark parses each query, and puts the session's own values back after.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import narwhals as nw
import polars as pl
import pyarrow as pa

from metaxy_core.engines.clickhouse import cast_like
from metaxy_core.engines.sql import INT64, TEXT, SqlEngine, quote
from metaxy_core.plan import ResolvePlan

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["PARSE_CONF", "SparkEngine", "local_session"]

_view_ids = itertools.count()
_NULLS = {INT64: "BIGINT", TEXT: "STRING"}
PARSE_CONF: Final = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
    "spark.sql.caseSensitive": "true",
}
"""Session settings while the engine's SQL is parsed (the session's values come back after)."""
_LOCAL_CONF: Final = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    # The driver JVM of a local session lives as long as its Python process and runs many
    # small queries: the quick JIT tier alone (C1) and one GC thread spare it the warm-up of
    # the optimizing compiler, which costs more than it earns on such queries.
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}
_LOCAL: list[SparkSession] = []
_LOCAL_LOCK = threading.Lock()


def local_session() -> SparkSession:
    """The process's local SparkSession (``local[*]``, no UI, bound to 127.0.0.1, 4 shuffle
    partitions, Arrow transfers, UTC, the JVM's quick JIT tier only), created on first use:
    what ``engine="spark"`` uses without a session."""
    from pyspark.sql import SparkSession

    with _LOCAL_LOCK:
        if not _LOCAL:
            builder = SparkSession.builder.master("local[*]").appName("metaxy")
            for key, value in _LOCAL_CONF.items():
                builder = builder.config(key, value)
            session = builder.getOrCreate()
            session.sparkContext.setLogLevel("ERROR")
            _LOCAL.append(session)
        return _LOCAL[0]


class SparkEngine(SqlEngine):
    """Resolves increments with Spark SQL in a SparkSession."""

    name = "spark"

    def __init__(
        self,
        spark: SparkSession,
        table: Callable[[str], str | None],
        types: Callable[[str], Mapping[str, pa.DataType]],
    ):
        """``table(feature)`` gives the name of a temporary view of a feature's current rows,
        or ``None``; ``types(feature)`` the Arrow types its columns were written with."""
        super().__init__(table)
        self._spark = spark
        self._feature_types = types
        self._sample_types: dict[str, pa.DataType] = {}

    @contextmanager
    def _parsing(self) -> Iterator[None]:
        conf = self._spark.conf
        saved = {key: conf.get(key, None) for key in PARSE_CONF}
        for key, value in PARSE_CONF.items():
            conf.set(key, value)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    conf.unset(key)
                else:
                    conf.set(key, old)

    def sql(self, query: str) -> DataFrame:
        """The Spark DataFrame of ``query`` (parsed and analyzed, not run)."""
        with self._parsing():
            return self._spark.sql(query)

    def _fetch(self, query: str, plan: ResolvePlan) -> pl.LazyFrame:
        """The rows of ``query`` with their provenance, hashed in Spark."""
        rows = self.sql(self._with_provenance(query, plan)).toArrow()
        frame = pl.from_arrow(cast_like(rows, self._arrow_types(plan)), rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()

    def _arrow_types(self, plan: ResolvePlan) -> dict[str, pa.DataType]:
        """The Arrow type each column of the rows had when written."""
        types = dict(self._sample_types)
        for up in plan.upstreams:
            stored = self._feature_types(up.feature)
            for source, alias in up.columns.items():
                if source in stored:
                    listed = up.aggregated and source not in up.on and source not in up.versions
                    types[alias] = pa.large_list(stored[source]) if listed else stored[source]
        types.update(self._feature_types(plan.feature))
        return types

    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.sql(query).collect()]

    def _types(self, query: str) -> dict[str, str]:
        return dict(self.sql(query).dtypes)

    def _register(self, rows: pa.Table | DataFrame) -> str:
        name = f"__metaxy_view_{next(_view_ids)}"
        if isinstance(rows, pa.Table):
            self._sample_types.update({f.name: f.type for f in rows.schema})
            rows = self._spark.createDataFrame(_spark_arrow(rows))
        rows.createOrReplaceTempView(name)
        return quote(name)

    def _unregister(self, name: str) -> None:
        self._spark.catalog.dropTempView(name[1:-1].replace('""', '"'))

    def _predicate(self, query: str, filter: nw.Expr) -> str:
        return self._view(nw.from_native(self.sql(query)).filter(filter).to_native())

    def _text(self, expr: str) -> str:
        return f"CAST({expr} AS STRING)"

    def _hash_text(self, text: str) -> str:
        return f"xxhash64({text})"

    def _hex(self, expr: str) -> str:
        return f"lower(lpad(hex({expr}), 16, '0'))"

    def _id_text(self, expr: str, sql_type: str) -> str:
        if sql_type == "timestamp_ntz":
            micros = f"timestampdiff(MICROSECOND, TIMESTAMP_NTZ'1970-01-01 00:00:00', {expr})"
            return f"CAST({micros} * 1000 AS STRING)"
        if sql_type == "timestamp":
            return f"CAST(unix_micros({expr}) * 1000 AS STRING)"
        return f"CAST({expr} AS STRING)"

    def _null(self, sql_type: str) -> str:
        return f"CAST(NULL AS {_NULLS.get(sql_type, sql_type)})"

    def _char(self, code: int) -> str:
        return f"chr({code})"

    def _ordered_list(self, expr: str, order: str) -> str:
        pairs = f"array_sort(collect_list(named_struct('k', {order}, 'v', {expr})))"
        return f"transform({pairs}, m -> m.v)"

    def _ordered_concat(self, expr: str, order: str, separator: str) -> str:
        return f"array_join({self._ordered_list(expr, order)}, {separator})"

    def _except(self, relation: str, columns: Sequence[str]) -> str:
        kept = [quote(n) for n in self._types(f"SELECT * FROM {relation}") if n not in columns]
        return f"SELECT {', '.join(kept)} FROM {relation}"

    def _is_text(self, sql_type: str | None) -> bool:
        return sql_type == "string"


def _spark_arrow(rows: pa.Table) -> pa.Table:
    """``rows`` in the Arrow types Spark takes: plain strings and lists, no views."""
    frame = pl.from_arrow(rows, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())
