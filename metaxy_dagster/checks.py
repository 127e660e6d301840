"""Asset checks: a metaxy asset is up to date when none of its samples is new, stale or orphaned.

A check also reports the partitions whose latest sensor-requested run failed (``failed_runs``),
so a failure the sensor gave up retrying stays visible until it is fixed.
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


def _check(
    feature: str, graph: FeatureGraph, store: MetaxyStoreResource
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key(feature),
        name=CHECK_NAME,
        description="Passes when no sample is new, stale or orphaned; counts stale per field.",
    )
    # No annotation on context: Dagster checks it at runtime, and postponed annotations are
    # strings it does not recognize.
    def _up_to_date(context) -> dg.AssetCheckResult:  # type: ignore[no-untyped-def]
        increment = store.get_store(graph).resolve_update(feature)
        failed = _failed_runs(context.instance, feature)
        counts = increment.counts
        by_field: dict[str, int] = {}
        if counts.stale:
            exploded = increment.stale.select(pl.col(columns.CHANGED_FIELDS).explode())
            by_field = dict(sorted(exploded.to_series().value_counts().iter_rows()))
        return dg.AssetCheckResult(
            passed=counts.total == 0 and counts.orphaned == 0,
            metadata={
                "new": counts.new,
                "stale": counts.stale,
                "orphaned": counts.orphaned,
                "stale_by_field": dg.MetadataValue.json(by_field),
                "failed_runs": dg.MetadataValue.json(failed),
            },
            description=(
                "The latest sensor run failed for: "
                + ", ".join(f"{p or 'the asset'} (run {r})" for p, r in failed.items())
                if failed
                else None
            ),
        )

    return _up_to_date


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
    assets: Sequence[dg.AssetsDefinition], *, store: MetaxyStoreResource
) -> list[dg.AssetChecksDefinition]:
    """One "up to date" check per non-root metaxy asset among ``assets``.

    Root assets are left out: whether a root is up to date depends on its sources, which only
    its own function scans.
    """
    graph = feature_graph(assets)
    return [_check(f, graph, store) for f in metaxy_features(assets) if not graph[f].is_root]
