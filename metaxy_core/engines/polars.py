"""The Polars engine: a :class:`~metaxy_core.plan.ResolvePlan` as one lazy Polars query."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import narwhals as nw
import polars as pl

from metaxy_core import columns as c
from metaxy_core.engines import classify
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.hashing import polars_hash_u64
from metaxy_core.increment import Increment, IncrementCounts
from metaxy_core.plan import (
    EXPECTED_MARK,
    STORED_MARK,
    STORED_VERSION,
    ResolvePlan,
    stored_column,
    stored_input,
)

__all__ = ["PolarsEngine", "Scan", "apply_filter"]

Scan = Callable[[str, Sequence[str] | None], pl.LazyFrame | None]
"""``scan(feature, columns)``: the current rows of a feature, with those of ``columns`` that it
has (all columns when ``None``), or ``None`` when nothing was ever written for it."""


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
        """Id and passthrough columns, expected provenance and change inputs of every sample."""
        inputs = self._inputs(plan, samples)
        return inputs.with_columns(classify.provenance(plan)).select(
            *plan.id_columns, *plan.passthrough, *plan.carried
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

    # -- steps ----------------------------------------------------------------------------------

    def _inputs(self, plan: ResolvePlan, samples: pl.LazyFrame | None) -> pl.LazyFrame:
        if plan.is_root:
            if samples is None:
                raise ValueError(f"root feature {plan.feature!r} is resolved against samples")
            return samples
        frames = []
        for up in plan.upstreams:
            scanned = self._scan(up.feature, list(up.columns))
            if scanned is None:
                scanned = pl.LazyFrame(schema={col: pl.String for col in up.columns.values()})
            else:
                scanned = scanned.rename(dict(up.columns))
            frames.append(scanned)
        joined = frames[0]
        for other in frames[1:]:
            joined = joined.join(other, on=list(plan.id_columns), how="inner")
        return joined

    def _stored(self, plan: ResolvePlan, filter: SampleFilter | None) -> pl.LazyFrame | None:
        renames = {c.FEATURE_VERSION: STORED_VERSION}
        renames.update({c.provenance_column(f.field): stored_column(f.field) for f in plan.fields})
        renames.update({n: stored_input(n) for n in plan.change_inputs})
        wanted = [*plan.id_columns, *renames]
        # A filter may name any stored column (e.g. a partition column): then read them all.
        stored = self._scan(plan.feature, wanted if filter is None else None)
        if stored is None:
            return None
        if filter is not None:
            stored = apply_filter(stored, filter, plan.id_columns)
        present = stored.collect_schema().names()
        # Rows written before a column existed compare as null, i.e. as changed.
        missing = [pl.lit(None, pl.String).alias(n) for n in wanted if n not in present]
        return stored.with_columns(missing).select(wanted).rename(renames)

    def _classified(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None,
        filter: SampleFilter | None,
        *,
        with_reasons: bool,
    ) -> pl.LazyFrame:
        inputs = self._inputs(plan, samples)
        if filter is not None:
            inputs = apply_filter(inputs, filter, plan.id_columns)
        stored = self._stored(plan, filter)
        if stored is None:
            return classify.all_new(plan, inputs)
        joined = inputs.with_columns(pl.lit(True).alias(EXPECTED_MARK)).join(
            stored.with_columns(pl.lit(True).alias(STORED_MARK)),
            on=list(plan.id_columns),
            how="full",
            coalesce=True,
        )
        candidate = pl.any_horizontal(
            pl.col(STORED_MARK).is_null(),
            pl.col(EXPECTED_MARK).is_null(),
            classify.code_changed(plan),
            *(pl.col(n).ne_missing(pl.col(stored_input(n))) for n in plan.change_inputs),
        )
        return classify.classify(plan, joined.filter(candidate), with_reasons=with_reasons)
