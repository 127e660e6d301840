"""The Polars engine: a :class:`~metaxy_core.plan.ResolvePlan` as one lazy Polars query."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import narwhals as nw
import polars as pl

from metaxy_core import columns as c
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.hashing import polars_hash, polars_hash_u64
from metaxy_core.increment import Increment, IncrementCounts, StaleReason
from metaxy_core.plan import (
    EXPECTED_MARK,
    STATUS,
    STORED_MARK,
    STORED_VERSION,
    ResolvePlan,
    stored_column,
)

__all__ = ["PolarsEngine", "Scan", "apply_filter"]

Scan = Callable[[str, Sequence[str] | None], pl.LazyFrame | None]
"""``scan(feature, columns)``: the current rows of a feature (all columns when ``None``), or
``None`` when nothing was ever written for it."""


def apply_filter(frame: pl.LazyFrame, filter: SampleFilter, ids: Sequence[str]) -> pl.LazyFrame:
    """Rows of ``frame`` that ``filter`` keeps."""
    if isinstance(filter, HashShard):
        shard = polars_hash_u64([pl.col(i) for i in ids]) % filter.count
        return frame.filter(shard == filter.index)
    return nw.from_native(frame).filter(filter).to_native()


class PolarsEngine:
    """Resolves increments with lazy Polars over frames a store scans."""

    name = "polars"

    def __init__(self, scan: Scan) -> None:
        self._scan = scan

    def expected(self, plan: ResolvePlan, samples: pl.LazyFrame | None = None) -> pl.LazyFrame:
        """Id columns, passthrough columns and the expected provenance of every field."""
        if plan.is_root:
            if samples is None:
                raise ValueError(f"root feature {plan.feature!r} is resolved against samples")
            joined = samples
        else:
            joined = self._join_upstreams(plan)
        provenance = [
            polars_hash([pl.lit(f.recipe), *(pl.col(i) for i in f.inputs)]).alias(
                c.provenance_column(f.field)
            )
            for f in plan.fields
        ]
        return joined.select(*plan.id_columns, *plan.passthrough, *provenance)

    def resolve(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> Increment:
        """New, stale and orphaned samples, collected once."""
        compared = self._compare(plan, samples, filter)
        out = [*plan.id_columns, *plan.passthrough, *plan.provenance_columns]
        extra = [c.CHANGED_FIELDS, c.STALE_REASON]
        frame = compared.select(STATUS, *out, *extra).collect()
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
        """Counts of new, stale and orphaned samples; no rows leave the engine."""
        compared = self._compare(plan, samples, filter, with_reasons=False)
        counts = dict(compared.group_by(STATUS).len().collect().iter_rows())
        return IncrementCounts(
            counts.get("new", 0), counts.get("stale", 0), counts.get("orphaned", 0)
        )

    # -- steps ----------------------------------------------------------------------------------

    def _join_upstreams(self, plan: ResolvePlan) -> pl.LazyFrame:
        frames = []
        for up in plan.upstreams:
            scanned = self._scan(up.feature, list(up.columns))
            if scanned is None:
                schema = {col: pl.String for col in up.columns.values()}
                scanned = pl.LazyFrame(schema=schema)
            else:
                scanned = scanned.rename(dict(up.columns))
            frames.append(scanned)
        joined = frames[0]
        for other in frames[1:]:
            joined = joined.join(other, on=list(plan.id_columns), how="inner")
        return joined

    def _stored(self, plan: ResolvePlan, filter: SampleFilter | None) -> pl.LazyFrame | None:
        fields = [f.field for f in plan.fields]
        wanted = [*plan.id_columns, c.FEATURE_VERSION, *map(c.provenance_column, fields)]
        # A filter may name any stored column (e.g. a partition column): then read them all.
        stored = self._scan(plan.feature, wanted if filter is None else None)
        if stored is None:
            return None
        if filter is not None:
            stored = apply_filter(stored, filter, plan.id_columns)
        renames = {c.provenance_column(f): stored_column(f) for f in fields}
        renames[c.FEATURE_VERSION] = STORED_VERSION
        return stored.select(wanted).rename(renames)

    def _compare(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None,
        filter: SampleFilter | None,
        *,
        with_reasons: bool = True,
    ) -> pl.LazyFrame:
        expected = self.expected(plan, samples)
        stored = self._stored(plan, filter)
        if filter is not None:
            expected = apply_filter(expected, filter, plan.id_columns)
        ids = list(plan.id_columns)
        if stored is None:
            schema = expected.collect_schema()
            stored = pl.LazyFrame(
                schema={
                    **{i: schema[i] for i in ids},
                    STORED_VERSION: pl.String,
                    **{stored_column(f.field): pl.String for f in plan.fields},
                }
            )
        joined = expected.with_columns(pl.lit(True).alias(EXPECTED_MARK)).join(
            stored.with_columns(pl.lit(True).alias(STORED_MARK)),
            on=ids,
            how="full",
            coalesce=True,
        )
        changed = {
            f.field: pl.col(c.provenance_column(f.field)).ne_missing(pl.col(stored_column(f.field)))
            for f in plan.fields
        }
        status = (
            pl.when(pl.col(STORED_MARK).is_null())
            .then(pl.lit("new"))
            .when(pl.col(EXPECTED_MARK).is_null())
            .then(pl.lit("orphaned"))
            .when(pl.any_horizontal(list(changed.values())))
            .then(pl.lit("stale"))
        )
        compared = joined.with_columns(status.alias(STATUS)).filter(pl.col(STATUS).is_not_null())
        if not with_reasons:
            return compared
        code = {
            f.field: pl.col(STORED_VERSION).is_in(list(f.code_changed_in))
            if f.code_changed_in
            else pl.lit(False)
            for f in plan.fields
        }
        has_code = pl.any_horizontal([changed[f] & code[f] for f in changed])
        has_input = pl.any_horizontal([changed[f] & ~code[f] for f in changed])
        stale = pl.col(STATUS) == "stale"
        return compared.with_columns(
            pl.when(stale)
            .then(pl.concat_list([pl.when(v).then(pl.lit(f)) for f, v in changed.items()]))
            .list.drop_nulls()
            .alias(c.CHANGED_FIELDS),
            pl.when(stale)
            .then(
                pl.concat_str(
                    [
                        pl.when(has_code).then(pl.lit(StaleReason.CODE_VERSION)),
                        pl.when(has_input).then(pl.lit(StaleReason.INPUT_DATA)),
                    ],
                    separator=",",
                    ignore_nulls=True,
                )
            )
            .alias(c.STALE_REASON),
        )
