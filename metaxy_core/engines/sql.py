"""The increment as SQL, once for every SQL engine: joins and candidate selection.

:class:`SqlEngine` builds the whole query of a :class:`~metaxy_core.plan.ResolvePlan` (the
joins of :mod:`metaxy_core.plan`, the group versions of aggregations, the candidate filter,
the counts) from plain SQL that DuckDB, ClickHouse and Spark SQL all read: subqueries with
aliases, ``JOIN ... USING``, ``IS DISTINCT FROM``, ``count(*) FILTER (WHERE ...)``,
``GROUP BY ALL``. What differs between dialects is a handful of hooks a backend file fills
in: how a hash, its hex text, an id's canonical text and a typed null are written, how an
ordered list is aggregated, a semi or anti join, how rows leave the engine (and where their
provenance is hashed), and how a frame from Python or a Narwhals predicate gets in. A backend
(``engines/duckdb.py``, ``engines/clickhouse.py``) is those hooks and nothing of the
algorithm; ``engines/polars.py`` runs the DuckDB hooks over the frames a store scans.
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import narwhals as nw
import polars as pl
import pyarrow as pa

from metaxy_core import columns as c
from metaxy_core.engines import classify
from metaxy_core.errors import ColumnTypeError
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.hashing import NULL_SENTINEL, SEPARATOR
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

__all__ = ["SqlEngine", "quote", "sql_literal"]

_aliases = itertools.count()
MEMBER = "__metaxy_member"
_NONE = IncrementCounts(0, 0, 0)
INT64, TEXT = "int64", "text"
"""The two kinds of typed null the algorithm writes (:meth:`SqlEngine._null`)."""


def quote(identifier: str) -> str:
    """A quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


# An integer type in DuckDB, ClickHouse or Spark SQL (lower case).
_INTEGER = re.compile(
    r"^(nullable\()?(u?int\d*|u?tinyint|u?smallint|u?integer|u?bigint|u?hugeint|long|short|byte)\b"
)


def _alias() -> str:
    return f"__metaxy_t{next(_aliases)}"


