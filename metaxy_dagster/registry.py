"""The feature graph of a code location: every feature declared with ``@metaxy_asset``.

Declaring an asset registers its feature here; the graph is built from all of them and
validated as a whole (cycles, unknown upstream features or fields) by :func:`feature_graph`.
Declaring a key again replaces the earlier declaration, as a code reload does.
"""

from __future__ import annotations

from metaxy_core import FeatureGraph, FeatureSpec

__all__ = ["clear_features", "feature_graph", "register_feature"]

_specs: dict[str, FeatureSpec] = {}
_graph: FeatureGraph | None = None


def register_feature(spec: FeatureSpec) -> None:
    """Add (or replace) a feature of this code location's graph."""
    global _graph
    if _specs.get(spec.key) != spec:
        _specs[spec.key] = spec
        _graph = None


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
    _graph = None
