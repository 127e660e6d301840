"""Field-exact staleness in Dagster itself: record pruned assets as up to date.

Dagster decides that an asset is stale by comparing the data versions its latest
materialization read (tags ``dagster/input_data_version/<upstream>``) with its upstream assets'
current data versions. After an audio edit and a crop rerun, ``video/crop`` has a new data
version, so Dagster marks ``vision/faces`` stale, although faces reads only crop's frames, whose
content did not change: metaxy finds no sample of faces to compute.

When metaxy finds nothing to compute for an asset (partition) that has been materialized, and
its recorded inputs are behind its upstream assets' data versions, :func:`record_pruned`
reports a runless materialization of it: the same data version, its current code version, and
the upstream data versions it is now known to be up to date with (tagged ``metaxy/pruned``).
Dagster then shows it fresh, and its downstream assets keep their staleness as it was. Nothing
is computed or written to the metadata store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

from metaxy_core import FeatureGraph
from metaxy_dagster.metadata import asset_key
from metaxy_dagster.partitions import MetaxyPartitions

__all__ = ["PRUNED_TAG", "record_pruned"]

PRUNED_TAG = "metaxy/pruned"
_DATA_VERSION = "dagster/data_version"
_CODE_VERSION = "dagster/code_version"
_INPUT_VERSION = "dagster/input_data_version/"
_INPUT_POINTER = "dagster/input_event_pointer/"


def _latest(
    instance: dg.DagsterInstance, feature: str, partition: str | None
) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key(feature),
            asset_partitions=[partition] if partition is not None else None,
        ),
        limit=1,
    ).records
    return records[0] if records else None


def _tags(record: dg.EventLogRecord) -> Mapping[str, str]:
    materialization = record.asset_materialization
    return materialization.tags or {} if materialization is not None else {}


def record_pruned(
    instance: dg.DagsterInstance,
    graph: FeatureGraph,
    scopes: Iterable[tuple[str, str | None]],
    partitioning: Mapping[str, MetaxyPartitions | None],
    code_versions: Mapping[str, str],
) -> list[tuple[str, str | None]]:
    """Report a pruned, runless materialization of every scope (feature, partition) among
    ``scopes`` (those with nothing to compute) whose latest materialization read older upstream
    data versions than the current ones. Returns the scopes reported."""
    reported = []
    for feature, partition in scopes:
        latest = _latest(instance, feature, partition)
        code_version = code_versions.get(feature)
        if latest is None or code_version is None:
            continue  # never materialized: missing, not pruned
        tags = _tags(latest)
        if _DATA_VERSION not in tags or tags.get(_CODE_VERSION) != code_version:
            continue  # a new definition is a real change: leave it to Dagster
        inputs: dict[str, str] = {}
        behind = False
        for upstream in graph.upstream(feature):
            same = partitioning.get(upstream) == partitioning.get(feature)
            up_partition = partition if same else None
            if partition is not None and not same and partitioning.get(upstream) is not None:
                break  # partitioned differently: no one upstream partition to be up to date with
            up = _latest(instance, upstream, up_partition)
            up_version = _tags(up).get(_DATA_VERSION) if up is not None else None
            if up is None or up_version is None:
                break
            key = asset_key(upstream).to_user_string()
            inputs[_INPUT_VERSION + key] = up_version
            inputs[_INPUT_POINTER + key] = str(up.storage_id)
            behind = behind or tags.get(_INPUT_VERSION + key) != up_version
        else:
            if behind:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        asset_key=asset_key(feature),
                        partition=partition,
                        description="Pruned by metaxy: no field it reads changed.",
                        metadata={PRUNED_TAG: True},
                        tags={
                            _DATA_VERSION: tags[_DATA_VERSION],
                            _CODE_VERSION: code_version,
                            PRUNED_TAG: "true",
                            **inputs,
                        },
                    )
                )
                reported.append((feature, partition))
    return reported
