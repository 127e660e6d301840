"""Per-sample failures: samples a step could not compute, recorded so they are not retried
blindly.

A write may name, beside the rows it computed, the samples that failed with an error message
(``store.write(feature, rows, failed=frame)``). Each failed sample is recorded with the
provenance of every field it was attempted under, in the store's own records (kind
``failed:<feature>``, one record per write, append-only like everything else), so every store
that keeps records keeps failures without code of its own.

An increment then **holds back** a new or stale sample whose latest failure was under its
current provenance: it is not new work until its inputs or code change (its provenance changes)
or the user asks for a retry (``retry_failed=True``). A :class:`SampleRetryPolicy` lets a
sample come back by itself a bounded number of times, after a growing wait.

A held-back sample of an upstream feature has no current row (or keeps its previous one), so
downstream features see it as missing upstream, not as new work.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from metaxy_core import columns as c
from metaxy_core.definitions import FeatureSpec
from metaxy_core.engines.polars import apply_filter
from metaxy_core.errors import (
    ColumnTypeError,
    DuplicateIdError,
    MissingColumnError,
    UnknownSampleError,
)
from metaxy_core.filters import SampleFilter
from metaxy_core.graph import FeatureGraph
from metaxy_core.increment import Increment, IncrementCounts
from metaxy_core.plan import ResolvePlan
from metaxy_core.store.rows import check_key_types, check_provenance, prepare_rows, validate_ids

if TYPE_CHECKING:
    from metaxy_core.store.base import MetadataStore

__all__ = [
    "ATTEMPTS",
    "ERROR",
    "FAILED_AT",
    "STATUS",
    "SampleRetryPolicy",
    "check_not_both",
    "failure_rows",
    "forget_failures",
    "held_back",
    "held_counts",
    "hold_back",
    "load_failures",
    "read_failures",
    "record_failures",
    "record_forget",
    "validate_failed",
]

ERROR = "error"
"""Column of a failed-samples frame holding the error message of each sample."""
STATUS = "status"
"""Column of :attr:`Increment.failed`: ``new`` (never computed) or ``stale`` (its stored row is
from earlier inputs or code)."""
ATTEMPTS = "attempts"
"""Column of :attr:`Increment.failed`: failures recorded under the sample's current provenance."""
FAILED_AT = "failed_at"
"""Column of :attr:`Increment.failed`: when its latest failure was recorded (UTC)."""
_RUN_ID = "run_id"
_KIND = "failed:"


@dataclass(frozen=True)
class SampleRetryPolicy:
    """How often a failed sample comes back by itself while its provenance is unchanged.

    After its ``n``-th failure under one provenance, a sample is retried if ``n <=
    max_retries``, once ``backoff * 2 ** (n - 1)`` has passed since that failure. The default
    never retries by itself: a failed sample waits for a change of inputs or code, or for
    ``retry_failed=True``.

    >>> SampleRetryPolicy(max_retries=2, backoff=timedelta(minutes=5))
    SampleRetryPolicy(max_retries=2, backoff=datetime.timedelta(seconds=300))
    """

    max_retries: int = 0
    backoff: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff < timedelta(0):
            raise ValueError(
                f"SampleRetryPolicy needs max_retries >= 0 and a backoff >= 0, got "
                f"max_retries={self.max_retries}, backoff={self.backoff}."
            )


def _kind(feature: str) -> str:
    return _KIND + feature


def validate_failed(spec: FeatureSpec, key: Sequence[str], failed: pl.DataFrame) -> None:
    """A frame of failed samples of ``spec``: their ``key`` columns (the id columns; the parent
    ids of an expansion) holding valid ids, and an ``error`` column of messages."""
    if ERROR not in failed.columns:
        raise MissingColumnError(
            f"failed samples of {spec.key!r}: column {ERROR!r} (the error message of each "
            f"sample) is missing; the frame has columns: {', '.join(failed.columns) or 'none'}. "
            f"Add {ERROR!r}, e.g. the text of the exception each sample raised."
        )
    if failed.schema[ERROR] not in (pl.String, pl.Null):
        raise ColumnTypeError(
            f"failed samples of {spec.key!r}: column {ERROR!r} has type "
            f"{failed.schema[ERROR]}; it holds messages. Cast it to a string."
        )
    validate_ids(spec.model_copy(update={"id_columns": tuple(key)}), failed)


