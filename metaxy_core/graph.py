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

from metaxy_core.definitions import FeatureDep, FeatureSpec, FieldRef, FieldSpec, Lineage
from metaxy_core.errors import (
    CycleError,
    DependencyError,
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
        for index, spec in enumerate(features):
            if not isinstance(spec, FeatureSpec):
                raise TypeError(
                    f"FeatureGraph takes FeatureSpec objects; item {index} is a "
                    f"{type(spec).__name__} ({spec!r:.80}). Build it with FeatureSpec(key=..., "
                    "id_columns=[...], ...), or FeatureSpec(**mapping) for a mapping."
                )
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

    def dependency(self, feature: str, upstream: str) -> FeatureDep:
        """How ``feature`` reads ``upstream`` (its :class:`~metaxy_core.FeatureDep`)."""
        for dep in self[feature].deps:
            if dep.feature == upstream:
                return dep
        raise FeatureNotFoundError(
            f"feature {feature!r} does not read {upstream!r}; it reads: "
            f"{', '.join(self.upstream(feature)) or 'nothing'}."
        )

    def join_columns(self, feature: str, upstream: str) -> tuple[str, ...]:
        """The id columns ``feature`` and ``upstream`` share, which join them, in the order of
        ``feature``'s id columns: all of them for identity, the upstream's (the parent's) for
        expansion, ``feature``'s own (the group key) for aggregation."""
        self.dependency(feature, upstream)
        shared = set(self._specs[upstream].id_columns)
        return tuple(i for i in self._specs[feature].id_columns if i in shared)

    def expected_key(self, feature: str) -> tuple[str, ...]:
        """The id columns identifying an expected sample of ``feature``.

        Its own id columns, except when every upstream feature is an expansion: then its
        children are unknown until computed, so its expected samples are the parents,
        identified by their id columns (the widest join of its upstream features).
        """
        spec = self[feature]
        widest: set[str] = set()
        for dep in spec.deps:
            widest |= set(self.join_columns(feature, dep.feature))
        return tuple(i for i in spec.id_columns if i in widest) if spec.deps else spec.id_columns

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
                self._check_lineage(spec, dep)
            self._check_joins(spec)
        return tuple(order)

    def _check_lineage(self, spec: FeatureSpec, dep: FeatureDep) -> None:
        upstream = self._specs[dep.feature]
        up, down = set(upstream.id_columns), set(spec.id_columns)
        fits = {
            Lineage.IDENTITY: (
                up == down,
                "the same id columns: use the same id columns in both features",
            ),
            Lineage.EXPANSION: (
                up < down,
                f"every id column of {dep.feature!r} plus at least one more (a child id, e.g. "
                f"'chunk_id'): add them to the id columns of {spec.key!r}",
            ),
            Lineage.AGGREGATION: (
                down < up,
                f"a strict subset of the id columns of {dep.feature!r} (the group key): give "
                f"{spec.key!r} the id columns its samples group by",
            ),
        }
        ok, needs = fits[dep.lineage]
        if not ok:
            raise IdColumnsMismatchError(
                f"feature {spec.key!r} (id columns {list(spec.id_columns)}) reads "
                f"{dep.feature!r} (id columns {list(upstream.id_columns)}) with "
                f"{dep.lineage.value} lineage, which needs {needs}."
            )
        where = f"the dependency of {spec.key!r} on {dep.feature!r}"
        for name in [*(dep.select or ()), *(a for a, _ in dep.rename)]:
            if name in up:
                raise DependencyError(
                    f"select= or rename= of {where} names id column {name!r}: id columns are "
                    "join keys and always pass through; list only user columns."
                )
        for _, name in dep.rename:
            if name in down:
                raise DependencyError(
                    f"rename= of {where} renames a column to {name!r}, an id column of "
                    f"{spec.key!r}: choose another name."
                )

    def _check_joins(self, spec: FeatureSpec) -> None:
        """The upstream features' join columns must nest, and a required one must be widest,
        so that the expected samples are the rows of one required upstream, widened by joins
        on subsets of its columns (never a cross product)."""
        if not spec.deps:
            return
        joins = {d.feature: set(self.join_columns(spec.key, d.feature)) for d in spec.deps}
        widest = max(joins.values(), key=len)
        for key, columns in joins.items():
            if not columns <= widest:
                other = next(k for k, v in joins.items() if v == widest)
                raise IdColumnsMismatchError(
                    f"feature {spec.key!r} joins {key!r} on {sorted(columns)} and {other!r} on "
                    f"{sorted(widest)}, which do not nest: every upstream feature must join on "
                    "a subset of the columns of the widest join. Give the upstream features "
                    "id columns that nest, or split the feature."
                )
        if not any(joins[d.feature] == widest and not d.optional for d in spec.deps):
            raise DependencyError(
                f"feature {spec.key!r} has no required upstream feature joined on "
                f"{sorted(widest)}, so nothing says which samples exist: make one of "
                f"{', '.join(repr(d.feature) for d in spec.deps if joins[d.feature] == widest)} "
                "not optional."
            )

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
