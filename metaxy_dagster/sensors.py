"""The field-aware sensor: runs exactly the assets, and partitions, whose dependent fields changed.

Dagster's own staleness is per asset: any upstream materialization makes every downstream asset
stale. This sensor asks the store instead, per sample and per field, so new audio for some videos
requests runs of the assets that read audio, for the partitions holding those videos, and of
nothing that reads only frames.

Each tick:

1. reads the store's latest write sequence; if it equals the cursor, nothing was written since
   the last tick and it skips at once;
2. walks the features in topological order; a feature waits while any of its upstream features
   has work (so nothing is computed twice); otherwise it counts its new, stale and orphaned
   samples, per partition (all partitions of a feature in one pass over its samples);
3. requests one run per asset and partition with work. The run key holds the feature, the
   partition and the latest writes of the feature and of its upstream features: repeated ticks
   request the same key (Dagster runs it once) until one of those features is written again,
   whatever else was written meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import dagster as dg

from metaxy_core import IncrementCounts, MetadataStore
from metaxy_dagster.features import feature_graph, metaxy_features, metaxy_partitions
from metaxy_dagster.metadata import asset_key
from metaxy_dagster.partitions import HashShardPartitions, MetaxyPartitions
from metaxy_dagster.resource import MetaxyStoreResource

__all__ = ["build_metaxy_sensor"]

Partitioning = Mapping[str, MetaxyPartitions | None]


def _partition_keys(
    partitions: MetaxyPartitions, instance: dg.DagsterInstance | None
) -> Sequence[str]:
    return partitions.partitions_def.get_partition_keys(dynamic_partitions_store=instance)


def _partition_counts(
    store: MetadataStore,
    feature: str,
    partitioning: Partitioning,
    instance: dg.DagsterInstance | None,
) -> Iterator[tuple[str | None, IncrementCounts]]:
    """(partition, counts) of every partition of ``feature`` (one ``None`` if unpartitioned).

    Every partition is counted in one pass over the samples (column partitions of an
    expansion, or of a column that is not a string, one partition at a time)."""
    partitions = partitioning.get(feature)
    if partitions is None:
        yield None, store.count_update(feature)
    elif isinstance(partitions, HashShardPartitions):
        counts = store.count_update_by_shard(feature, partitions.count)
        for index, shard_counts in enumerate(counts):
            yield partitions.partition_of(index), shard_counts
    else:
        keys = _partition_keys(partitions, instance)
        yield from store.count_update_by_column(feature, partitions.column, keys).items()


def _pending(
    store: MetadataStore,
    selected: set[str],
    partitioning: Partitioning,
    instance: dg.DagsterInstance | None,
) -> Iterator[tuple[str, str | None, IncrementCounts]]:
    """(feature, partition, counts) for every scope with work whose upstream is not waiting."""
    graph = store.graph
    waiting: set[str] = set()
    for feature in graph.topological_order():
        if graph[feature].is_root:
            continue  # roots change when their sources are scanned (a schedule), not here
        if any(up in waiting for up in graph.upstream(feature)):
            waiting.add(feature)
            continue
        for partition, counts in _partition_counts(store, feature, partitioning, instance):
            if counts.total or counts.orphaned:
                waiting.add(feature)
                if feature in selected:
                    yield feature, partition, counts


def _inputs_seq(store: MetadataStore, feature: str) -> str:
    """The latest writes of ``feature`` and of the features it reads, as a run-key part."""
    keys = [feature, *store.graph.upstream(feature)]
    return ".".join(str(store.last_write_seq(k)) for k in keys)


def build_metaxy_sensor(
    assets: Sequence[dg.AssetsDefinition],
    *,
    store: MetaxyStoreResource,
    name: str = "metaxy_sensor",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor requesting runs of the metaxy ``assets`` that have new, stale or orphaned samples.

    Example:
        .. code-block:: python

            store = MetaxyStoreResource(path="metaxy.duckdb")
            sensor = build_metaxy_sensor(assets, store=store,
                                         default_status=dg.DefaultSensorStatus.RUNNING)
            defs = dg.Definitions(assets=assets, sensors=[sensor], resources={...})
    """
    graph = feature_graph(assets)  # fails at load on an invalid graph, not at a tick
    partitioning = metaxy_partitions(assets)
    selected = set(metaxy_features(assets))
    keys = [asset_key(f) for f in sorted(selected)]

    @dg.sensor(
        name=name,
        asset_selection=keys,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Runs metaxy assets whose dependent fields changed, per partition.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        metadata_store = store.get_store(graph)
        with metadata_store:
            seq = metadata_store.last_write_seq()
            if context.cursor is not None and context.cursor == str(seq):
                return dg.SkipReason(f"no new writes since write {seq}")
            requests = [
                dg.RunRequest(
                    run_key=f"{feature}|{partition or ''}|{_inputs_seq(metadata_store, feature)}",
                    asset_selection=[asset_key(feature)],
                    partition_key=partition,
                    tags={
                        "metaxy/feature": feature,
                        "metaxy/new": str(counts.new),
                        "metaxy/stale": str(counts.stale),
                        "metaxy/orphaned": str(counts.orphaned),
                        "metaxy/write_seq": str(seq),
                    },
                )
                for feature, partition, counts in _pending(
                    metadata_store,
                    selected,
                    partitioning,
                    context.instance if context.instance_ref else None,
                )
            ]
        if not requests:
            return dg.SensorResult(
                skip_reason=f"every metaxy asset is up to date at write {seq}", cursor=str(seq)
            )
        return dg.SensorResult(run_requests=requests, cursor=str(seq))

    return _sensor