def failure_rows(
    store: MetadataStore, session: Any, spec: FeatureSpec, failed: pl.DataFrame, run_id: str | None
) -> pl.DataFrame:
    """The failures of a write to record: key columns, the provenance of every field the
    samples were attempted under, the error message and the run.

    The provenance comes from the frame's ``metaxy_provenance__<field>`` columns (as an
    increment gives them) or, when absent, from current upstream (for a root feature: from its
    ``metaxy_data_version__<field>`` columns).
    """
    key = list(store.graph.expected_key(spec.key))
    prov = [c.provenance_column(f) for f in sorted(spec.field_keys)]
    validate_failed(spec, key, failed)
    errors = failed.select(*key, pl.col(ERROR).cast(pl.String).fill_null(""))
    if set(prov) <= set(failed.columns):
        check_provenance(spec, failed)
        attempted = failed.select(*key, *prov)
    elif spec.is_root:
        attempted = prepare_rows(
            store.graph, spec, failed.drop(ERROR), run_id=run_id, expected=None
        ).select(*key, *prov)
    else:
        expected = store._expected_for(
            session, spec.key, failed.select(key), f"failed samples of {spec.key!r}"
        )
        attempted = failed.select(key).join(expected, on=key, how="left").select(*key, *prov)
        unknown = attempted.filter(pl.col(prov[0]).is_null()).select(key)
        if unknown.height:
            raise UnknownSampleError(
                f"failed samples of {spec.key!r}: {unknown.height} sample(s) are not produced "
                f"by its upstream, e.g. {unknown.head(3).rows(named=True)}. Report only "
                "samples of the increment as failed."
            )
    return attempted.join(errors, on=key, how="left").with_columns(
        pl.lit(run_id, pl.String).alias(_RUN_ID)
    )


def record_failures(store: MetadataStore, session: Any, feature: str, rows: pl.DataFrame) -> None:
    """Append one record holding ``rows`` (see :func:`failure_rows`); none when empty."""
    if rows.is_empty():
        return
    buffer = io.BytesIO()
    rows.write_ipc(buffer, compression="zstd")  # keeps the id columns' exact types
    body = {"rows": rows.height, "ipc": base64.b64encode(buffer.getvalue()).decode("ascii")}
    store._record(session, _kind(feature), feature, json.dumps(body, sort_keys=True))


def record_forget(store: MetadataStore, session: Any, feature: str) -> None:
    """Append a record after which earlier failures of ``feature`` hold nothing back."""
    store._record(session, _kind(feature), feature, json.dumps({"forget": True}))


def read_failures(store: MetadataStore, feature: str) -> pl.DataFrame:
    """See :meth:`MetadataStore.read_failures`."""
    with store._session() as session:
        found = load_failures(store, session, feature)
    if found is None:
        return pl.DataFrame(schema={k: pl.String for k in store.graph.expected_key(feature)})
    return found.drop("_seq")


def forget_failures(store: MetadataStore, feature: str) -> int:
    """See :meth:`MetadataStore.forget_failures`."""
    key = list(store.graph.expected_key(feature))
    with store._write_session() as session:
        found = load_failures(store, session, feature)
        record_forget(store, session, feature)
    return 0 if found is None else found.select(key).n_unique()


def load_failures(store: MetadataStore, session: Any, feature: str) -> pl.DataFrame | None:
    """Every failure recorded for ``feature`` since it was last forgotten, oldest first, with
    ``failed_at``; ``None`` when there is none."""
    records = store._records(session, _kind(feature))
    bodies = [json.loads(r.body) for r in records]
    forgotten = [i for i, body in enumerate(bodies) if body.get("forget")]
    start = forgotten[-1] + 1 if forgotten else 0
    if start == len(records):
        return None
    frames = []
    for record, body in zip(records[start:], bodies[start:], strict=True):
        ipc = base64.b64decode(body["ipc"])
        frames.append(
            pl.read_ipc(io.BytesIO(ipc)).with_columns(
                pl.lit(record.recorded_at, pl.Datetime("us", "UTC")).alias(FAILED_AT),
                pl.lit(record.seq, pl.Int64).alias("_seq"),
            )
        )
    return pl.concat(frames, how="diagonal_relaxed")


