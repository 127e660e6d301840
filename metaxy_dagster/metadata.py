"""Dagster metadata of a metaxy asset: fields, versions, how it reads its upstream features,
column schema and column lineage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from metaxy_core import FeatureGraph, FeatureSpec, columns, hash_parts, to_hex
from metaxy_dagster.features import FEATURE_KEY, GRAPH_KEY, graph_metadata, partitions_metadata
from metaxy_dagster.partitions import MetaxyPartitions

__all__ = ["asset_code_version", "asset_key", "definition_metadata"]


def asset_key(feature: str) -> dg.AssetKey:
    """The Dagster asset key of a feature: ``video/raw`` -> ``["video", "raw"]``."""
    return dg.AssetKey(feature.split("/"))


def _schema(spec: FeatureSpec, user_columns: Mapping[str, str]) -> dg.TableSchema:
    cols = [dg.TableColumn(i, "id", description="sample id") for i in spec.id_columns]
    cols += [dg.TableColumn(name, dtype) for name, dtype in user_columns.items()]
    for field in spec.fields:
        cols.append(
            dg.TableColumn(
                columns.provenance_column(field.key),
                "int64",
                description=f"hash of what field {field.key!r} was computed from",
            )
        )
        cols.append(
            dg.TableColumn(
                columns.data_version_column(field.key),
                "int64",
                description=f"version of the content of field {field.key!r}",
            )
        )
    return dg.TableSchema(columns=cols)


def _lineage(graph: FeatureGraph, spec: FeatureSpec) -> dg.TableColumnLineage:
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for field in spec.fields:
        deps[columns.provenance_column(field.key)] = [
            dg.TableColumnDep(
                asset_key=asset_key(ref.feature),
                column_name=columns.data_version_column(ref.field),
            )
            for ref in graph.field_deps(spec.key, field.key)
        ]
    return dg.TableColumnLineage(deps_by_column=deps)


def _deps(spec: FeatureSpec) -> dict[str, dict[str, Any]]:
    """How the feature reads each upstream: lineage, and any shaping that is not the default."""
    out: dict[str, dict[str, Any]] = {}
    for dep in spec.deps:
        entry: dict[str, Any] = {"lineage": dep.lineage.value}
        if dep.select is not None:
            entry["select"] = list(dep.select)
        if dep.rename:
            entry["rename"] = dict(dep.rename)
        if dep.filter is not None:
            entry["filter"] = dep.filter
        if dep.optional:
            entry["optional"] = True
        out[dep.feature] = entry
    return out


def asset_code_version(graph: FeatureGraph, feature: str) -> str:
    """The Dagster code version of a feature's asset: a hash of its own fields' recipes.

    A recipe is what a field is computed from without upstream versions (its code version and
    the upstream fields it reads, through which lineage and shaping), so the code version
    changes with the asset's own definition only; upstream changes reach it through Dagster's
    lineage, as data versions.
    """
    recipes = graph.versions.recipes
    own = sorted(f"{ref.field}={v}" for ref, v in recipes.items() if ref.feature == feature)
    return to_hex(hash_parts(["dagster-code-version/v1", feature, *own]))


def definition_metadata(
    graph: FeatureGraph,
    spec: FeatureSpec,
    user_columns: Mapping[str, str],
    partitions: MetaxyPartitions | None = None,
) -> dict[str, Any]:
    """Metadata shown on the asset's definition in the Dagster UI, and the feature graph it
    carries (see :mod:`metaxy_dagster.features`)."""
    versions = graph.versions
    fields = {
        f.key: {
            "code_version": f.code_version,
            "version": versions.fields[(spec.key, f.key)],  # type: ignore[index]
            "reads": [str(r) for r in graph.field_deps(spec.key, f.key)],
        }
        for f in spec.fields
    }
    return {
        FEATURE_KEY: spec.key,
        "metaxy/feature_version": versions.features[spec.key],
        "metaxy/id_columns": ", ".join(spec.id_columns),
        "metaxy/fields": dg.MetadataValue.json(fields),
        **({"metaxy/deps": dg.MetadataValue.json(_deps(spec))} if spec.deps else {}),
        "dagster/column_schema": _schema(spec, user_columns),
        "dagster/column_lineage": _lineage(graph, spec),
        GRAPH_KEY: graph_metadata(graph, spec.key),
        **partitions_metadata(partitions),
    }
