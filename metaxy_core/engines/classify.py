"""The step both engines share: hash the candidates and classify them.

An engine joins the expected inputs with the stored rows and keeps the candidates (see
:mod:`metaxy_core.plan`) wherever the data lives; the candidates are the only rows that leave
it. Here they are hashed (:func:`metaxy_core.hashing.polars_hash`: ``polars-hash`` over the
canonical strings, built from the 64-bit integer inputs) and marked new, stale or orphaned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from metaxy_core import columns as c
from metaxy_core.hashing import hash_stream, int64_series, polars_hash
from metaxy_core.increment import Increment, IncrementCounts, StaleReason
from metaxy_core.plan import (
    EXPECTED_MARK,
    STATUS,
    STORED_MARK,
    STORED_VERSION,
    ResolvePlan,
)
from metaxy_core.plan import stored_column as stored

__all__ = [
    "all_new",
    "classify",
    "count",
    "count_by",
    "hash_arrow",
    "new_only",
    "provenance",
    "split",
]

_REASONS = [c.CHANGED_FIELDS, c.STALE_REASON]


def provenance(plan: ResolvePlan) -> list[pl.Expr]:
    """The expected provenance of every field: the hash of its recipe and inputs."""
    return [
        polars_hash([f.recipe, *map(pl.col, f.inputs)]).alias(c.provenance_column(f.field))
        for f in plan.fields
    ]


class _NotInt64(Exception):
    """A fetched batch has an input that is not a 64-bit integer without nulls."""


def hash_arrow(plan: ResolvePlan, rows: pa.Table | pa.RecordBatchReader) -> pl.LazyFrame:
    """Rows an engine fetched as Arrow, in Polars with every field's expected provenance.

    The inputs are 64-bit integers: without nulls (the usual case), every field is hashed from
    their 64-bit buffers (:func:`metaxy_core.hashing.hash_stream`), each input rendered once
    whatever number of fields read it; the canonical strings exist only inside that pass. From
    a reader, each record batch is hashed while the engine produces the next. Otherwise (nulls,
    other types) the fields are hashed by :func:`provenance`.
    """
    names = list(dict.fromkeys(i for f in plan.fields for i in f.inputs))
    batches: list[pa.RecordBatch] = []
    source = iter(rows.to_batches() if isinstance(rows, pa.Table) else rows)

    def pieces() -> Iterator[tuple[dict[str, np.ndarray], int]]:
        for batch in source:
            batches.append(batch)
            columns = [batch.column(n) for n in names]
            if any(col.type != pa.int64() or col.null_count for col in columns):
                raise _NotInt64
            # The values buffer as it is (pyarrow's ``to_numpy`` may import pandas, 0.3 s).
            yield (
                {
                    n: np.frombuffer(col.buffers()[1], np.int64, len(col), col.offset * 8)
                    for n, col in zip(names, columns, strict=True)
                },
                batch.num_rows,
            )

    try:
        hashed = hash_stream([((f.recipe,), f.inputs) for f in plan.fields], pieces())
    except _NotInt64:
        hashed = None
        batches.extend(source)
    frame = pl.from_arrow(pa.Table.from_batches(batches, rows.schema), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    if hashed is None or not frame.height:
        return frame.lazy().with_columns(provenance(plan))
    return frame.with_columns(
        int64_series(c.provenance_column(f.field), h)
        for f, h in zip(plan.fields, hashed, strict=True)
    ).lazy()


def all_new(plan: ResolvePlan, hashed: pl.LazyFrame) -> pl.LazyFrame:
    """Classification when nothing is stored yet: every expected sample (with its provenance,
    see :func:`provenance`) is new."""
    return hashed.with_columns(
        *(pl.lit(None, pl.String).alias(i) for i in plan.child_columns),
        pl.lit("new").alias(STATUS),
        pl.lit(None, pl.List(pl.String)).alias(c.CHANGED_FIELDS),
        pl.lit(None, pl.String).alias(c.STALE_REASON),
    )


def new_only(plan: ResolvePlan, hashed: pl.LazyFrame) -> Increment:
    """The increment when nothing is stored yet: every expected sample is new, nothing else.

    The same rows as ``split(plan, all_new(plan, hashed))`` without building and splitting
    status columns over every sample.
    """
    out = [*plan.id_columns, *plan.passthrough, *plan.carried]
    new = all_new(plan, hashed).select(out).collect()
    stale = new.clear().with_columns(
        pl.lit(None, pl.List(pl.String)).alias(c.CHANGED_FIELDS),
        pl.lit(None, pl.String).alias(c.STALE_REASON),
    )
    return Increment(
        feature=plan.feature,
        new=new,
        stale=stale,
        orphaned=new.clear().select(plan.id_columns),
    )


def _in_versions(versions: tuple[str, ...]) -> pl.Expr:
    return pl.col(STORED_VERSION).is_in(list(versions)) if versions else pl.lit(False)


def classify(plan: ResolvePlan, hashed: pl.LazyFrame, *, with_reasons: bool) -> pl.LazyFrame:
    """Candidates (with their expected provenance, see :func:`provenance`) with their status
    and (``with_reasons``) the changed fields and why."""
    changed = {
        f.field: pl.col(c.provenance_column(f.field)).ne_missing(pl.col(stored(f.field)))
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
    compared = hashed.with_columns(status.alias(STATUS)).filter(pl.col(STATUS).is_not_null())
    if not with_reasons:
        return compared
    code = {f.field: _in_versions(f.code_changed_in) for f in plan.fields}
    has_code = pl.any_horizontal([changed[f] & code[f] for f in changed])
    has_input = pl.any_horizontal([changed[f] & ~code[f] for f in changed])
    stale = pl.col(STATUS) == "stale"
    names = [pl.when(v).then(pl.lit(f)) for f, v in changed.items()]
    reasons = [
        pl.when(has_code).then(pl.lit(StaleReason.CODE_VERSION)),
        pl.when(has_input).then(pl.lit(StaleReason.INPUT_DATA)),
    ]
    return compared.with_columns(
        pl.when(stale).then(pl.concat_list(names)).list.drop_nulls().alias(c.CHANGED_FIELDS),
        pl.when(stale)
        .then(pl.concat_str(reasons, separator=",", ignore_nulls=True))
        .alias(c.STALE_REASON),
    )


def split(plan: ResolvePlan, classified: pl.LazyFrame) -> Increment:
    """Collect once and split into new, stale and orphaned frames."""
    out = [*plan.id_columns, *plan.passthrough, *plan.carried]
    frame = classified.select(STATUS, *out, *_REASONS).collect()
    statuses = frame.get_column(STATUS).unique()
    if statuses.len() == 1:  # e.g. all new: no need to copy the rows into parts
        parts = {statuses[0]: frame}
    else:
        parts = {k[0]: v for k, v in frame.partition_by(STATUS, as_dict=True).items()}
    empty = frame.clear()
    return Increment(
        feature=plan.feature,
        new=parts.get("new", empty).select(out),
        stale=parts.get("stale", empty).select(*out, *_REASONS),
        orphaned=parts.get("orphaned", empty).select(plan.id_columns),
    )


def count(classified: pl.LazyFrame) -> IncrementCounts:
    """Counts of each status."""
    counts = dict(classified.group_by(STATUS).len().collect().iter_rows())
    return IncrementCounts(counts.get("new", 0), counts.get("stale", 0), counts.get("orphaned", 0))


def count_by(classified: pl.LazyFrame, column: str) -> dict[Any, IncrementCounts]:
    """Counts of each status per value of ``column`` (values with no candidate are absent)."""
    rows = classified.group_by(column, STATUS).len().collect().iter_rows()
    found: dict[Any, dict[str, int]] = {}
    for value, status, n in rows:
        found.setdefault(value, {})[status] = n
    return {
        value: IncrementCounts(by.get("new", 0), by.get("stale", 0), by.get("orphaned", 0))
        for value, by in found.items()
    }


def code_changed(plan: ResolvePlan) -> pl.Expr:
    """True for stored rows written under a recipe that differs from the current one."""
    return _in_versions(plan.code_changed_in)
