"""What an engine must compute to resolve one feature, independent of the engine.

A :class:`ResolvePlan` names the frames to join (the feature's upstream current rows, or the
samples given for a root), the input columns of each field's provenance in canonical order, and
the stored feature versions under which a field's recipe was different. Engines compile it to a
Polars plan or to SQL; both follow the same steps:

1. ``expected``: read each upstream's current rows, keep those its static ``filter`` accepts,
   and join them on the id columns each shares with the feature (``on``): inner joins, left
   joins for optional upstreams, starting from a required upstream with the widest join. An
   **aggregated** upstream is first grouped by ``on``: each data version column becomes the
   group's version (below), every other column a list of the members' values. The expected
   frame is keyed by :attr:`ResolvePlan.key`: the feature's id columns, or for an
   **expansion** only the parents' (children do not exist before they are computed).
2. Full outer join with the stored current rows on ``key``, and keep the **candidates**:
   absent from the store (**new**; for an expansion one row per parent, child ids null),
   absent upstream (**orphaned**), or with a changed input (an upstream sample data version,
   or for a root a given field data version, that differs from the one the stored row was
   computed from), or stored under a changed recipe. Every other sample provably has an
   unchanged provenance, so it is neither hashed nor returned. A stored child joins its
   parent, so all children of a changed parent are candidates, one row each.
3. Hash each candidate field's recipe with its inputs; a differing provenance is **stale**.
   The engine hands over the input columns as they are (64-bit integers) and
   :func:`metaxy_core.hashing.polars_hash` hashes the canonical string of each field: its
   recipe, then its inputs' decimal text, in canonical order.

**Group version** of a data version column ``v`` over the members of one group: each member
is the canonical string of its upstream id values (their canonical text, see
:func:`metaxy_core.hashing.polars_id_text`, in the upstream's id column order) and its ``v``;
the members are sorted by the canonical string of their id values (bytewise) and their
strings joined with the separator; the group version is the hash of that string, i.e.
``hash_parts([*ids_1, v_1, *ids_2, v_2, ...])``. It covers the member ids, so an added or
removed member changes it, as does a changed ``v``. The group version of the sample data
version is the group's change input, so unchanged groups are pruned like any sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from metaxy_core import columns as c
from metaxy_core.definitions import FeatureDep, FieldRef, Lineage
from metaxy_core.errors import DependencyError
from metaxy_core.graph import FeatureGraph

__all__ = ["FieldPlan", "ResolvePlan", "UpstreamPlan", "build_plan"]

# Internal column names, never seen by users.
EXPECTED_MARK = "__metaxy_expected"
STORED_MARK = "__metaxy_stored"
STATUS = "__metaxy_status"
STORED_VERSION = "__metaxy_stored_feature_version"
GROUP = "__metaxy_group"


INPUT_PREFIX = "__metaxy_in"


def input_column(upstream: int, field: str) -> str:
    """Name of upstream ``upstream``'s data version of ``field`` in the joined frame."""
    return f"{INPUT_PREFIX}{upstream}__{field}"


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
    """source column -> joined column (join columns map to themselves)."""
    on: tuple[str, ...]
    """The columns joining it to the expected frame (the id columns both features share)."""
    versions: tuple[str, ...] = ()
    """Source columns that are data versions (hashed per group when aggregated)."""
    members: tuple[str, ...] = ()
    """For an aggregation, the upstream's id columns, which identify and order the members of
    a group; empty otherwise."""
    filter: str | None = None
    """A static SQL boolean expression its rows must satisfy."""
    filter_columns: tuple[str, ...] = ()
    """The columns ``filter`` reads."""
    optional: bool = False
    """Left-joined: expected samples exist without it."""

    @property
    def aggregated(self) -> bool:
        """True when its rows are grouped by ``on`` before the join."""
        return bool(self.members)


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
    key: tuple[str, ...]
    """The id columns of the expected frame, joined with the stored rows (see the module)."""
    upstreams: tuple[UpstreamPlan, ...]
    """In join order: the first is a required upstream with the widest join."""
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
    def child_columns(self) -> tuple[str, ...]:
        """Id columns the expected frame lacks (the child ids of an expansion); they are null
        in the increment's rows of new parents."""
        return tuple(i for i in self.id_columns if i not in self.key)

    @property
    def provenance_columns(self) -> tuple[str, ...]:
        """The per-field provenance columns of the expected frame."""
        return tuple(c.provenance_column(f.field) for f in self.fields)

    @property
    def code_changed_in(self) -> tuple[str, ...]:
        """Stored feature versions under which some field's recipe differed from now."""
        return tuple(sorted({v for f in self.fields for v in f.code_changed_in}))

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input columns of all fields, each once, in field order."""
        return tuple(dict.fromkeys(i for f in self.fields for i in f.inputs))

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
        upstream_columns: for each upstream feature that was ever written, the user columns
            its stored rows have (system columns excluded); they are passed through to the
            increment, as each dependency's ``select`` and ``rename`` say.
        sample_columns: for a root feature, the user columns of the given samples.
        recipes_by_version: stored feature version -> {field: recipe} for the feature, to tell
            code changes from data changes.
    """
    spec = graph[feature]
    ids = spec.id_columns
    recipes = graph.versions.recipes
    upstreams: list[UpstreamPlan] = []
    read_refs = {r for f in spec.field_keys for r in graph.field_deps(feature, f)}
    source_of: dict[str, int] = {}
    passthrough: list[str] = []
    taken = set(ids)
    for index, dep in enumerate(spec.deps):
        source_of[dep.feature] = index
        upstream = graph[dep.feature]
        on = graph.join_columns(feature, dep.feature)
        mapping = {i: i for i in on}
        mapping[c.DATA_VERSION] = c.upstream_data_version_column(dep.feature)
        # Only the upstream fields this feature reads: a field added upstream later, which
        # the stored upstream rows do not have yet, concerns only the fields that read it.
        for field in upstream.field_keys:
            if FieldRef(dep.feature, field) in read_refs:
                mapping[c.data_version_column(field)] = input_column(index, field)
        versions = tuple(s for s in mapping if s not in on)
        known = upstream_columns.get(dep.feature)
        user = _shaped_columns(feature, dep, known, upstream.id_columns)
        # Upstream ids outside the join (an aggregation's member ids) pass through like users'.
        passed = [*(i for i in upstream.id_columns if i not in on), *user]
        unknown = [n for n in dict(dep.rename) if n not in passed]
        if known is not None and unknown:
            raise DependencyError(
                f"feature {feature!r} renames {', '.join(map(repr, unknown))} of "
                f"{dep.feature!r}, which it does not pass through; the columns it passes "
                f"through are: {', '.join(passed) or 'none'}. Rename one of those, or select "
                "the column first."
            )
        for name in passed:
            wanted = dict(dep.rename).get(name, name)
            # The first upstream (in declaration order) keeps a shared column's plain name.
            alias = wanted if wanted not in taken else f"{wanted}__{dep.feature.replace('/', '__')}"
            mapping[name] = alias
            taken.add(alias)
            passthrough.append(alias)
        filter_columns: tuple[str, ...] = ()
        if dep.filter is not None:
            filter_columns = tuple(pl.sql_expr(dep.filter).meta.root_names())
            readable = {*upstream.id_columns, *(known or ())}
            missing = sorted(n for n in filter_columns if n not in readable)
            if known is not None and missing:
                raise DependencyError(
                    f"feature {feature!r} filters {dep.feature!r} by {dep.filter!r}, but "
                    f"{dep.feature!r} has no column {', '.join(map(repr, missing))}; its "
                    f"columns are: {', '.join(sorted(readable))}. Write the column(s) in "
                    f"{dep.feature!r}, or change the filter."
                )
        aggregated = dep.lineage is Lineage.AGGREGATION
        upstreams.append(
            UpstreamPlan(
                dep.feature,
                mapping,
                on,
                versions=versions,
                members=upstream.id_columns if aggregated else (),
                filter=dep.filter,
                filter_columns=filter_columns,
                optional=dep.optional,
            )
        )
    if spec.is_root:
        passthrough = [n for n in sample_columns if n not in ids and not n.startswith(c.PREFIX)]
    key = graph.expected_key(feature)
    # Join order: a required upstream with the widest join first (the graph ensures one).
    upstreams.sort(key=lambda up: up.optional or set(up.on) != set(key))

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
        feature, ids, key, tuple(upstreams), tuple(fields), tuple(passthrough), change_inputs
    )


def _shaped_columns(
    feature: str, dep: FeatureDep, known: Sequence[str] | None, ids: Sequence[str]
) -> list[str]:
    """The upstream user columns passed through: ``select`` (default all of ``known``)."""
    available = [n for n in known or () if n not in ids and not n.startswith(c.PREFIX)]
    if dep.select is None:
        return available
    missing = [n for n in dep.select if n not in available]
    if known is not None and missing:
        raise DependencyError(
            f"feature {feature!r} selects {', '.join(map(repr, missing))} from "
            f"{dep.feature!r}, which has no such user column; its user columns are: "
            f"{', '.join(available) or 'none'}. Write them in {dep.feature!r}, or select others."
        )
    return [n for n in dep.select if n in available]
