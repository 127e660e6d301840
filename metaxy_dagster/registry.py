"""The feature graph of a code location: every feature declared with ``@metaxy_asset``.

Declaring an asset registers its feature here; the graph is built from all of them and
validated as a whole (cycles, unknown upstream features or fields) by :func:`feature_graph`.
Declaring a key again replaces the earlier declaration, as a code reload does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaxy_core import FeatureGraph, FeatureSpec

if TYPE_CHECKING:
    from metaxy_dagster.partitions import MetaxyPartitions

__all__ = ["clear_features", "feature_graph", "feature_partitions", "register_feature"]

_specs: dict[str, FeatureSpec] = {}
_partitions: dict[str, MetaxyPartitions | None] = {}
_graph: FeatureGraph | None = None


def register_feature(spec: FeatureSpec, partitions: MetaxyPartitions | None = None) -> None:
    """Add (or replace) a feature of this code location's graph, validating the graph.

    Raises the graph errors of :class:`~metaxy_core.FeatureGraph` (e.g. an upstream feature
    that is not declared yet) and then leaves the registry as it was.
    """
    global _graph
    if _specs.get(spec.key) != spec:
        specs = {**_specs, spec.key: spec}
        graph = FeatureGraph(specs.values())
        _specs[spec.key] = spec
        _graph = graph
    _partitions[spec.key] = partitions


def feature_partitions(feature: str) -> MetaxyPartitions | None:
    """How the asset of ``feature`` is partitioned (``None``: not partitioned)."""
    return _partitions.get(feature)


def feature_graph() -> FeatureGraph:
    """The validated graph of every registered feature.

    Call it once in your definitions module to fail at load time on an invalid graph.
    """
    global _graph
    if _graph is None:
        _graph = FeatureGraph(_specs.values())
    return _graph


def clear_features() -> None:
    """Forget every registered feature (for tests that declare several graphs)."""
    global _graph
    _specs.clear()
    _partitions.clear()
    _graph = None
