"""Asset checks: a metaxy asset is up to date when none of its samples is new, stale or orphaned."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import polars as pl

from metaxy_core import FeatureGraph, columns
from metaxy_dagster.features import feature_graph, metaxy_features
from metaxy_dagster.metadata import asset_key
from metaxy_dagster.resource import MetaxyStoreResource

__all__ = ["build_metaxy_checks"]

CHECK_NAME = "metaxy_up_to_date"


def _check(
    feature: str, graph: FeatureGraph, store: MetaxyStoreResource
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key(feature),
        name=CHECK_NAME,
        description="Passes when no sample is new, stale or orphaned; counts stale per field.",
    )
    def _up_to_date() -> dg.AssetCheckResult:
        increment = store.get_store(graph).resolve_update(feature)
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
            },
        )

    return _up_to_date


def build_metaxy_checks(
    assets: Sequence[dg.AssetsDefinition], *, store: MetaxyStoreResource
) -> list[dg.AssetChecksDefinition]:
    """One "up to date" check per non-root metaxy asset among ``assets``.

    Root assets are left out: whether a root is up to date depends on its sources, which only
    its own function scans.
    """
    graph = feature_graph(assets)
    return [_check(f, graph, store) for f in metaxy_features(assets) if not graph[f].is_root]
