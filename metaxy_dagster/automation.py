"""Declarative automation that sees fields: ``metaxy_eager(store)``.

Dagster's ``AutomationCondition.eager()`` runs an asset whenever an upstream asset is updated,
so an audio edit would run every asset downstream of ``video/raw``, faces included, on all its
samples. :class:`MetaxyHasWork` asks the store instead: it is true for the asset (partitions)
that have new, stale or orphaned samples, which after an audio edit are exactly those that read
audio. :func:`metaxy_eager` composes it with Dagster's built-in conditions.

This is an "arbitrary Python" condition (a Dagster preview feature): it is evaluated where the
code is, so the automation condition sensor must run on the code server
(``dg.AutomationConditionSensorDefinition(..., use_user_code_server=True)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from metaxy_core import MetadataStore, errors
from metaxy_dagster.features import FEATURE_KEY, graph_of, partitions_of
from metaxy_dagster.partitions import HashShardPartitions, MetaxyPartitions

if TYPE_CHECKING:
    from metaxy_dagster.resource import MetaxyStoreResource

__all__ = ["MetaxyHasWork", "metaxy_eager"]


class MetaxyHasWork(dg.AutomationCondition[dg.AssetKey]):
    """True for a metaxy asset's partitions (or the unpartitioned asset) with new, stale or
    orphaned samples in ``store``."""

    def __init__(self, store: MetaxyStoreResource) -> None:
        self._store = store

    @property
    def name(self) -> str:
        return "metaxy_has_work"

    @property
    def description(self) -> str:
        return "metaxy finds new, stale or orphaned samples"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(
        self, context: dg.AutomationContext[dg.AssetKey]
    ) -> dg.AutomationResult[dg.AssetKey]:
        node = context.asset_graph.get(context.key)
        graph = graph_of(node.metadata)
        if graph is None:
            return dg.AutomationResult(context, context.get_empty_subset())
        feature = str(node.metadata[FEATURE_KEY])
        if graph[feature].is_root:  # a root changes when its sources are scanned, not here
            return dg.AutomationResult(context, context.get_empty_subset())
        store = self._store.get_store(graph)
        partitions = partitions_of(node.metadata, node.partitions_def)
        try:
            return self._evaluate(context, store, feature, partitions)
        except errors.UpstreamFieldNotWrittenError:
            # It reads a field added to its root since the root's rows were written: it waits
            # for the root's scan (a schedule, or build_metaxy_sensor requests it).
            return dg.AutomationResult(context, context.get_empty_subset())

    def _evaluate(
        self,
        context: dg.AutomationContext[dg.AssetKey],
        store: MetadataStore,
        feature: str,
        partitions: MetaxyPartitions | None,
    ) -> dg.AutomationResult[dg.AssetKey]:
        with store:
            if partitions is None:
                counts = store.count_update(feature)
                busy = counts.total > 0 or counts.orphaned > 0
                subset = context.candidate_subset if busy else context.get_empty_subset()
                return dg.AutomationResult(context, subset)
            if isinstance(partitions, HashShardPartitions):
                by_shard = store.count_update_by_shard(feature, partitions.count)
                keys = {
                    partitions.partition_of(i)
                    for i, c in enumerate(by_shard)
                    if c.total or c.orphaned
                }
            else:
                names = partitions.partitions_def.get_partition_keys()
                by_key = store.count_update_by_column(feature, partitions.column, names)
                keys = {k for k, c in by_key.items() if c.total or c.orphaned}
        subset = context.candidate_subset.compute_intersection_with_partition_keys(keys)
        return dg.AutomationResult(context, subset)


def metaxy_eager(store: MetaxyStoreResource) -> dg.AutomationCondition[dg.AssetKey]:
    """Run a metaxy asset (partition) when metaxy finds work for it and none upstream.

    It waits while an upstream asset has work or runs (so nothing is computed twice), while it
    runs itself or was just requested, and after a failed run (until it is run again by hand,
    or by the sensor's retry policy).

    Example:
        .. code-block:: python

            store = MetaxyStoreResource(path="metaxy.duckdb")

            @metaxy_asset(key="audio/transcript", ..., automation_condition=metaxy_eager(store))
            def transcript(context, increment): ...
    """
    has_work = MetaxyHasWork(store)
    upstream_busy = dg.AutomationCondition.any_deps_match(
        MetaxyHasWork(store) | dg.AutomationCondition.in_progress()
    )
    return (
        has_work
        & ~upstream_busy
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.newly_requested()
        & ~dg.AutomationCondition.execution_failed()
    ).with_label("metaxy_eager")
