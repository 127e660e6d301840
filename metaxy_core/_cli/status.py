"""``metaxy status`` and ``metaxy history``: what the store holds, per feature.

Status asks the store for each feature's increment, as a Dagster run would: new, stale (by
field, with the reason and what the field reads) and orphaned samples, and the failed samples
it holds back (with their latest messages). A root feature's samples
come from outside (a scan of the data); the store does not know them, so a root is compared
with its own stored data versions: that finds code-version changes of its fields, never new
data (run the root's asset to scan).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import polars as pl
from rich.table import Table

from metaxy_core import columns as c
from metaxy_core.graph import FeatureGraph
from metaxy_core.increment import Increment
from metaxy_core.store.base import MetadataStore

from .views import reads_text, short

__all__ = [
    "FeatureStatus",
    "StaleField",
    "feature_status",
    "history_table",
    "root_samples",
    "status_table",
    "write_history",
]


@dataclass(frozen=True)
class StaleField:
    """Stale samples of one field, for one reason."""

    field: str
    reason: str
    samples: int
    reads: str


@dataclass(frozen=True)
class FeatureStatus:
    """What one feature must compute, as the store sees it now."""

    feature: str
    stored: int
    new: int
    stale: int
    orphaned: int
    stale_fields: list[StaleField] = field(default_factory=list)
    note: str = ""
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    """Some failed samples (their key values joined by '/') -> their latest error."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def root_samples(store: MetadataStore, feature: str) -> pl.DataFrame | None:
    """A root feature's stored samples with their data versions, as samples to compare with;
    ``None`` if it was never written."""
    spec = store.graph[feature]
    versions = [c.data_version_column(f) for f in spec.field_keys]
    stored = store.read(feature, columns=[*spec.id_columns, *versions])
    return stored if set(versions) <= set(stored.columns) else None


def increment_of(store: MetadataStore, feature: str) -> tuple[Increment | None, str]:
    """The feature's increment (``None`` for a root never written) and a note on how it was
    computed."""
    if not store.graph[feature].is_root:
        return store.resolve_update(feature), ""
    samples = root_samples(store, feature)
    if samples is None:
        return None, "root, never written: run its asset to scan the samples"
    note = "root: checked against its stored data versions"
    return store.resolve_update(feature, samples=samples), note


def stale_fields(graph: FeatureGraph, feature: str, stale: pl.DataFrame) -> list[StaleField]:
    """Stale samples per (field, reason), fields in declaration order."""
    if stale.is_empty():
        return []
    counted = (
        stale.select(c.CHANGED_FIELDS, c.STALE_REASON)
        .explode(c.CHANGED_FIELDS)
        .group_by(c.CHANGED_FIELDS, c.STALE_REASON)
        .len()
    )
    order = {f: i for i, f in enumerate(graph[feature].field_keys)}
    rows = sorted(counted.iter_rows(), key=lambda r: (order[r[0]], r[1]))
    return [
        StaleField(name, reason, int(n), reads_text(graph, feature, name))
        for name, reason, n in rows
    ]


def feature_status(store: MetadataStore, feature: str) -> FeatureStatus:
    """New, stale (by field) and orphaned samples of ``feature``."""
    stored = store.read(feature, columns=list(store.graph[feature].id_columns)).height
    increment, note = increment_of(store, feature)
    if increment is None:
        return FeatureStatus(feature, stored, 0, 0, 0, note=note)
    counts = increment.counts
    by_field = stale_fields(store.graph, feature, increment.stale)
    key = list(store.graph.expected_key(feature))
    shown = increment.failed.head(_FAILURES_SHOWN)
    failures = dict(
        shown.select(
            pl.concat_str([pl.col(k).cast(pl.String) for k in key], separator="/"), "error"
        ).iter_rows()
        if shown.height
        else []
    )
    return FeatureStatus(
        feature, stored, counts.new, counts.stale, counts.orphaned, by_field, note,
        counts.failed, failures,
    )  # fmt: skip


_FAILURES_SHOWN = 3


def statuses(
    store: MetadataStore,
    features: Iterable[str],
    counting: Callable[[str], None] = lambda _: None,
    counted: Callable[[str], None] = lambda _: None,
) -> list[FeatureStatus]:
    """The status of each feature; ``counting`` and ``counted`` are called before and after
    each one (a progress bar)."""
    found = []
    with store:  # one connection for all of them
        for feature in features:
            counting(feature)
            found.append(feature_status(store, feature))
            counted(feature)
    return found


def status_table(found: list[FeatureStatus]) -> Table:
    """The statuses as a table; its ``failed`` column appears when some samples failed."""
    table = Table(title="metadata status")
    failures = any(s.failed for s in found)
    for name, justify in [
        ("feature", "left"),
        ("stored", "right"),
        ("new", "right"),
        ("stale", "right"),
        ("orphaned", "right"),
        *([("failed", "right")] if failures else []),
        ("stale fields (reason) <- what they read", "left"),
    ]:
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for s in found:
        details = [f"{f.field}: {f.samples} ({f.reason}) <- {f.reads}" for f in s.stale_fields]
        if s.note:
            details.append(s.note)
        details += [f"failed {sample}: {error}" for sample, error in s.failures.items()]
        if s.failed > len(s.failures):
            details.append(f"... {s.failed - len(s.failures)} more failed (metaxy retry)")
        table.add_row(
            s.feature,
            str(s.stored),
            str(s.new),
            str(s.stale),
            str(s.orphaned),
            *([str(s.failed)] if failures else []),
            "\n".join(details),
        )
    return table


def write_history(store: MetadataStore, feature: str) -> pl.DataFrame:
    """One row per write of ``feature``, oldest first: write sequence, time, run id, rows
    written (or deleted) and the feature version written."""
    history = store.read(
        feature,
        history=True,
        columns=[c.WRITE_SEQ, c.WRITTEN_AT, c.RUN_ID, c.DELETED, c.FEATURE_VERSION],
    )
    if c.WRITE_SEQ not in history.columns:
        return pl.DataFrame(
            schema={
                "write_seq": pl.Int64,
                "written_at": pl.Datetime("us", "UTC"),
                "run_id": pl.String,
                "rows": pl.UInt32,
                "deleted": pl.Boolean,
                "feature_version": pl.String,
            }
        )
    return (
        history.group_by(c.WRITE_SEQ)
        .agg(
            pl.col(c.WRITTEN_AT).min().alias("written_at"),
            pl.col(c.RUN_ID).first().alias("run_id"),
            pl.len().alias("rows"),
            pl.col(c.DELETED).all().alias("deleted"),
            pl.col(c.FEATURE_VERSION).first().alias("feature_version"),
        )
        .rename({c.WRITE_SEQ: "write_seq"})
        .sort("write_seq")
    )


def history_table(feature: str, writes: pl.DataFrame) -> Table:
    table = Table(title=f"writes of {feature}")
    for name in ("seq", "written at (UTC)", "run id", "rows", "kind", "version"):
        table.add_column(name, justify="right" if name in ("seq", "rows") else "left")
    for seq, at, run_id, rows, deleted, version in writes.iter_rows():
        table.add_row(
            str(seq),
            at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-",
            run_id or "-",
            str(rows),
            "delete" if deleted else "write",
            short(version or ""),
        )
    return table