class SqlEngine(ABC):
    """Resolves increments with SQL where the rows are; only the candidates leave."""

    name: str

    def __init__(self, table: Callable[[str], str | None]):
        """``table(feature)`` gives SQL naming a feature's current rows, or ``None``."""
        self._table = table
        self._views: list[str] = []

    # -- dialect hooks --------------------------------------------------------------------------

    @abstractmethod
    def _fetch(self, query: str, plan: ResolvePlan) -> pl.LazyFrame:
        """The rows of ``query`` in Polars, with every field's expected provenance (the
        columns :func:`metaxy_core.engines.classify.provenance` adds)."""

    @abstractmethod
    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of ``query`` as Python tuples (few rows: counts)."""

    @abstractmethod
    def _types(self, query: str) -> dict[str, str]:
        """The SQL type of each column of ``query``, without running it."""

    @abstractmethod
    def _register(self, rows: pa.Table) -> str:
        """Make ``rows`` queryable under a fresh name (dropped by :meth:`_drop_views`)."""

    @abstractmethod
    def _unregister(self, name: str) -> None:
        """Drop what :meth:`_register` made."""

    @abstractmethod
    def _predicate(self, query: str, filter: nw.Expr) -> str:
        """A relation of the rows of ``query`` that the Narwhals predicate ``filter`` keeps."""

    def _hash(self, texts: Sequence[str]) -> str:
        """SQL of the 64-bit hash of the canonical string of expressions ``texts`` (each as
        text, null as :data:`~metaxy_core.hashing.NULL_SENTINEL`)."""
        filled = [f"coalesce({self._text(p)}, {self._char(ord(NULL_SENTINEL))})" for p in texts]
        return self._hash_text(f"concat_ws({self._char(ord(SEPARATOR))}, {', '.join(filled)})")

    @abstractmethod
    def _text(self, expr: str) -> str:
        """SQL of ``expr`` cast to the engine's string type."""

    @abstractmethod
    def _hash_text(self, text: str) -> str:
        """SQL of the 64-bit hash of one canonical string."""

    @abstractmethod
    def _hex(self, expr: str) -> str:
        """SQL of a 64-bit hash as its 16 lowercase hex digits (null stays null)."""

    @abstractmethod
    def _id_text(self, expr: str, sql_type: str) -> str:
        """SQL of the canonical text of an id value (see ``hashing.polars_id_text``)."""

    @abstractmethod
    def _null(self, sql_type: str) -> str:
        """A null of ``sql_type``, or of :data:`INT64` or :data:`TEXT`."""

    @abstractmethod
    def _char(self, code: int) -> str:
        """SQL of the one-character string of ``code``."""

    @abstractmethod
    def _ordered_list(self, expr: str, order: str) -> str:
        """Aggregate: the list of ``expr`` of a group's rows, ordered by ``order``."""

    @abstractmethod
    def _ordered_concat(self, expr: str, order: str, separator: str) -> str:
        """Aggregate: the texts ``expr`` of a group's rows, ordered by ``order``, joined."""

    def _semi(self, left: str, right: str, keys: Sequence[str], *, anti: bool) -> str:
        """SQL of the rows of relation ``left`` with (``anti``: without) a match in ``right``
        on ``keys``; ``left``'s columns only (``LEFT SEMI``/``LEFT ANTI`` joins, as Spark and
        ClickHouse write them)."""
        how = "LEFT ANTI" if anti else "LEFT SEMI"
        using = ", ".join(map(quote, keys))
        return (
            f"(SELECT * FROM {left} AS __metaxy_l {how} JOIN {right} AS __metaxy_r USING ({using}))"
        )

    @abstractmethod
    def _except(self, relation: str, columns: Sequence[str]) -> str:
        """SQL of ``relation`` without ``columns``."""

    def _read(self, feature: str, columns: Sequence[str] | None) -> str | None:
        """SQL naming a feature's current rows, or ``None``; ``columns`` are those the query
        reads (all when ``None``), for an engine that can read fewer."""
        return self._table(feature)

    def _is_text(self, sql_type: str | None) -> bool:
        """Whether ``sql_type`` is the engine's string type."""
        return sql_type == "VARCHAR"

    def _check_sample_ids(self, plan: ResolvePlan, inputs: str, stored: str) -> None:
        """A root's samples have no integer id the store holds as text, nor the other way
        round: the join of the two would fail (or, in some engines, compare text with
        numbers)."""
        ids = ", ".join(map(quote, plan.id_columns))
        given = self._types(f"SELECT {ids} FROM {inputs} AS {_alias()}")
        held = self._types(f"SELECT {ids} FROM {stored} AS {_alias()}")
        for name in plan.id_columns:
            new, old = given[name], held[name]
            kinds = {self._is_text(new), self._is_text(old)}
            integers = {bool(_INTEGER.match(new.lower())), bool(_INTEGER.match(old.lower()))}
            # Text on one side, an integer on the other (an enum or a column of nulls only,
            # from an empty first write, joins with either).
            if kinds == {True, False} and integers == {True, False}:
                raise ColumnTypeError(
                    f"samples of {plan.feature!r}: id column {name!r} has type {new}, but the "
                    f"store holds it as {old}. Cast {name!r} in samples= to the type its rows "
                    "were written with."
                )

    def _with_provenance(self, query: str, plan: ResolvePlan) -> str:
        """SQL of the rows of ``query`` with every field's expected provenance hashed in the
        engine, for backends with a native hash (ClickHouse, Spark)."""
        replaced = [c.provenance_column(f.field) for f in plan.fields]
        kept = [quote(n) for n in self._types(query) if n not in replaced]
        provenance = [
            f"{self._provenance(f.recipe, f.inputs)} AS {quote(c.provenance_column(f.field))}"
            for f in plan.fields
        ]
        return f"SELECT {', '.join([*kept, *provenance])} FROM ({query}) AS {_alias()}"

    def _provenance(self, recipe: str, inputs: Sequence[str]) -> str:
        """SQL of a field's expected provenance: the hash of its recipe and the hex texts of
        its input columns ``inputs`` (null as the sentinel), for backends with a native hash
        (:func:`metaxy_core.engines.classify.provenance` is the same in Polars)."""
        return self._hash([sql_literal(recipe), *(self._hex(quote(i)) for i in inputs)])

    # -- the algorithm --------------------------------------------------------------------------

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
        """New, stale and orphaned samples; only candidates leave the engine."""
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
            table = self._read(plan.feature, [*plan.id_columns, column])
            stored_types = {} if table is None else self._types(f"SELECT * FROM {table}")
        finally:
            self._drop_views()
        if not self._is_text(expected_type) or not self._is_text(
            stored_types.get(column, expected_type)
        ):
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
            grouped = f"SELECT *, {group(query)} AS {GROUP} FROM ({query}) AS {_alias()}"
            sides = "count(*), 0"
            if stored:
                sides = (
                    f"count(*) FILTER (WHERE {STORED_MARK} IS NULL), "
                    f"count(*) FILTER (WHERE {EXPECTED_MARK} IS NULL)"
                )
            rows = self._rows(
                f"SELECT {GROUP}, {sides} FROM ({grouped}) AS {_alias()} GROUP BY ALL"
            )
            counts = {g: IncrementCounts(int(n), 0, int(o)) for g, n, o in rows}
            if not stored:
                return counts
            both = self._fetch(
                f"SELECT * FROM ({grouped}) AS {_alias()} WHERE {STORED_MARK} AND {EXPECTED_MARK}",
                plan,
            )
        finally:
            self._drop_views()
        stale = classify.count_by(classify.classify(plan, both, with_reasons=False), GROUP)
        for g, found in stale.items():
            known = counts.get(g, _NONE)
            counts[g] = IncrementCounts(known.new, found.stale, known.orphaned)
        return counts

    # -- steps ----------------------------------------------------------------------------------

    def _shard(self, query: str, ids: Sequence[str], shards: int) -> str:
        """SQL of the hash shard (of ``shards``) of each row of ``query``, from its ``ids``."""
        types = self._types(f"SELECT * FROM ({query}) AS {_alias()}")
        texts = [self._id_text(quote(i), types[i]) for i in ids]
        # The floored remainder, never negative, as Python's ``%`` and Spark's ``pmod``.
        return f"(({self._hash(texts)} % {shards} + {shards}) % {shards})"

    def _view(self, data: pa.Table) -> str:
        name = self._register(data)
        self._views.append(name)
        return name

    def _filtered(self, query: str, filter: SampleFilter, ids: Sequence[str]) -> str:
        """A relation of ``query`` limited by ``filter``."""
        if isinstance(filter, HashShard):
            shard = self._shard(query, ids, filter.count)
            return f"(SELECT * FROM ({query}) AS {_alias()} WHERE {shard} = {filter.index})"
        return self._predicate(query, filter)

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
        keys = ", ".join(map(quote, plan.key))
        table = self._read(plan.feature, plan.id_columns)
        types: dict[str, str] = {}
        childless = inputs
        if table is not None:
            types = self._types(f"SELECT * FROM {table}")
            childless = self._semi(inputs, f"(SELECT {keys} FROM {table})", plan.key, anti=True)
        nulls = ", ".join(
            f"{self._null(types.get(i, TEXT))} AS {quote(i)}" for i in plan.child_columns
        )
        kept = self._filtered(f"SELECT *, {nulls} FROM {childless}", filter, plan.key)
        new = self._except(kept, plan.child_columns)
        if stored is None:
            return f"({new})"
        parents = self._semi(inputs, f"(SELECT {keys} FROM {stored})", plan.key, anti=False)
        # Both sides list the same columns in the same order, for a dialect-neutral UNION ALL.
        names = ", ".join(map(quote, self._types(new)))
        return (
            f"(SELECT {names} FROM {parents} AS {_alias()} UNION ALL "
            f"SELECT {names} FROM ({new}) AS {_alias()})"
        )

    def _drop_views(self) -> None:
        while self._views:
            self._unregister(self._views.pop())

    def _inputs(self, plan: ResolvePlan, samples: pl.LazyFrame | None) -> str:
        if plan.is_root:
            if samples is None:
                raise ValueError(f"root feature {plan.feature!r} is resolved against samples")
            return self._view(samples.collect().to_arrow())
        joined = f"{self._upstream(plan.upstreams[0])} AS {_alias()}"
        for up in plan.upstreams[1:]:
            how = "LEFT JOIN" if up.optional else "JOIN"
            joined = (
                f"{joined} {how} {self._upstream(up)} AS {_alias()} "
                f"USING ({', '.join(map(quote, up.on))})"
            )
        return f"(SELECT * FROM {joined})"

    def _upstream(self, up: UpstreamPlan) -> str:
        """One upstream's current rows, filtered, grouped when aggregated, renamed."""
        table = self._read(up.feature, [*up.columns, *up.members, *up.filter_columns])
        if table is None:
            versions = {up.columns[v] for v in up.versions}
            cols = ", ".join(
                f"{self._null(INT64 if a in versions else TEXT)} AS {quote(a)}"
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
        sep = self._char(ord(SEPARATOR))

        def text(name: str) -> str:
            return f"coalesce({self._hex(name)}, {self._char(ord(NULL_SENTINEL))})"

        types = self._types(f"SELECT * FROM {rows} AS {_alias()}")
        ids = [self._id_text(quote(i), types[i]) for i in up.members]
        member = f"concat_ws({sep}, {', '.join(ids)})"
        cols = [quote(i) for i in up.on]
        for source, alias in up.columns.items():
            if source in up.on:
                continue
            if source in up.versions:
                each = f"concat_ws({sep}, {MEMBER}, {text(quote(source))})"
                value = self._hash_text(self._ordered_concat(each, MEMBER, sep))
            else:
                value = self._ordered_list(quote(source), MEMBER)
            cols.append(f"{value} AS {quote(alias)}")
        return (
            f"(SELECT {', '.join(cols)} FROM (SELECT *, {member} AS {MEMBER} FROM {rows} "
            f"AS {_alias()}) AS {_alias()} GROUP BY {', '.join(map(quote, up.on))})"
        )

    def _stored(
        self, plan: ResolvePlan, filter: SampleFilter | None, by: str | None = None
    ) -> str | None:
        extra = [by] if by and by not in plan.id_columns else []
        renames = [
            (c.FEATURE_VERSION, STORED_VERSION),
            *((c.provenance_column(f.field), stored_column(f.field)) for f in plan.fields),
            *((n, stored_input(n)) for n in plan.change_inputs),
        ]
        # A filter may name any stored column (a partition column, say): then read them all.
        read = None if filter is not None else [*plan.id_columns, *extra, *(n for n, _ in renames)]
        table = self._read(plan.feature, read)
        if table is None:
            return None
        present = set(self._types(f"SELECT * FROM {table}"))

        def stored_as(name: str, alias: str) -> str:
            # Rows written before a column existed compare as null, i.e. as changed.
            text = name in (c.FEATURE_VERSION, by)
            value = quote(name) if name in present else self._null(TEXT if text else INT64)
            return f"{value} AS {quote(alias)}"

        renamed = [
            *map(quote, plan.id_columns),
            *(stored_as(b, b) for b in extra),
            *(stored_as(n, a) for n, a in renames),
        ]
        source = table
        if filter is not None:
            source = self._filtered(f"SELECT * FROM {table}", filter, plan.key)
        where = f" WHERE {quote(by)} IS NOT NULL" if by else ""
        return f"(SELECT {', '.join(renamed)} FROM {source} AS {_alias()}{where})"

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
        if plan.is_root and stored is not None:
            self._check_sample_ids(plan, inputs, stored)
        if filter is not None:
            inputs = self._filter_expected(inputs, filter, plan, stored)
        if by is not None:
            inputs = f"(SELECT * FROM {inputs} AS {_alias()} WHERE {quote(by)} IS NOT NULL)"
        on = list(dict.fromkeys([*plan.key, *([by] if by else [])]))
        needed = dict.fromkeys([*on, *plan.passthrough, *plan.change_inputs, *plan.inputs])
        if stored is None:
            return f"SELECT {', '.join(map(quote, needed))} FROM {inputs} AS {_alias()}", False
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
            f"(SELECT *, true AS {EXPECTED_MARK} FROM {inputs} AS {_alias()}) AS {_alias()} "
            f"FULL OUTER JOIN (SELECT *, true AS {STORED_MARK} FROM {stored} AS {_alias()}) "
            f"AS {_alias()} USING ({using})"
        )
        return f"SELECT {', '.join(select)} FROM {joined} WHERE {candidate}", True
