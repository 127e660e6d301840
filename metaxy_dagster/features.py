"""The features of a set of Dagster assets: no registry, the assets carry them.

``@metaxy_asset`` writes into its asset's definition metadata the feature it computes and every
feature upstream of it (``metaxy/graph``, as JSON), and how it is partitioned
(``metaxy/partitions``). Whatever holds the assets (a ``Definitions``, a sensor, a check, the IO
manager loading an input) rebuilds the graph from them, so two code locations, or two graphs in
one process, never see each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import dagster as dg

from metaxy_core import FeatureGraph, FeatureSpec
from metaxy_dagster.partitions import ColumnPartitions, HashShardPartitions, MetaxyPartitions

__all__ = [
    "FEATURE_KEY",
    "FINGERPRINT_KEY",
    "GRAPH_KEY",
    "PARTITIONS_KEY",
    "AssetsLike",
    "feature_graph",
    "graph_metadata",
    "graph_of",
    "location_graph",
    "metaxy_features",
    "metaxy_fingerprints",
    "metaxy_partitions",
    "partitions_metadata",
    "partitions_of",
]

FEATURE_KEY = "metaxy/feature"
"""Definition metadata: the feature key of a metaxy asset."""
GRAPH_KEY = "metaxy/graph"
"""Definition metadata: the specs of the asset's feature and of every feature upstream of it."""
PARTITIONS_KEY = "metaxy/partitions"
"""Definition metadata: how a metaxy asset is partitioned (hash shards or a column)."""
FINGERPRINT_KEY = "metaxy/code_fingerprint"
"""Definition metadata: a hash of the asset's code version and its function's source, which
changes with a fix of the function; the sensor retries a failed partition when it does."""

AssetsLike = dg.Definitions | dg.RepositoryDefinition | Iterable[Any]
"""Where features are found: ``Definitions``, a repository, or assets and asset specs."""


def graph_metadata(graph: FeatureGraph, feature: str) -> dg.JsonMetadataValue:
    """The specs of ``feature`` and of everything upstream of it, as definition metadata."""
    keys = set(graph.upstream(feature, transitive=True)) | {feature}
    specs = [graph[k].model_dump(mode="json") for k in graph.topological_order() if k in keys]
    return dg.MetadataValue.json(specs)


def partitions_metadata(partitions: MetaxyPartitions | None) -> dict[str, Any]:
    """How the asset is partitioned, as definition metadata (nothing when unpartitioned)."""
    if partitions is None:
        return {}
    if isinstance(partitions, HashShardPartitions):
        return {PARTITIONS_KEY: dg.MetadataValue.json({"hash_shards": partitions.count})}
    return {PARTITIONS_KEY: dg.MetadataValue.json({"column": partitions.column})}


@lru_cache(maxsize=256)
def _graph_from_json(text: str) -> FeatureGraph:
    # Pure: the same JSON always gives the same (immutable) graph, so it is built once.
    return FeatureGraph(FeatureSpec.model_validate(s) for s in json.loads(text))


def _json(value: Any) -> Any:
    return value.value if isinstance(value, dg.MetadataValue) else value


def graph_of(metadata: Mapping[str, Any]) -> FeatureGraph | None:
    """The graph a metaxy asset's definition metadata carries (``None``: not a metaxy asset)."""
    specs = metadata.get(GRAPH_KEY)
    if specs is None:
        return None
    return _graph_from_json(json.dumps(_json(specs), sort_keys=True))


def _asset_specs(assets: AssetsLike) -> list[dg.AssetSpec]:
    if isinstance(assets, dg.Definitions):
        return list(assets.resolve_all_asset_specs())
    if isinstance(assets, dg.RepositoryDefinition):
        return [s for a in assets.assets_defs_by_key.values() for s in a.specs]
    specs: list[dg.AssetSpec] = []
    for item in assets:
        if isinstance(item, dg.AssetsDefinition):
            specs.extend(item.specs)
        elif isinstance(item, dg.AssetSpec):
            specs.append(item)
    return specs


def metaxy_features(assets: AssetsLike) -> list[str]:
    """Feature keys of the metaxy assets among ``assets``, in the order given."""
    specs = _asset_specs(assets)
    keys = (str(s.metadata[FEATURE_KEY]) for s in specs if FEATURE_KEY in s.metadata)
    return list(dict.fromkeys(keys))


def feature_graph(assets: AssetsLike) -> FeatureGraph:
    """The validated feature graph of the metaxy assets among ``assets``.

    Each metaxy asset carries its feature and everything upstream of it, so the graph of a
    code location is the union of what its assets carry. Two different declarations of one
    feature key fail here (:class:`~metaxy_core.errors.DuplicateFeatureError`).

    Example:
        .. code-block:: python

            defs = dg.Definitions(assets=[raw, transcript], resources=resources)
            graph = feature_graph(defs)  # or feature_graph([raw, transcript])
            store = resources["metaxy_store"].get_store(graph)
    """
    specs: list[FeatureSpec] = []
    for spec in _asset_specs(assets):
        graph = graph_of(spec.metadata)
        if graph is not None:
            specs.extend(graph)
    return FeatureGraph(specs)


def location_graph(repository: dg.RepositoryDefinition, own: FeatureGraph) -> FeatureGraph:
    """The feature graph of the code location (``repository``) a run of an asset belongs to;
    ``own``, what the asset carries, if the location does not hold all of it."""
    whole = _repository_graph(repository)
    return whole if all(spec.key in whole for spec in own) else own


@lru_cache(maxsize=4)
def _repository_graph(repository: dg.RepositoryDefinition) -> FeatureGraph:
    # A loaded code location does not change: its graph is built once, not at every step.
    return feature_graph(repository)


def partitions_of(
    metadata: Mapping[str, Any], partitions_def: dg.PartitionsDefinition[str] | None
) -> MetaxyPartitions | None:
    """How a metaxy asset with this definition metadata and partitions is partitioned."""
    how = _json(metadata.get(PARTITIONS_KEY))
    if how is None or partitions_def is None:
        return None
    if "hash_shards" in how:
        return HashShardPartitions(int(how["hash_shards"]))
    return ColumnPartitions(str(how["column"]), partitions_def)


def metaxy_fingerprints(assets: AssetsLike) -> dict[str, str]:
    """Feature key -> code fingerprint of its asset, for the metaxy assets among ``assets``."""
    return {
        str(spec.metadata[FEATURE_KEY]): str(spec.metadata.get(FINGERPRINT_KEY, ""))
        for spec in _asset_specs(assets)
        if FEATURE_KEY in spec.metadata
    }


def metaxy_partitions(assets: AssetsLike) -> dict[str, MetaxyPartitions | None]:
    """Feature key -> how its asset is partitioned, for the metaxy assets among ``assets``."""
    return {
        str(spec.metadata[FEATURE_KEY]): partitions_of(spec.metadata, spec.partitions_def)
        for spec in _asset_specs(assets)
        if FEATURE_KEY in spec.metadata
    }
