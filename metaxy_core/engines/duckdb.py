"""The DuckDB engine: joins and candidate selection as SQL inside the store's file.

Only the candidates leave DuckDB (new samples, orphaned ones, and those whose inputs changed),
as Arrow, with their input columns as they are stored: 64-bit integers, 8 bytes a value;
:mod:`metaxy_core.engines.classify` hashes them in Polars and classifies the candidates.
DuckDB has no XXH64 built in and cannot download extensions offline, and a Python function in
SQL is called per 2,048-row vector, so provenance is never hashed inside DuckDB.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import narwhals as nw
import polars as pl

from metaxy_core import columns as c
from metaxy_core.engines import classify
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.hashing import (
    DUCKDB_FUNCTION,
    NULL_SENTINEL,
    SEPARATOR,
    register_duckdb_hash,
    sql_hash,
    sql_hex,
    sql_id_text,
)
from metaxy_core.increment import Increment, IncrementCounts
from metaxy_core.plan import (
    EXPECTED_MARK,
    GROUP,
    STORED_MARK,
    STORED_VERSION,
    ResolvePlan,
    UpstreamPlan,
    stored_column,
    stored_input,
)

__all__ = ["DuckDBEngine", "quote", "sql_literal"]

_view_ids = itertools.count()
_MEMBER = "__metaxy_member"
_NONE = IncrementCounts(0, 0, 0)


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
        self._hash_registered = False

    def expected(self, plan: ResolvePlan, samples: pl.LazyFrame | None = None) -> pl.LazyFrame:
        """Key and passthrough columns, expected provenance and change inputs of every expected
        sample (of every parent, for an expansion)."""
        try:
            hashed = self._fetch(f"SELECT * FROM {self._inputs(plan, samples)}", plan)
        finally:
            self._drop_views()
        return hashed.select(*plan.key, *plan.passthrough, *plan.carried)

    def resolve(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> Increment:
        """New, stale and orphaned samples; only candidates leave DuckDB."""
        try:
            query, stored = self._candidates(plan, samples, filter)
            hashed = self._fetch(query, plan)
        finally:
            self._drop_views()
        if not stored:
            return classify.new_only(plan, hashed)
        return classify.split(plan, classify.classify(plan, hashed, with_reasons=True))

    def count(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> IncrementCounts:
        """Counts; new and orphaned are counted in SQL, only changed-input rows are hashed."""
        return self._counts(plan, samples, filter, lambda query: "0").get(0, _NONE)

    def count_by_shard(
        self, plan: ResolvePlan, samples: pl.LazyFrame | None, shards: int
    ) -> list[IncrementCounts]:
        """The counts of every hash shard, in one pass."""
        counts = self._counts(plan, samples, None, lambda q: self._shard(q, plan.key, shards))
        return [counts.get(i, _NONE) for i in range(shards)]

    def count_by_column(
        self, plan: ResolvePlan, samples: pl.LazyFrame | None, column: str
    ) -> dict[Any, IncrementCounts] | None:
        """The counts of every value of a string ``column`` in one pass (``None`` when the
        feature cannot be grouped so: an expansion, or a column that is not a string)."""
        if plan.child_columns:
            return None
        try:
            expected_type = self._types(f"SELECT * FROM {self._inputs(plan, samples)}").get(column)
            table = self._table(plan.feature)
            stored_types = {} if table is None else self._types(f"SELECT * FROM {table}")
        finally:
            self._drop_views()
        if expected_type != "VARCHAR" or stored_types.get(column, "VARCHAR") != "VARCHAR":
            return None
        return self._counts(plan, samples, None, lambda query: quote(column), by=column)

    def _counts(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None,
        filter: SampleFilter | None,
        group: Callable[[str], str],
        by: str | None = None,
    ) -> dict[Any, IncrementCounts]:
        """Counts per value of the SQL ``group(candidates query)``: new and orphaned counted in
        SQL, only changed-input rows fetched and hashed. ``by`` as :meth:`_candidates`."""
        try:
            query, stored = self._candidates(plan, samples, filter, by=by)
            grouped = f"SELECT *, {group(query)} AS {GROUP} FROM ({query})"
            sides = "count(*), 0"
            if stored:
                sides = (
                    f"count(*) FILTER (WHERE {STORED_MARK} IS NULL), "
                    f"count(*) FILTER (WHERE {EXPECTED_MARK} IS NULL)"
                )
            rows = self._con.sql(f"SELECT {GROUP}, {sides} FROM ({grouped}) GROUP BY ALL")
            counts = {g: IncrementCounts(int(n), 0, int(o)) for g, n, o in rows.fetchall()}
            if not stored:
                return counts
            both = self._fetch(
                f"SELECT * FROM ({grouped}) WHERE {STORED_MARK} AND {EXPECTED_MARK}", plan
            )
        finally:
            self._drop_views()
        stale = classify.count_by(classify.classify(plan, both, with_reasons=False), GROUP)
        for g, found in stale.items():
            known = counts.get(g, _NONE)
            counts[g] = IncrementCounts(known.new, found.stale, known.orphaned)
        return counts

    # -- steps ----------------------------------------------------------------------------------

    def _fetch(self, query: str, plan: ResolvePlan) -> pl.LazyFrame:
        """The rows of ``query``, hashed (see :func:`classify.hash_arrow`)."""
        return classify.hash_arrow(plan, self._con.sql(query).to_arrow_table())

    def _shard(self, query: str, ids: Sequence[str], shards: int) -> str:
        """SQL of the hash shard (of ``shards``) of each row of ``query``, from its ``ids``."""
        self._register_hash()
        types = self._types(f"SELECT * FROM ({query})")
        texts = [sql_id_text(quote(i), types[i]) for i in ids]
        # The floored remainder, never negative, as Python's ``%`` and Spark's ``pmod``.
        return f"(({sql_hash(texts)} % {shards} + {shards}) % {shards})"

    def _types(self, query: str) -> dict[str, str]:
        """The DuckDB type of each column of ``query`` (bound, not run)."""
        rel = self._con.sql(query)
        return {n: str(t) for n, t in zip(rel.columns, rel.types, strict=True)}

    def _view(self, data: object) -> str:
        """Register a relation or Arrow table under a fresh view name; returns the name."""
        name = f"__metaxy_view_{next(_view_ids)}"
        self._con.register(name, data)
        self._views.append(name)
        return quote(name)

    def _filtered(self, query: str, filter: SampleFilter, ids: Sequence[str]) -> str:
        """A view of ``query`` limited by ``filter``."""
        if isinstance(filter, HashShard):
            shard = self._shard(query, ids, filter.count)
            return f"(SELECT * FROM ({query}) WHERE {shard} = {filter.index})"
        rel = self._con.sql(query)
        return self._view(nw.from_native(rel).filter(filter).to_native())

    def _filter_expected(
        self, inputs: str, filter: SampleFilter, plan: ResolvePlan, stored: str | None
    ) -> str:
        """Expected rows in the scope of ``filter``.

        A predicate is about child rows, which an expansion's expected parents lack: a parent
        is in scope when one of its stored children is, or, when it has no children yet (a new
        parent), when the predicate holds with its child id columns null.
        """
        if not plan.child_columns or isinstance(filter, HashShard):
            return self._filtered(f"SELECT * FROM {inputs}", filter, plan.key)
        using = f"USING ({', '.join(map(quote, plan.key))})"
        keys = ", ".join(map(quote, plan.key))
        table = self._table(plan.feature)
        types: dict[str, str] = {}
        childless = inputs
        if table is not None:
            types = {r[0]: r[1] for r in self._con.sql(f"DESCRIBE {table}").fetchall()}
            childless = f"(SELECT * FROM {inputs} ANTI JOIN (SELECT {keys} FROM {table}) {using})"
        nulls = ", ".join(
            f"NULL::{types.get(i, 'VARCHAR')} AS {quote(i)}" for i in plan.child_columns
        )
        kept = self._filtered(f"SELECT *, {nulls} FROM {childless}", filter, plan.key)
        new = f"SELECT * EXCLUDE ({', '.join(map(quote, plan.child_columns))}) FROM {kept}"
        if stored is None:
            return f"({new})"
        parents = f"SELECT * FROM {inputs} SEMI JOIN (SELECT {keys} FROM {stored}) {using}"
        return f"({parents} UNION ALL BY NAME {new})"

    def _register_hash(self) -> None:
        """Register the SQL hash function, needed only by hash shards and group versions."""
        if not self._hash_registered:
            register_duckdb_hash(self._con)
            self._hash_registered = True

    def _drop_views(self) -> None:
        while self._views:
            self._con.unregister(self._views.pop())

    def _inputs(self, plan: ResolvePlan, samples: pl.LazyFrame | None) -> str:
        if plan.is_root:
            if samples is None:
                raise ValueError(f"root feature {plan.feature!r} is resolved against samples")
            return self._view(samples.collect().to_arrow())
        joined = self._upstream(plan.upstreams[0])
        for up in plan.upstreams[1:]:
            how = "LEFT JOIN" if up.optional else "JOIN"
            joined = f"{joined} {how} {self._upstream(up)} USING ({', '.join(map(quote, up.on))})"
        return f"(SELECT * FROM {joined})"

    def _upstream(self, up: UpstreamPlan) -> str:
        """One upstream's current rows, filtered, grouped when aggregated, renamed."""
        table = self._table(up.feature)
        if table is None:
            versions = {up.columns[v] for v in up.versions}
            cols = ", ".join(
                f"NULL::{'BIGINT' if a in versions else 'VARCHAR'} AS {quote(a)}"
                for a in up.columns.values()
            )
            return f"(SELECT {cols} WHERE false)"
        # The filter parsed as one Polars SQL expression when the dependency was declared, so
        # it cannot close the parentheses around it.
        where = f" WHERE ({up.filter})" if up.filter is not None else ""
        if not up.aggregated:
            cols = ", ".join(f"{quote(s)} AS {quote(a)}" for s, a in up.columns.items())
            return f"(SELECT {cols} FROM {table}{where})"
        return self._aggregate(f"(SELECT * FROM {table}{where})", up)

    def _aggregate(self, rows: str, up: UpstreamPlan) -> str:
        """Group ``rows`` by ``up.on``: group versions of version columns (see
        :mod:`metaxy_core.plan`), lists of every other column, members ordered by their ids."""
        self._register_hash()
        sep = f"chr({ord(SEPARATOR)})"

        def text(name: str) -> str:
            return f"coalesce({sql_hex(name)}, chr({ord(NULL_SENTINEL)}))"

        types = self._types(f"SELECT * FROM {rows}")
        ids = [sql_id_text(quote(i), types[i]) for i in up.members]
        member = f"concat_ws({sep}, {', '.join(ids)})"
        order = f"ORDER BY {_MEMBER}"
        cols = [quote(i) for i in up.on]
        for source, alias in up.columns.items():
            if source in up.on:
                continue
            if source in up.versions:
                each = f"concat_ws({sep}, {_MEMBER}, {text(quote(source))})"
                value = f"{DUCKDB_FUNCTION}(string_agg({each}, {sep} {order}))"
            else:
                value = f"list({quote(source)} {order})"
            cols.append(f"{value} AS {quote(alias)}")
        return (
            f"(SELECT {', '.join(cols)} FROM (SELECT *, {member} AS {_MEMBER} FROM {rows}) "
            f"GROUP BY {', '.join(map(quote, up.on))})"
        )

    def _stored(
        self, plan: ResolvePlan, filter: SampleFilter | None, by: str | None = None
    ) -> str | None:
        table = self._table(plan.feature)
        if table is None:
            return None
        present = {r[0] for r in self._con.sql(f"DESCRIBE {table}").fetchall()}

        def stored_as(name: str, alias: str) -> str:
            # Rows written before a column existed compare as null, i.e. as changed.
            text = name in (c.FEATURE_VERSION, by)
            value = quote(name) if name in present else f"NULL::{'VARCHAR' if text else 'BIGINT'}"
            return f"{value} AS {quote(alias)}"

        renamed = [
            *map(quote, plan.id_columns),
            *([stored_as(by, by)] if by and by not in plan.id_columns else []),
            stored_as(c.FEATURE_VERSION, STORED_VERSION),
            *(stored_as(c.provenance_column(f.field), stored_column(f.field)) for f in plan.fields),
            *(stored_as(n, stored_input(n)) for n in plan.change_inputs),
        ]
        source = table
        if filter is not None:
            source = self._filtered(f"SELECT * FROM {table}", filter, plan.key)
        where = f" WHERE {quote(by)} IS NOT NULL" if by else ""
        return f"(SELECT {', '.join(renamed)} FROM {source}{where})"

    def _candidates(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None,
        filter: SampleFilter | None,
        by: str | None = None,
    ) -> tuple[str, bool]:
        """SQL of the candidate rows, and whether anything is stored to compare with.

        With ``by``, samples also join on that column, so one whose value differs between
        upstream and store is new under one value and orphaned under the other, as a filter on
        each value would find; null values are in no group.
        """
        inputs = self._inputs(plan, samples)
        stored = self._stored(plan, filter, by)
        if filter is not None:
            inputs = self._filter_expected(inputs, filter, plan, stored)
        if by is not None:
            inputs = f"(SELECT * FROM {inputs} WHERE {quote(by)} IS NOT NULL)"
        on = list(dict.fromkeys([*plan.key, *([by] if by else [])]))
        needed = dict.fromkeys([*on, *plan.passthrough, *plan.change_inputs, *plan.inputs])
        if stored is None:
            return f"SELECT {', '.join(map(quote, needed))} FROM {inputs}", False
        needed.update(dict.fromkeys(plan.child_columns))  # from the stored side
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
        select = map(quote, [*needed, *stored_cols, EXPECTED_MARK, STORED_MARK])
        using = ", ".join(map(quote, on))
        joined = (
            f"(SELECT *, true AS {EXPECTED_MARK} FROM {inputs}) "
            f"FULL OUTER JOIN (SELECT *, true AS {STORED_MARK} FROM {stored}) USING ({using})"
        )
        return f"SELECT {', '.join(select)} FROM {joined} WHERE {candidate}", True
