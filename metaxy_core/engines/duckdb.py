"""The DuckDB engine: a :class:`~metaxy_core.plan.ResolvePlan` as one SQL query in the store.

The only rows that leave DuckDB are the increment's. Hashing runs in DuckDB through the
``metaxy_xxh64`` function (see :func:`metaxy_core.hashing.register_duckdb_hash`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import duckdb
import narwhals as nw
import polars as pl

from metaxy_core import columns as c
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.hashing import register_duckdb_hash, sql_hash
from metaxy_core.increment import Increment, IncrementCounts, StaleReason
from metaxy_core.plan import (
    EXPECTED_MARK,
    STATUS,
    STORED_MARK,
    STORED_VERSION,
    ResolvePlan,
    stored_column,
)

__all__ = ["DuckDBEngine", "quote", "sql_literal"]

_view_ids = itertools.count()


def quote(identifier: str) -> str:
    """A quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


class DuckDBEngine:
    """Resolves increments with SQL inside a DuckDB connection."""

    name = "duckdb"

    def __init__(self, connection: duckdb.DuckDBPyConnection, table: Callable[[str], str | None]):
        """``table(feature)`` gives the quoted current-rows table of a feature, or ``None``."""
        self._con = connection
        self._table = table
        self._views: list[str] = []
        register_duckdb_hash(connection)

    def expected(
        self, plan: ResolvePlan, samples: pl.LazyFrame | None = None
    ) -> duckdb.DuckDBPyRelation:
        """Id columns, passthrough columns and the expected provenance of every field."""
        if plan.is_root:
            if samples is None:
                raise ValueError(f"root feature {plan.feature!r} is resolved against samples")
            source = self._view(samples.collect().to_arrow())
        else:
            source = self._join_upstreams(plan)
        provenance = [
            f"{sql_hash([sql_literal(f.recipe), *map(quote, f.inputs)])} AS "
            f"{quote(c.provenance_column(f.field))}"
            for f in plan.fields
        ]
        keep = [quote(n) for n in (*plan.id_columns, *plan.passthrough)]
        return self._con.sql(f"SELECT {', '.join([*keep, *provenance])} FROM {source}")

    def resolve(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> Increment:
        """New, stale and orphaned samples from one query."""
        out = [*plan.id_columns, *plan.passthrough, *plan.provenance_columns]
        extra = [c.CHANGED_FIELDS, c.STALE_REASON]
        query = self._compare(plan, samples, filter, with_reasons=True)
        try:
            frame = pl.from_arrow(self._con.sql(query).to_arrow_table())
        finally:
            self._drop_views()
        assert isinstance(frame, pl.DataFrame)
        parts = {k[0]: v for k, v in frame.partition_by(STATUS, as_dict=True).items()}
        empty = frame.clear()
        return Increment(
            feature=plan.feature,
            new=parts.get("new", empty).select(out),
            stale=parts.get("stale", empty).select(*out, *extra),
            orphaned=parts.get("orphaned", empty).select(plan.id_columns),
        )

    def count(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> IncrementCounts:
        """Counts of new, stale and orphaned samples; no rows leave DuckDB."""
        query = self._compare(plan, samples, filter, with_reasons=False)
        try:
            rows = self._con.sql(
                f"SELECT {STATUS}, count(*) FROM ({query}) GROUP BY ALL"
            ).fetchall()
        finally:
            self._drop_views()
        counts = dict(rows)
        return IncrementCounts(
            counts.get("new", 0), counts.get("stale", 0), counts.get("orphaned", 0)
        )

    # -- steps ----------------------------------------------------------------------------------

    def _view(self, data: object) -> str:
        """Register a relation or Arrow table under a fresh view name; returns the name."""
        name = f"__metaxy_view_{next(_view_ids)}"
        self._con.register(name, data)
        self._views.append(name)
        return quote(name)

    def _filtered(self, query: str, filter: SampleFilter, ids: Sequence[str]) -> str:
        """A view of ``query`` limited by ``filter``."""
        if isinstance(filter, HashShard):
            shard = sql_hash([quote(i) for i in ids], as_u64=True)
            return f"(SELECT * FROM ({query}) WHERE {shard} % {filter.count} = {filter.index})"
        rel = self._con.sql(query)
        return self._view(nw.from_native(rel).filter(filter).to_native())

    def _drop_views(self) -> None:
        while self._views:
            self._con.unregister(self._views.pop())

    def _join_upstreams(self, plan: ResolvePlan) -> str:
        parts = []
        for up in plan.upstreams:
            table = self._table(up.feature)
            if table is None:
                cols = ", ".join(f"NULL::VARCHAR AS {quote(a)}" for a in up.columns.values())
                parts.append(f"(SELECT {cols} WHERE false)")
            else:
                cols = ", ".join(f"{quote(s)} AS {quote(a)}" for s, a in up.columns.items())
                parts.append(f"(SELECT {cols} FROM {table})")
        using = ", ".join(map(quote, plan.id_columns))
        joined = parts[0]
        for part in parts[1:]:
            joined = f"{joined} JOIN {part} USING ({using})"
        return f"(SELECT * FROM {joined})"

    def _stored(self, plan: ResolvePlan, filter: SampleFilter | None, expected: str) -> str:
        fields = [f.field for f in plan.fields]
        ids = ", ".join(map(quote, plan.id_columns))
        table = self._table(plan.feature)
        renamed = ", ".join(
            [
                ids,
                f"{quote(c.FEATURE_VERSION)} AS {STORED_VERSION}",
                *(f"{quote(c.provenance_column(f))} AS {quote(stored_column(f))}" for f in fields),
            ]
        )
        if table is None:
            nulls = ", ".join(
                [
                    ids,
                    f"NULL::VARCHAR AS {STORED_VERSION}",
                    *(f"NULL::VARCHAR AS {quote(stored_column(f))}" for f in fields),
                ]
            )
            return f"(SELECT {nulls} FROM {expected} WHERE false)"
        source = table
        if filter is not None:
            source = self._filtered(f"SELECT * FROM {table}", filter, plan.id_columns)
        return f"(SELECT {renamed} FROM {source})"

    def _compare(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None,
        filter: SampleFilter | None,
        *,
        with_reasons: bool,
    ) -> str:
        expected_rel = self.expected(plan, samples)
        if filter is None:
            expected = self._view(expected_rel)
        else:
            expected = self._filtered(expected_rel.sql_query(), filter, plan.id_columns)
        stored = self._stored(plan, filter, expected)
        changed = {
            f.field: f"({quote(c.provenance_column(f.field))} IS DISTINCT FROM "
            f"{quote(stored_column(f.field))})"
            for f in plan.fields
        }
        status = (
            f"CASE WHEN {STORED_MARK} IS NULL THEN 'new' "
            f"WHEN {EXPECTED_MARK} IS NULL THEN 'orphaned' "
            f"WHEN {' OR '.join(changed.values())} THEN 'stale' END"
        )
        select = [f"{status} AS {STATUS}", "*"]
        if with_reasons:
            code = {
                f.field: f"{STORED_VERSION} IN ({', '.join(map(sql_literal, f.code_changed_in))})"
                if f.code_changed_in
                else "false"
                for f in plan.fields
            }
            has_code = " OR ".join(f"({changed[f]} AND {code[f]})" for f in changed)
            has_input = " OR ".join(f"({changed[f]} AND NOT {code[f]})" for f in changed)
            names = ", ".join(
                f"CASE WHEN {v} THEN {sql_literal(f)} END" for f, v in changed.items()
            )
            select += [
                f"list_filter([{names}], lambda x: x IS NOT NULL) AS {quote(c.CHANGED_FIELDS)}",
                f"concat_ws(',', CASE WHEN {has_code} THEN '{StaleReason.CODE_VERSION}' END, "
                f"CASE WHEN {has_input} THEN '{StaleReason.INPUT_DATA}' END) "
                f"AS {quote(c.STALE_REASON)}",
            ]
        using = ", ".join(map(quote, plan.id_columns))
        joined = (
            f"(SELECT *, true AS {EXPECTED_MARK} FROM {expected}) "
            f"FULL OUTER JOIN (SELECT *, true AS {STORED_MARK} FROM {stored}) USING ({using})"
        )
        return (
            f"SELECT * FROM (SELECT {', '.join(select)} FROM {joined}) WHERE {STATUS} IS NOT NULL"
        )
