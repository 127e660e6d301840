"""What ``metaxy features``, ``describe`` and ``graph`` print: Rich tables and trees of the
definitions, computed from the graph alone (no store)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from metaxy_core.definitions import FeatureDep, FieldRef
from metaxy_core.graph import FeatureGraph
from metaxy_core.store.snapshots import Snapshot
from metaxy_core.versions import read_through

__all__ = [
    "describe_view",
    "feature_json",
    "features_view",
    "graph_view",
    "reads_text",
    "short",
    "snapshots_table",
]

SHORT = 8
"""Hex characters shown of a version (the full one is in ``--json`` and the store)."""


def short(version: str) -> str:
    """The first characters of a version, as people read them."""
    return version[:SHORT]


def reads_text(graph: FeatureGraph, feature: str, field: str) -> str:
    """What a field is computed from, e.g. ``video/raw.audio`` (``-`` for a root's field);
    a shaped dependency adds how it is read, e.g. ``video/raw.audio @expansion``."""
    spec = graph[feature]
    how = {d.feature: read_through(d) for d in spec.deps}
    parts = []
    for ref in graph.field_deps(feature, field):
        through = how[ref.feature]
        parts.append(str(ref) if through == "identity" else f"{ref} @{through}")
    return ", ".join(parts) or "-"


def features_view(graph: FeatureGraph) -> Table:
    """One row per feature, upstream first."""
    table = Table(title=f"{len(graph)} features (graph {short(graph.versions.graph)})")
    for name in ("feature", "ids", "fields (code version)", "reads", "version"):
        table.add_column(name, overflow="fold")
    for spec in graph:
        fields = ", ".join(f"{f.key} (v{f.code_version})" for f in spec.fields)
        table.add_row(
            spec.key,
            ", ".join(spec.id_columns),
            fields,
            ", ".join(graph.upstream(spec.key)) or "-",
            short(graph.versions.features[spec.key]),
        )
    return table


def _dep_text(dep: FeatureDep) -> str:
    shaping = []
    if dep.select is not None:
        shaping.append(f"select={list(dep.select)}")
    if dep.rename:
        shaping.append(f"rename={dict(dep.rename)}")
    if dep.filter is not None:
        shaping.append(f"filter={dep.filter!r}")
    if dep.optional:
        shaping.append("optional")
    return " ".join([dep.lineage.value, *shaping])


def describe_view(graph: FeatureGraph, feature: str) -> RenderableType:
    """Everything the definitions say about one feature."""
    spec = graph[feature]
    versions = graph.versions
    head = Text.assemble(
        (feature, "bold"),
        f"  version {short(versions.features[feature])}",
        f"  ids {', '.join(spec.id_columns)}",
    )
    parts: list[RenderableType] = [head]
    if spec.description:
        parts.append(Text(spec.description.splitlines()[0], style="italic"))
    fields = Table(title="fields", title_justify="left")
    for name in ("field", "code version", "version", "reads"):
        fields.add_column(name, overflow="fold")
    for f in spec.fields:
        ref = FieldRef(feature, f.key)
        fields.add_row(
            f.key, f.code_version, short(versions.fields[ref]), reads_text(graph, feature, f.key)
        )
    parts.append(fields)
    if spec.deps:
        deps = Table(title="upstream", title_justify="left")
        deps.add_column("feature")
        deps.add_column("read as", overflow="fold")
        for dep in spec.deps:
            deps.add_row(dep.feature, _dep_text(dep))
        parts.append(deps)
    downstream = graph.downstream(feature)
    parts.append(Text(f"read by: {', '.join(downstream) or 'nothing'}"))
    return Group(*parts)


def graph_view(graph: FeatureGraph) -> Tree:
    """The graph as a tree of features and fields, each field with the fields it reads."""
    tree = Tree(f"feature graph {short(graph.versions.graph)}")
    for spec in graph:
        node = tree.add(Text.assemble((spec.key, "bold"), f"  [{', '.join(spec.id_columns)}]"))
        for f in spec.fields:
            reads = reads_text(graph, spec.key, f.key)
            arrow = "" if reads == "-" else f"  <- {reads}"
            node.add(f"{f.key} (v{f.code_version}){arrow}")
    return tree


def feature_json(graph: FeatureGraph, feature: str) -> dict[str, Any]:
    """One feature's definitions as JSON (``features --json``, ``describe --json``)."""
    spec = graph[feature]
    versions = graph.versions
    return {
        "feature": feature,
        "id_columns": list(spec.id_columns),
        "version": versions.features[feature],
        "upstream": list(graph.upstream(feature)),
        "fields": [
            {
                "field": f.key,
                "code_version": f.code_version,
                "version": versions.fields[FieldRef(feature, f.key)],
                "reads": [str(r) for r in graph.field_deps(feature, f.key)],
            }
            for f in spec.fields
        ],
    }


def snapshots_table(store: str, found: list[Snapshot], current: str) -> Table:
    """Recorded graph snapshots, as given (newest first), marking the current definitions."""
    table = Table(title=f"graph snapshots in {store}")
    for name in ("graph version", "recorded at (UTC)", "features", ""):
        table.add_column(name)
    for s in found:
        mark = "current definitions" if s.graph_version == current else ""
        when = s.recorded_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(s.graph_version, when, str(len(s.graph)), mark)
    return table