def hold_back(
    increment: Increment,
    failures: pl.DataFrame | None,
    key: list[str],
    fields: list[str],
    policy: SampleRetryPolicy | None = None,
    now: datetime | None = None,
) -> Increment:
    """``increment`` without the samples whose failures under their current provenance are
    not due for a retry by ``policy``; those go to :attr:`Increment.failed`."""
    if failures is None or failures.is_empty():
        return increment
    policy = policy or SampleRetryPolicy()
    now = now or datetime.now(timezone.utc)
    prov = [c.provenance_column(f) for f in sorted(fields)]
    # A field added since a failure was recorded: that failure has no provenance for it, so it
    # matches no sample (the feature's definition changed; its samples are new work).
    failures = failures.with_columns(
        pl.lit(None, pl.Int64).alias(p) for p in prov if p not in failures.columns
    )
    match = [*key, *prov]
    summary = (
        failures.sort("_seq")
        .group_by(match, maintain_order=True)
        .agg(
            pl.len().alias(ATTEMPTS),
            pl.col(FAILED_AT).last(),
            pl.col(ERROR).last(),
            pl.col(_RUN_ID).last(),
        )
    )
    candidates = pl.concat(
        [
            increment.new.select(*key, *prov).with_columns(pl.lit("new").alias(STATUS)),
            increment.stale.select(*key, *prov).with_columns(pl.lit("stale").alias(STATUS)),
        ]
    )
    matched = candidates.join(summary, on=match, how="inner", nulls_equal=True)
    wait = pl.duration(microseconds=policy.backoff // timedelta(microseconds=1)) * (
        pl.lit(2, pl.Int64).pow(pl.col(ATTEMPTS) - 1)
    )
    due = (pl.col(ATTEMPTS) <= policy.max_retries) & (pl.col(FAILED_AT) + wait <= pl.lit(now))
    held = (
        matched.filter(~due)
        .select(*key, STATUS, ERROR, ATTEMPTS, FAILED_AT, _RUN_ID)
        .unique(subset=key, keep="first", maintain_order=True)  # an expansion's children
    )
    if held.is_empty():
        return increment
    return Increment(
        feature=increment.feature,
        new=increment.new.join(held.select(key), on=key, how="anti"),
        stale=increment.stale.join(held.select(key), on=key, how="anti"),
        orphaned=increment.orphaned,
        failed=held,
    )


def held_back(
    graph: FeatureGraph,
    increment: Increment,
    failures: pl.DataFrame | None,
    retry: SampleRetryPolicy | None,
) -> Increment:
    """:func:`hold_back` with the key and fields of the increment's feature in ``graph``."""
    feature = increment.feature
    key = list(graph.expected_key(feature))
    return hold_back(increment, failures, key, list(graph[feature].field_keys), retry)


def held_counts(
    store: MetadataStore,
    session: Any,
    plan: ResolvePlan,
    samples: pl.LazyFrame | None,
    counts: dict[Any, IncrementCounts],
    filters: Mapping[Any, SampleFilter],
    retry: SampleRetryPolicy | None,
    on_key: bool = True,
) -> dict[Any, IncrementCounts]:
    """``counts`` of each scope minus its held-back samples, where some sample of the feature
    failed. Those of the whole increment are found once and split by ``filters`` when these
    read key columns only (``on_key``), the only columns failures keep; otherwise each scope
    is resolved apart."""
    failures = load_failures(store, session, plan.feature)
    if failures is None:
        return counts
    if not on_key:
        engine = store._engine(session)
        return {
            scope: held_back(
                store.graph, engine.resolve(plan, samples, filters[scope]), failures, retry
            ).counts
            for scope in counts
        }
    increment = store._engine(session).resolve(plan, samples, None)
    failed = held_back(store.graph, increment, failures, retry).failed
    if failed.is_empty():
        return counts
    key = store.graph.expected_key(plan.feature)
    out = {}
    for scope, known in counts.items():
        held = apply_filter(failed.lazy(), filters[scope], key).collect()
        new = held.filter(pl.col(STATUS) == "new").height
        stale = held.height - new
        out[scope] = IncrementCounts(
            known.new - new, known.stale - stale, known.orphaned, held.height
        )
    return out


def check_not_both(
    graph: FeatureGraph, spec: FeatureSpec, data: pl.DataFrame, failed: pl.DataFrame
) -> None:
    """Refuse a write that reports a sample both as a row and as failed."""
    key = list(graph.expected_key(spec.key))
    if data.is_empty():
        return
    check_key_types(f"failed samples of {spec.key!r}", failed, data.select(key), "the rows written")
    both = data.select(key).join(failed.select(key), on=key, how="semi").unique()
    if both.height:
        raise DuplicateIdError(
            f"write of {spec.key!r}: {both.height} sample(s) are both written and failed, "
            f"e.g. {both.head(3).rows(named=True)}. Report a sample either as a row or "
            "as failed, not both."
        )
