"""Asset checks: a metaxy asset is up to date when none of its samples is new, stale or orphaned.

A check also reports the partitions whose latest sensor-requested run failed (``failed_runs``),
so a failure the sensor gave up retrying stays visible until it is fixed, and the samples held
back because they failed (``failed``, with a preview of their messages): above
``failed_threshold`` (a share of the feature's samples) the check fails, with
``failed_severity`` (a warning by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import polars as pl

from metaxy_core import FeatureGraph, columns
from metaxy_dagster.features import feature_graph, metaxy_features
from metaxy_dagster.metadata import asset_key
from metaxy_dagster.resource import MetaxyStoreResource
from metaxy_dagster.runs import TAG_FEATURE, TAG_PARTITION

__all__ = ["build_metaxy_checks"]

CHECK_NAME = "metaxy_up_to_date"
_RECENT_RUNS = 100


_PREVIEW = 10


def _check(
    feature: str,
    graph: FeatureGraph,
    store: MetaxyStoreResource,
    threshold: float,
    severity: dg.AssetCheckSeverity,
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key(feature),
        name=CHECK_NAME,
        description="Passes when no sample is new, stale or orphaned and at most "
        f"{threshold:.1%} of samples failed; counts stale per field.",
    )
    # No annotation on context: Dagster checks it at runtime, and postponed annotations are
    # strings it does not recognize.
    def _up_to_date(context) -> dg.AssetCheckResult:  # type: ignore[no-untyped-def]
        metadata_store = store.get_store(graph)
        with metadata_store:
            increment = metadata_store.resolve_update(feature)
            stored = metadata_store.read(feature, columns=list(graph[feature].id_columns)).height
        failed = _failed_runs(context.instance, feature)
        counts = increment.counts
        share = counts.failed / max(stored + counts.failed, 1)
        too_many = counts.failed > 0 and share > threshold
        by_field: dict[str, int] = {}
        if counts.stale:
            exploded = increment.stale.select(pl.col(columns.CHANGED_FIELDS).explode())
            by_field = dict(sorted(exploded.to_series().value_counts().iter_rows()))
        work = counts.total > 0 or counts.orphaned > 0
        notes = []
        if failed:
            runs = ", ".join(f"{p or 'the asset'} (run {r})" for p, r in failed.items())
            notes.append(f"The latest sensor run failed for: {runs}")
        if counts.failed:
            notes.append(
                f"{counts.failed} sample(s) failed ({share:.1%}; threshold {threshold:.1%}); "
                "they are left out until their inputs or code change: retry them with "
                f"`metaxy retry {feature}` or a run with retry_failed"
            )
        return dg.AssetCheckResult(
            passed=not work and not too_many,
            severity=severity if too_many and not work else dg.AssetCheckSeverity.ERROR,
            metadata={
                "new": counts.new,
                "stale": counts.stale,
                "orphaned": counts.orphaned,
                "failed": counts.failed,
                "failed_share": dg.MetadataValue.float(share),
                "failed_preview": dg.MetadataValue.json(_preview(increment.failed, feature, graph)),
                "stale_by_field": dg.MetadataValue.json(by_field),
                "failed_runs": dg.MetadataValue.json(failed),
            },
            description=". ".join(notes) + "." if notes else None,
        )

    return _up_to_date


def _preview(failed: pl.DataFrame, feature: str, graph: FeatureGraph) -> dict[str, str]:
    """Sample (its key values, joined by '/') -> its latest error, for the first few."""
    if failed.is_empty():
        return {}
    key = list(graph.expected_key(feature))
    shown = failed.head(_PREVIEW).select(
        pl.concat_str([pl.col(k).cast(pl.String) for k in key], separator="/"), "error"
    )
    return dict(shown.iter_rows())


def _failed_runs(instance: dg.DagsterInstance, feature: str) -> dict[str, str]:
    """Partition ('' when unpartitioned) -> id of its latest sensor run, where that failed."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={TAG_FEATURE: feature}), limit=_RECENT_RUNS
    )
    latest: dict[str, dg.DagsterRun] = {}
    for record in records:  # the latest first
        latest.setdefault(record.dagster_run.tags.get(TAG_PARTITION, ""), record.dagster_run)
    return {
        partition: run.run_id
        for partition, run in sorted(latest.items())
        if run.status == dg.DagsterRunStatus.FAILURE
    }


def build_metaxy_checks(
    assets: Sequence[dg.AssetsDefinition],
    *,
    store: MetaxyStoreResource,
    failed_threshold: float = 0.01,
    failed_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
) -> list[dg.AssetChecksDefinition]:
    """One "up to date" check per non-root metaxy asset among ``assets``.

    Args:
        assets: the assets to check.
        store: the store resource.
        failed_threshold: the share of a feature's samples (stored plus failed) that may have
            failed before the check fails: ``0.01`` lets 1% fail, ``0`` none.
        failed_severity: the severity of a check failed by failed samples alone (new, stale
            or orphaned samples fail it with ``ERROR``).

    Root assets are left out: whether a root is up to date depends on its sources, which only
    its own function scans.
    """
    if not 0 <= failed_threshold <= 1:
        raise ValueError(
            f"build_metaxy_checks: failed_threshold must be a share between 0 and 1, got "
            f"{failed_threshold}; e.g. 0.01 lets 1% of the samples fail."
        )
    graph = feature_graph(assets)
    return [
        _check(f, graph, store, failed_threshold, failed_severity)
        for f in metaxy_features(assets)
        if not graph[f].is_root
    ]
