"""The feature graph: features, their resolved field-level dependencies, and their versions.

A graph is validated when it is built and never changes afterwards.

>>> from metaxy_core import FeatureSpec, FieldSpec, FieldDep
>>> graph = FeatureGraph([
...     FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio", "frames"]),
...     FeatureSpec(key="video/crop", id_columns=["video_id"], fields=["audio", "frames"],
...                 deps=["video/raw"]),
... ])
>>> graph.field_deps("video/crop", "audio")
(FieldRef(feature='video/raw', field='audio'),)
>>> graph.topological_order()
('video/raw', 'video/crop')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import TypeVar

from metaxy_core.definitions import FeatureSpec, FieldRef, FieldSpec
from metaxy_core.errors import (
    CycleError,
    DuplicateFeatureError,
    FeatureNotFoundError,
    FieldNotFoundError,
    GraphError,
    IdColumnsMismatchError,
)
from metaxy_core.versions import GraphVersions, compute_versions

__all__ = ["FeatureGraph", "FieldRef"]

_T = TypeVar("_T")


def _closure(start: _T, step: Callable[[_T], Iterable[_T]]) -> tuple[_T, ...]:
    """Everything reachable from ``start`` through ``step``, sorted, without ``start``."""
    seen: set[_T] = set()
    stack = list(step(start))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(step(node))
    return tuple(sorted(seen))  # type: ignore[type-var]


class FeatureGraph:
    """An immutable, validated DAG of features and their field-level dependencies."""

    def __init__(self, features: Iterable[FeatureSpec] = ()) -> None:
        specs: dict[str, FeatureSpec] = {}
        for spec in features:
            if spec.key in specs:
                if specs[spec.key] == spec:
                    continue
                raise DuplicateFeatureError(
                    f"feature {spec.key!r} is declared twice with different definitions: "
                    "give one of them another key, or declare it once and import it."
                )
            specs[spec.key] = spec
        self._specs = specs
        self._order = self._validate_and_sort()
        self._field_deps = {
            FieldRef(key, f.key): self._resolve_field(specs[key], f)
            for key in self._order
            for f in specs[key].fields
        }

    # -- lookup ---------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> FeatureSpec:
        try:
            return self._specs[key]
        except KeyError:
            raise FeatureNotFoundError(self._unknown(key)) from None

    def __contains__(self, key: object) -> bool:
        return key in self._specs

    def __iter__(self) -> Iterator[FeatureSpec]:
        return (self._specs[k] for k in self._order)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"FeatureGraph({list(self._order)})"

    def with_features(self, *features: FeatureSpec) -> FeatureGraph:
        """A new graph with ``features`` added, validated as a whole."""
        return FeatureGraph([*self._specs.values(), *features])

    # -- structure ------------------------------------------------------------------------------

    def topological_order(self) -> tuple[str, ...]:
        """Feature keys, every feature after all of its upstream features (ties by key)."""
        return self._order

    def upstream(self, key: str, *, transitive: bool = False) -> tuple[str, ...]:
        """Keys of the features ``key`` reads (all ancestors with ``transitive``)."""
        direct = tuple(d.feature for d in self[key].deps)
        if not transitive:
            return direct
        return _closure(key, lambda k: [d.feature for d in self._specs[k].deps])

    def downstream(self, key: str, *, transitive: bool = False) -> tuple[str, ...]:
        """Keys of the features that read ``key`` (all descendants with ``transitive``)."""
        self[key]
        children = self._children
        if not transitive:
            return tuple(children[key])
        return _closure(key, lambda k: children[k])

    def field_deps(self, feature: str, field: str) -> tuple[FieldRef, ...]:
        """The upstream fields ``feature.field`` is computed from, resolved and sorted."""
        self[feature].field(field)
        return self._field_deps[FieldRef(feature, field)]

    def field_edges(self) -> tuple[tuple[FieldRef, FieldRef], ...]:
        """Every resolved field-level edge as ``(upstream, downstream)``."""
        return tuple((up, down) for down, ups in self._field_deps.items() for up in ups)

    def upstream_fields(self, feature: str, field: str) -> tuple[FieldRef, ...]:
        """Every field that ``feature.field`` depends on, directly or not."""
        return _closure(FieldRef(feature, field), lambda r: self.field_deps(*r))

    def downstream_fields(self, feature: str, field: str) -> tuple[FieldRef, ...]:
        """Every field that depends on ``feature.field``, directly or not."""
        self[feature].field(field)
        return _closure(FieldRef(feature, field), lambda r: self._field_children[r])

    @cached_property
    def versions(self) -> GraphVersions:
        """Field, feature and graph versions, computed from the definitions alone."""
        return compute_versions(self)

    # -- building -------------------------------------------------------------------------------

    @cached_property
    def _children(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {k: [] for k in self._order}
        for key in self._order:
            for dep in self._specs[key].deps:
                children[dep.feature].append(key)
        return children

    @cached_property
    def _field_children(self) -> dict[FieldRef, list[FieldRef]]:
        children: dict[FieldRef, list[FieldRef]] = {ref: [] for ref in self._field_deps}
        for up, down in self.field_edges():
            children[up].append(down)
        return children

    def _unknown(self, key: str) -> str:
        known = ", ".join(sorted(self._specs)) or "none"
        return f"feature {key!r} is not in the graph; known features: {known}."

    def _validate_and_sort(self) -> tuple[str, ...]:
        specs = self._specs
        for spec in specs.values():
            for dep in spec.deps:
                if dep.feature not in specs:
                    raise FeatureNotFoundError(
                        f"feature {spec.key!r} depends on {dep.feature!r}, which is not in the "
                        f"graph; known features: {', '.join(sorted(specs))}. Declare "
                        f"{dep.feature!r} or remove it from deps= of {spec.key!r}."
                    )
                if dep.feature == spec.key:
                    raise CycleError(
                        f"feature {spec.key!r} depends on itself: remove it from its own deps=."
                    )
            if len({d.feature for d in spec.deps}) != len(spec.deps):
                raise GraphError(
                    f"feature {spec.key!r} lists one upstream feature twice in deps=: list each "
                    "upstream once."
                )
        # Kahn's algorithm with a sorted frontier: a deterministic order.
        indegree = {k: len(s.deps) for k, s in specs.items()}
        children: dict[str, list[str]] = {k: [] for k in specs}
        for k, s in specs.items():
            for d in s.deps:
                children[d.feature].append(k)
        frontier = sorted(k for k, n in indegree.items() if n == 0)
        order: list[str] = []
        while frontier:
            key = frontier.pop(0)
            order.append(key)
            for child in children[key]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    frontier.append(child)
            frontier.sort()
        if len(order) != len(specs):
            raise CycleError(
                f"feature dependencies form a cycle: {' -> '.join(self._find_cycle(indegree))}. "
                "Remove one of these dependencies."
            )
        for spec in specs.values():
            for dep in spec.deps:
                upstream = specs[dep.feature]
                if set(upstream.id_columns) != set(spec.id_columns):
                    raise IdColumnsMismatchError(
                        f"feature {spec.key!r} (id columns {list(spec.id_columns)}) reads "
                        f"{dep.feature!r} (id columns {list(upstream.id_columns)}) with "
                        f"{dep.lineage.value} lineage, which needs the same id columns: use the "
                        "same id columns in both features."
                    )
        return tuple(order)

    def _find_cycle(self, indegree: dict[str, int]) -> list[str]:
        remaining = {k for k, n in indegree.items() if n > 0}
        # Walk upstream from any remaining node; some node repeats within len(remaining) steps.
        path: list[str] = []
        node = min(remaining)
        while node not in path:
            path.append(node)
            node = min(d.feature for d in self._specs[node].deps if d.feature in remaining)
        cycle = path[path.index(node) :]
        cycle.reverse()  # print in the direction data flows: upstream -> downstream
        return [*cycle, cycle[0]]

    def _resolve_field(self, spec: FeatureSpec, field: FieldSpec) -> tuple[FieldRef, ...]:
        refs: set[FieldRef] = set()
        upstream_keys = {d.feature for d in spec.deps}
        if field.deps is not None:
            for dep in field.deps:
                if dep.feature not in upstream_keys:
                    raise FeatureNotFoundError(
                        f"field {spec.key}.{field.key} depends on feature {dep.feature!r}, which "
                        f"{spec.key!r} does not read; its upstream features are: "
                        f"{', '.join(sorted(upstream_keys)) or 'none'}. Add {dep.feature!r} to "
                        f"deps= of {spec.key!r}, or depend on one of those."
                    )
                upstream = self._specs[dep.feature]
                for name in dep.fields if dep.fields is not None else upstream.field_keys:
                    if name not in upstream.field_keys:
                        raise FieldNotFoundError(
                            f"field {spec.key}.{field.key} depends on {dep.feature}.{name}, but "
                            f"{dep.feature!r} has no field {name!r}; its fields are: "
                            f"{', '.join(upstream.field_keys)}. Depend on one of those, or "
                            f"declare {name!r} in fields= of {dep.feature!r}."
                        )
                    refs.add(FieldRef(dep.feature, name))
        else:
            for feature_dep in spec.deps:
                upstream = self._specs[feature_dep.feature]
                if field.key in upstream.field_keys:
                    refs.add(FieldRef(feature_dep.feature, field.key))
                else:
                    refs.update(FieldRef(feature_dep.feature, n) for n in upstream.field_keys)
        return tuple(sorted(refs))
