"""What an engine must compute to resolve one feature, independent of the engine.

A :class:`ResolvePlan` names the frames to join (the feature's upstream current rows, or the
samples given for a root), the input columns of each field's provenance in canonical order, and
the stored feature versions under which a field's recipe was different. Engines compile it to a
Polars plan or to SQL; both follow the same steps:

1. ``expected``: join the upstream current rows on the id columns (inner join: a sample exists
   when every upstream has it).
2. Full outer join with the stored current rows on the id columns, and keep the **candidates**:
   absent from the store (**new**), absent upstream (**orphaned**), or with a changed input
   (an upstream sample data version, or for a root a given field data version, that differs
   from the one the stored row was computed from), or stored under a changed recipe. Every
   other sample provably has an unchanged provenance, so it is neither hashed nor returned.
3. Hash each candidate field's recipe with its inputs; a differing provenance is **stale**.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from metaxy_core import columns as c
from metaxy_core.definitions import FieldRef
from metaxy_core.graph import FeatureGraph

__all__ = ["FieldPlan", "ResolvePlan", "UpstreamPlan", "build_plan"]

# Internal column names, never seen by users.
EXPECTED_MARK = "__metaxy_expected"
STORED_MARK = "__metaxy_stored"
STATUS = "__metaxy_status"
STORED_VERSION = "__metaxy_stored_feature_version"


def input_column(upstream: int, field: str) -> str:
    """Name of upstream ``upstream``'s data version of ``field`` in the joined frame."""
    return f"__metaxy_in{upstream}__{field}"


def stored_input(column: str) -> str:
    """Name of the stored row's value of change input ``column`` in the compared frame."""
    return f"__metaxy_stored_in__{column}"


def stored_column(field: str) -> str:
    """Name of the stored provenance of ``field`` in the compared frame."""
    return f"__metaxy_stored__{field}"


@dataclass(frozen=True)
class UpstreamPlan:
    """One upstream feature: which of its current columns to read, under which names."""

    feature: str
    columns: Mapping[str, str]
    """source column -> joined column (id columns map to themselves)."""


@dataclass(frozen=True)
class FieldPlan:
    """One field: its recipe and its input columns, in canonical order."""

    field: str
    recipe: str
    inputs: tuple[str, ...]
    code_changed_in: tuple[str, ...] = ()
    """Stored feature versions under which this field's recipe differed from now."""


@dataclass(frozen=True)
class ResolvePlan:
    """Everything an engine needs to resolve one feature."""

    feature: str
    id_columns: tuple[str, ...]
    upstreams: tuple[UpstreamPlan, ...]
    fields: tuple[FieldPlan, ...]
    passthrough: tuple[str, ...]
    """Non-id columns of the expected frame that users see (upstream or sample user columns)."""
    change_inputs: tuple[str, ...]
    """Columns compared with the stored row's same-named column to find candidates."""

    @property
    def is_root(self) -> bool:
        """True when provenance comes from given samples rather than from upstream rows."""
        return not self.upstreams

    @property
    def provenance_columns(self) -> tuple[str, ...]:
        """The per-field provenance columns of the expected frame."""
        return tuple(c.provenance_column(f.field) for f in self.fields)

    @property
    def code_changed_in(self) -> tuple[str, ...]:
        """Stored feature versions under which some field's recipe differed from now."""
        return tuple(sorted({v for f in self.fields for v in f.code_changed_in}))

    @property
    def carried(self) -> tuple[str, ...]:
        """Columns of the increment that a write of it keeps: provenance and change inputs."""
        return (*self.provenance_columns, *(() if self.is_root else self.change_inputs))


def build_plan(
    graph: FeatureGraph,
    feature: str,
    *,
    upstream_columns: Mapping[str, Sequence[str]],
    sample_columns: Sequence[str] = (),
    recipes_by_version: Mapping[str, Mapping[str, str]] | None = None,
) -> ResolvePlan:
    """Build the plan resolving ``feature``.

    Args:
        graph: the feature graph.
        feature: the feature to resolve.
        upstream_columns: for each upstream feature, the user columns its stored rows have
            (system columns excluded); they are passed through to the increment.
        sample_columns: for a root feature, the user columns of the given samples.
        recipes_by_version: stored feature version -> {field: recipe} for the feature, to tell
            code changes from data changes.
    """
    spec = graph[feature]
    ids = spec.id_columns
    recipes = graph.versions.recipes
    upstreams: list[UpstreamPlan] = []
    source_of: dict[str, int] = {}
    passthrough: list[str] = []
    taken = set(ids)
    for index, dep in enumerate(spec.deps):
        source_of[dep.feature] = index
        mapping = {i: i for i in ids}
        mapping[c.DATA_VERSION] = c.upstream_data_version_column(dep.feature)
        for field in graph[dep.feature].field_keys:
            mapping[c.data_version_column(field)] = input_column(index, field)
        for name in upstream_columns.get(dep.feature, ()):
            if name in ids or name.startswith(c.PREFIX):
                continue
            # The first upstream (in declaration order) keeps a shared column's plain name.
            alias = name if name not in taken else f"{name}__{dep.feature.replace('/', '__')}"
            mapping[name] = alias
            taken.add(alias)
            passthrough.append(alias)
        upstreams.append(UpstreamPlan(dep.feature, mapping))
    if spec.is_root:
        passthrough = [n for n in sample_columns if n not in ids and not n.startswith(c.PREFIX)]

    fields: list[FieldPlan] = []
    for field in sorted(spec.field_keys):
        recipe = recipes[FieldRef(feature, field)]
        if spec.is_root:
            inputs: tuple[str, ...] = (c.data_version_column(field),)
        else:
            deps = graph.field_deps(feature, field)
            inputs = tuple(input_column(source_of[d.feature], d.field) for d in deps)
        changed = tuple(
            sorted(
                version
                for version, stored in (recipes_by_version or {}).items()
                if stored.get(field) != recipe
            )
        )
        fields.append(FieldPlan(field, recipe, inputs, changed))
    if spec.is_root:
        change_inputs = tuple(c.data_version_column(f) for f in sorted(spec.field_keys))
    else:
        change_inputs = tuple(c.upstream_data_version_column(d.feature) for d in spec.deps)
    return ResolvePlan(
        feature, ids, tuple(upstreams), tuple(fields), tuple(passthrough), change_inputs
    )
