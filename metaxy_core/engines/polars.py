"""The Polars engine: a :class:`~metaxy_core.plan.ResolvePlan` as one lazy Polars query."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import columns as c
from metaxy_core.engines import classify
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.hashing import (
    NULL_SENTINEL,
    SEPARATOR,
    polars_hash_texts,
    polars_hex,
    polars_id_text,
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

__all__ = ["PolarsEngine", "Scan", "apply_filter", "shard_of"]

Scan = Callable[[str, Sequence[str] | None], pl.LazyFrame | None]
"""``scan(feature, columns)``: the current rows of a feature, with those of ``columns`` that it
has (all columns when ``None``), or ``None`` when nothing was ever written for it."""

_MEMBER = "__metaxy_member"


def _aggregate(rows: pl.LazyFrame, up: UpstreamPlan) -> pl.LazyFrame:
    """Group ``rows`` by ``up.on``: group versions of version columns (see
    :mod:`metaxy_core.plan`), lists of every other column, members ordered by their ids."""

    def text(name: str) -> str:
        return f"{_MEMBER}__{name}"

    schema = rows.collect_schema()
    member = pl.concat_str([polars_id_text(i, schema[i]) for i in up.members], separator=SEPARATOR)
    # Each member's text (its ids and its version's hex), rendered over all rows before
    # grouping, so no Python runs per group.
    texts = [
        pl.concat_str(
            [member, polars_hex(pl.col(s)).fill_null(NULL_SENTINEL)], separator=SEPARATOR
        ).alias(text(s))
        for s in up.versions
    ]
    order = pl.col(_MEMBER)
    aggregations = [
        pl.col(text(s)).sort_by(order).str.join(SEPARATOR)
        if s in up.versions
        else pl.col(s).sort_by(order)
        for s in up.columns
        if s not in up.on
    ]
    names = [a for s, a in up.columns.items() if s not in up.on]
    versions = [up.columns[s] for s in up.versions]
    return (
        rows.with_columns(member.alias(_MEMBER), *texts)
        .group_by(list(up.on))
        .agg(e.alias(n) for e, n in zip(aggregations, names, strict=True))
        .with_columns(polars_hash_texts([pl.col(v)]).alias(v) for v in versions)
    )


def shard_of(frame: pl.LazyFrame, ids: Sequence[str], shards: int) -> pl.Expr:
    """The hash shard (of ``shards``) of each row of ``frame``, from its ``ids`` columns: the
    hash of their canonical text modulo ``shards``, never negative (Polars' ``%`` floors, like
    Python's and Spark's ``pmod``)."""
    schema = frame.collect_schema()
    return polars_hash_texts([polars_id_text(i, schema[i]) for i in ids]) % shards


def apply_filter(frame: pl.LazyFrame, filter: SampleFilter, ids: Sequence[str]) -> pl.LazyFrame:
    """Rows of ``frame`` that ``filter`` keeps."""
    if isinstance(filter, HashShard):
        return frame.filter(shard_of(frame, ids, filter.count) == filter.index)
    return nw.from_native(frame).filter(filter).to_native()


class PolarsEngine:
    """Resolves increments with lazy Polars over frames a store scans."""

    name = "polars"

    def __init__(self, scan: Scan) -> None:
        self._scan = scan

    def expected(self, plan: ResolvePlan, samples: pl.LazyFrame | None = None) -> pl.LazyFrame:
        """Key and passthrough columns, expected provenance and change inputs of every expected
        sample (of every parent, for an expansion)."""
        inputs = self._inputs(plan, samples)
        return inputs.with_columns(classify.provenance(plan)).select(
            *plan.key, *plan.passthrough, *plan.carried
        )

    def resolve(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> Increment:
        """New, stale and orphaned samples, collected once."""
        return classify.split(plan, self._classified(plan, samples, filter, with_reasons=True))

    def count(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> IncrementCounts:
        """Counts of new, stale and orphaned samples."""
        return classify.count(self._classified(plan, samples, filter, with_reasons=False))

    def count_by_shard(
        self, plan: ResolvePlan, samples: pl.LazyFrame | None, shards: int
    ) -> list[IncrementCounts]:
        """The counts of every hash shard, classifying each sample once."""
        classified = self._classified(plan, samples, None, with_reasons=False)
        shard = shard_of(classified, plan.key, shards).alias(GROUP)
        counts = classify.count_by(classified.with_columns(shard), GROUP)
        return [counts.get(i, IncrementCounts(0, 0, 0)) for i in range(shards)]

    def count_by_column(
        self, plan: ResolvePlan, samples: pl.LazyFrame | None, column: str
    ) -> dict[Any, IncrementCounts] | None:
        """The counts of every value of a string ``column`` in one pass (``None`` when the
        feature cannot be grouped so: an expansion, or a column that is not a string)."""
        if plan.child_columns:
            return None
        expected_type = self._inputs(plan, samples).collect_schema().get(column)
        stored = self._scan(plan.feature, [column])
        stored_type = pl.String if stored is None else stored.collect_schema().get(column)
        if expected_type != pl.String or stored_type != pl.String:
            return None
        classified = self._classified(plan, samples, None, with_reasons=False, by=column)
        return classify.count_by(classified, column)

    # -- steps ----------------------------------------------------------------------------------

    def _inputs(self, plan: ResolvePlan, samples: pl.LazyFrame | None) -> pl.LazyFrame:
        """The expected rows: the given samples of a root, else the joined upstream rows."""
        if plan.is_root:
            if samples is None:
                raise ValueError(f"root feature {plan.feature!r} is resolved against samples")
            return samples
        joined = self._upstream(plan.upstreams[0])
        for up in plan.upstreams[1:]:
            joined = joined.join(
                self._upstream(up), on=list(up.on), how="left" if up.optional else "inner"
            )
        return joined

    def _upstream(self, up: UpstreamPlan) -> pl.LazyFrame:
        """One upstream's current rows, filtered, grouped when aggregated, renamed."""
        wanted = list(dict.fromkeys([*up.columns, *up.members, *up.filter_columns]))
        scanned = self._scan(up.feature, wanted)
        if scanned is None:
            versions = {up.columns[v] for v in up.versions}
            return pl.LazyFrame(
                schema={a: pl.Int64 if a in versions else pl.String for a in up.columns.values()}
            )
        if up.filter is not None:
            scanned = scanned.filter(pl.sql_expr(up.filter))
        if up.aggregated:
            return _aggregate(scanned, up)
        return scanned.select(pl.col(s).alias(a) for s, a in up.columns.items())

    def _stored(
        self, plan: ResolvePlan, filter: SampleFilter | None, by: str | None = None
    ) -> pl.LazyFrame | None:
        renames = {c.FEATURE_VERSION: STORED_VERSION}
        renames.update({c.provenance_column(f.field): stored_column(f.field) for f in plan.fields})
        renames.update({n: stored_input(n) for n in plan.change_inputs})
        wanted = list(dict.fromkeys([*plan.id_columns, *([by] if by else []), *renames]))
        # A filter may name any stored column (e.g. a partition column): then read them all.
        stored = self._scan(plan.feature, wanted if filter is None else None)
        if stored is None:
            return None
        if filter is not None:
            stored = apply_filter(stored, filter, plan.key)
        present = stored.collect_schema().names()
        # Rows written before a column existed compare as null, i.e. as changed.
        missing = [
            pl.lit(None, pl.String if n in (c.FEATURE_VERSION, by) else pl.Int64).alias(n)
            for n in wanted
            if n not in present
        ]
        stored = stored.with_columns(missing).select(wanted).rename(renames)
        return stored if by is None else stored.filter(pl.col(by).is_not_null())

    def _filter_expected(
        self,
        plan: ResolvePlan,
        inputs: pl.LazyFrame,
        filter: SampleFilter,
        stored: pl.LazyFrame | None,
    ) -> pl.LazyFrame:
        """Expected rows in the scope of ``filter``.

        A predicate is about child rows, which an expansion's expected parents lack: a parent
        is in scope when one of its stored children is, or, when it has no children yet (a new
        parent), when the predicate holds with its child id columns null.
        """
        if not plan.child_columns or isinstance(filter, HashShard):
            return apply_filter(inputs, filter, plan.key)
        key = list(plan.key)
        children = self._scan(plan.feature, list(plan.id_columns))
        schema = children.collect_schema() if children is not None else {}
        nulls = [pl.lit(None, schema.get(i, pl.String)).alias(i) for i in plan.child_columns]
        childless = inputs
        if children is not None:
            childless = inputs.join(children.select(key).unique(), on=key, how="anti")
        new = apply_filter(childless.with_columns(nulls), filter, key).drop(plan.child_columns)
        if stored is None:
            return new
        return pl.concat([inputs.join(stored.select(key).unique(), on=key, how="semi"), new])

    def _classified(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None,
        filter: SampleFilter | None,
        *,
        with_reasons: bool,
        by: str | None = None,
    ) -> pl.LazyFrame:
        """Candidates, classified. With ``by``, samples also join on that column, so one whose
        value differs between upstream and store is new under one value and orphaned under the
        other, as a filter on each value would find; null values are in no group."""
        inputs = self._inputs(plan, samples)
        stored = self._stored(plan, filter, by)
        if filter is not None:
            inputs = self._filter_expected(plan, inputs, filter, stored)
        if by is not None:
            inputs = inputs.filter(pl.col(by).is_not_null())
        if stored is None:
            return classify.all_new(plan, inputs.with_columns(classify.provenance(plan)))
        joined = inputs.with_columns(pl.lit(True).alias(EXPECTED_MARK)).join(
            stored.with_columns(pl.lit(True).alias(STORED_MARK)),
            on=list(dict.fromkeys([*plan.key, *([by] if by else [])])),
            how="full",
            coalesce=True,
        )
        candidate = pl.any_horizontal(
            pl.col(STORED_MARK).is_null(),
            pl.col(EXPECTED_MARK).is_null(),
            classify.code_changed(plan),
            *(pl.col(n).ne_missing(pl.col(stored_input(n))) for n in plan.change_inputs),
        )
        hashed = joined.filter(candidate).with_columns(classify.provenance(plan))
        return classify.classify(plan, hashed, with_reasons=with_reasons)
