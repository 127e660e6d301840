"""Definition-level versions, computed from code alone (no data).

- **field recipe**: hash of what a field is computed *from*, without upstream versions: the
  feature key, the field key, its code version, and its resolved dependencies, each as
  ``<feature>.<field>@<how>``, where ``<how>`` is the lineage of the dependency it is read
  through (``identity``), followed, when the dependency is shaped, by the canonical JSON of its
  shaping (``identity{"filter":"duration > 10"}``; see :func:`read_through`). Sample
  provenance hashes the recipe with upstream *data* versions, so an upstream code change
  reaches downstream samples only once upstream data actually changed.
- **field version**: hash of the recipe and the versions of the upstream fields it reads.
- **feature version**: hash of the feature key and its field versions.
- **graph version** (snapshot): hash of all feature versions.

All are :func:`~metaxy_core.hashing.hash_parts` of canonical strings, in a fixed order, so they
are identical across processes, machines and Python versions. They are few and shown to people
(Dagster code versions, the store's version tables), so they are kept as 16 hex digits
(:func:`~metaxy_core.hashing.to_hex`), unlike sample-level versions (64-bit integers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metaxy_core.definitions import FeatureDep, FieldRef
from metaxy_core.hashing import hash_parts, to_hex

if TYPE_CHECKING:
    from metaxy_core.graph import FeatureGraph

__all__ = ["GraphVersions", "compute_versions", "read_through"]


@dataclass(frozen=True)
class GraphVersions:
    """Every definition-level version of one graph."""

    recipes: dict[FieldRef, str]
    fields: dict[FieldRef, str]
    features: dict[str, str]
    graph: str

    def feature_fields(self, feature: str) -> dict[str, str]:
        """Field key -> field version for one feature."""
        return {ref.field: v for ref, v in self.fields.items() if ref.feature == feature}


def read_through(dep: FeatureDep) -> str:
    """How a field reads through ``dep``, as canonical text for its recipe.

    The lineage alone for a plain dependency (so plain recipes never change), else the lineage
    followed by the non-default shaping as JSON with sorted keys, no spaces and ASCII escapes;
    ``select`` is sorted and ``rename`` is sorted pairs, as neither order changes the data.

    >>> read_through(FeatureDep("video/raw", lineage="expansion"))
    'expansion'
    >>> read_through(FeatureDep("video/raw", select=["b", "a"], filter="x > 1", optional=True))
    'identity{"filter":"x > 1","optional":true,"select":["a","b"]}'
    """
    shaping: dict[str, object] = {}
    if dep.select is not None:
        shaping["select"] = sorted(dep.select)
    if dep.rename:
        shaping["rename"] = [list(pair) for pair in dep.rename]
    if dep.filter is not None:
        shaping["filter"] = dep.filter
    if dep.optional:
        shaping["optional"] = True
    text = json.dumps(shaping, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return dep.lineage.value + (text if shaping else "")


def _version(parts: list[str]) -> str:
    return to_hex(hash_parts(parts))


def compute_versions(graph: FeatureGraph) -> GraphVersions:
    """Compute recipes and versions of every field, feature and of the graph."""
    recipes: dict[FieldRef, str] = {}
    fields: dict[FieldRef, str] = {}
    features: dict[str, str] = {}
    for key in graph.topological_order():
        spec = graph[key]
        through = {d.feature: read_through(d) for d in spec.deps}
        for field in sorted(spec.fields, key=lambda f: f.key):
            ref = FieldRef(key, field.key)
            deps = graph.field_deps(key, field.key)
            reads = [f"{d}@{through[d.feature]}" for d in deps]
            recipes[ref] = _version(["recipe/v1", key, field.key, field.code_version, *reads])
            fields[ref] = _version(["field/v1", recipes[ref], *(fields[d] for d in deps)])
        own = [f"{f}={fields[FieldRef(key, f)]}" for f in sorted(spec.field_keys)]
        features[key] = _version(["feature/v1", key, *own])
    snapshot = _version(["graph/v1", *(f"{k}={features[k]}" for k in sorted(features))])
    return GraphVersions(recipes=recipes, fields=fields, features=features, graph=snapshot)
