"""The DuckDB engine: joins and candidate selection as SQL inside the store's file.

Only the candidates leave DuckDB (new samples, orphaned ones, and those whose inputs changed);
:mod:`metaxy_core.engines.classify` hashes and classifies them. DuckDB has no native xxhash64
and cannot download extensions offline, so hashing in SQL would call a Python function per
2,048-row vector; hashing the few candidates in Polars is both exact and faster.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import duckdb
import narwhals as nw
import polars as pl

from metaxy_core import columns as c
from metaxy_core.engines import classify
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.hashing import register_duckdb_hash, sql_hash
from metaxy_core.increment import Increment, IncrementCounts
from metaxy_core.plan import (
    EXPECTED_MARK,
    STORED_MARK,
    STORED_VERSION,
    ResolvePlan,
    stored_column,
    stored_input,
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
        register_duckdb_hash(connection)  # for hash-shard filters

    def expected(self, plan: ResolvePlan, samples: pl.LazyFrame | None = None) -> pl.LazyFrame:
        """Id and passthrough columns, expected provenance and change inputs of every sample."""
        try:
            inputs = self._fetch(f"SELECT * FROM {self._inputs(plan, samples)}")
        finally:
            self._drop_views()
        return inputs.with_columns(classify.provenance(plan)).select(
            *plan.id_columns, *plan.passthrough, *plan.carried
        )

    def resolve(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> Increment:
        """New, stale and orphaned samples; only candidates leave DuckDB."""
        try:
            query, stored = self._candidates(plan, samples, filter)
            candidates = self._fetch(query)
        finally:
            self._drop_views()
        if not stored:
            return classify.split(plan, classify.all_new(plan, candidates))
        return classify.split(plan, classify.classify(plan, candidates, with_reasons=True))

    def count(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> IncrementCounts:
        """Counts; new and orphaned are counted in SQL, only changed-input rows are hashed."""
        try:
            query, stored = self._candidates(plan, samples, filter)
            if not stored:
                rows = self._con.sql(f"SELECT count(*) FROM ({query})").fetchall()
                return IncrementCounts(int(rows[0][0]), 0, 0)
            new, orphaned = self._con.sql(
                f"SELECT count(*) FILTER (WHERE {STORED_MARK} IS NULL), "
                f"count(*) FILTER (WHERE {EXPECTED_MARK} IS NULL) FROM ({query})"
            ).fetchall()[0]
            both = self._fetch(f"SELECT * FROM ({query}) WHERE {STORED_MARK} AND {EXPECTED_MARK}")
        finally:
            self._drop_views()
        stale = classify.count(classify.classify(plan, both, with_reasons=False)).stale
        return IncrementCounts(int(new), stale, int(orphaned))

    # -- steps ----------------------------------------------------------------------------------

    def _fetch(self, query: str) -> pl.LazyFrame:
        frame = pl.from_arrow(self._con.sql(query).to_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()

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

    def _inputs(self, plan: ResolvePlan, samples: pl.LazyFrame | None) -> str:
        if plan.is_root:
            if samples is None:
                raise ValueError(f"root feature {plan.feature!r} is resolved against samples")
            return self._view(samples.collect().to_arrow())
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

    def _stored(self, plan: ResolvePlan, filter: SampleFilter | None) -> str | None:
        table = self._table(plan.feature)
        if table is None:
            return None
        present = {r[0] for r in self._con.sql(f"DESCRIBE {table}").fetchall()}

        def stored_as(name: str, alias: str) -> str:
            # Rows written before a column existed compare as null, i.e. as changed.
            value = quote(name) if name in present else "NULL::VARCHAR"
            return f"{value} AS {quote(alias)}"

        renamed = [
            *map(quote, plan.id_columns),
            stored_as(c.FEATURE_VERSION, STORED_VERSION),
            *(stored_as(c.provenance_column(f.field), stored_column(f.field)) for f in plan.fields),
            *(stored_as(n, stored_input(n)) for n in plan.change_inputs),
        ]
        source = table
        if filter is not None:
            source = self._filtered(f"SELECT * FROM {table}", filter, plan.id_columns)
        return f"(SELECT {', '.join(renamed)} FROM {source})"

    def _candidates(
        self, plan: ResolvePlan, samples: pl.LazyFrame | None, filter: SampleFilter | None
    ) -> tuple[str, bool]:
        """SQL of the candidate rows, and whether anything is stored to compare with."""
        inputs = self._inputs(plan, samples)
        if filter is not None:
            inputs = self._filtered(f"SELECT * FROM {inputs}", filter, plan.id_columns)
        needed = dict.fromkeys(
            [
                *plan.id_columns,
                *plan.passthrough,
                *(i for f in plan.fields for i in f.inputs),
                *plan.change_inputs,
            ]
        )
        stored = self._stored(plan, filter)
        if stored is None:
            return f"SELECT {', '.join(map(quote, needed))} FROM {inputs}", False
        versions = ", ".join(map(sql_literal, plan.code_changed_in))
        candidate = " OR ".join(
            [
                f"{STORED_MARK} IS NULL",
                f"{EXPECTED_MARK} IS NULL",
                f"{STORED_VERSION} IN ({versions})" if versions else "false",
                *(
                    f"{quote(n)} IS DISTINCT FROM {quote(stored_input(n))}"
                    for n in plan.change_inputs
                ),
            ]
        )
        stored_cols = [STORED_VERSION, *(stored_column(f.field) for f in plan.fields)]
        select = [*needed, *stored_cols, EXPECTED_MARK, STORED_MARK]
        using = ", ".join(map(quote, plan.id_columns))
        joined = (
            f"(SELECT *, true AS {EXPECTED_MARK} FROM {inputs}) "
            f"FULL OUTER JOIN (SELECT *, true AS {STORED_MARK} FROM {stored}) USING ({using})"
        )
        return f"SELECT {', '.join(map(quote, select))} FROM {joined} WHERE {candidate}", True
