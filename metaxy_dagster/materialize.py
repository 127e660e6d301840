"""One materialization of a metaxy asset: resolve the increment, call the function on it,
prepare the rows to write and the Dagster data version they give."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
import polars as pl

from metaxy_core import FeatureSpec, MetadataStore, columns, errors
from metaxy_core.store.rows import to_polars, validate_ids
from metaxy_dagster.io_manager import MetaxyWrite
from metaxy_dagster.partitions import MetaxyPartitions

__all__ = ["materialize"]

Call = Callable[[pl.DataFrame | None], Any]
"""Calls the user's function: with the increment, or with ``None`` for a root feature."""


def materialize(
    context: dg.AssetExecutionContext,
    store: MetadataStore,
    spec: FeatureSpec,
    call: Call,
    partitions: MetaxyPartitions | None,
) -> dg.Output[MetaxyWrite]:
    """Compute and prepare one run of the asset of ``spec`` (its partition only)."""
    ids = list(spec.id_columns)
    scope = partitions.filter(context.partition_key) if partitions is not None else None
    # The store file is held only while reading or preparing, never while the user's function
    # computes (possibly for hours): other steps, sensors and checks use it meanwhile.
    if spec.is_root:
        samples = to_polars(call(None), f"samples returned by {spec.key!r}")
        increment = store.resolve_update(spec.key, samples=samples, filter=scope)
        rows = samples.join(increment.to_compute().select(ids), on=ids, how="semi")
        deleting = increment.orphaned
    else:
        increment = store.resolve_update(spec.key, filter=scope)
        todo = increment.to_compute()
        key = store.graph.expected_key(spec.key)
        rows = _run(spec, call, todo, key) if todo.height else todo.head(0).select(ids)
        deleting = pl.concat([increment.orphaned, _replaced(increment.stale, rows, key, ids)])
    with store:
        prepared = store.prepare_write(spec.key, rows, run_id=context.run.run_id)
        data_version = store.data_version(
            spec.key, filter=scope, pending=prepared, deleting=deleting
        )
    counts = increment.counts
    changed = _changed_field_counts(increment.stale)
    context.log.info(
        f"{spec.key}: {counts.new} new, {counts.stale} stale, {counts.orphaned} orphaned samples"
        + (f" (stale by field: {changed})" if changed else "")
    )
    metadata: dict[str, Any] = {
        "metaxy/new": counts.new,
        "metaxy/stale": counts.stale,
        "metaxy/orphaned": counts.orphaned,
        "metaxy/stale_by_field": dg.MetadataValue.json(changed),
        "metaxy/feature_version": store.graph.versions.features[spec.key],
        "dagster/row_count": prepared.height,
    }
    if context.has_partition_key:
        metadata["metaxy/partition"] = context.partition_key
    return dg.Output(
        MetaxyWrite(spec.key, prepared, deleting, store.graph),
        data_version=dg.DataVersion(data_version),
        metadata=metadata,
    )


def _run(
    spec: FeatureSpec,
    call: Call,
    todo: pl.DataFrame,
    key: Sequence[str],
) -> pl.DataFrame:
    """Call the user's function on the increment; attach the increment's provenance and change
    inputs, joined on ``key``: the id columns, or the parent ids for an expansion, whose
    function returns the children of the parents it was given."""
    ids = list(spec.id_columns)
    result = to_polars(call(todo), f"frame returned by {spec.key!r}")
    validate_ids(spec, result)
    carried = [
        n
        for n in todo.columns
        if n.startswith((columns.PROVENANCE + "__", columns.UPSTREAM_DATA_VERSION + "__"))
    ]
    # Every row of one parent carries the same expected columns (they come from the parent).
    expected = todo.select(*key, *carried).unique(subset=list(key), keep="first")
    unknown = result.join(expected, on=list(key), how="anti").select(ids)
    if unknown.height:
        example = unknown.head(3).rows(named=True)
        raise errors.UnknownSampleError(
            f"asset {spec.key!r} returned {unknown.height} sample(s) that are not in its "
            f"increment, e.g. {example}. Return only samples of the increment it was given"
            + (" (children of its parents)." if len(key) < len(ids) else ".")
        )
    result = result.drop([p for p in carried if p in result.columns])
    return result.join(expected, on=list(key), how="left")


def _replaced(
    stale: pl.DataFrame, rows: pl.DataFrame, key: Sequence[str], ids: Sequence[str]
) -> pl.DataFrame:
    """Stale children of an expansion that their recomputed parent no longer yields.

    A parent with at least one returned child was recomputed: its stale children that were
    not returned are gone (e.g. a re-chunked video with fewer chunks), so they are deleted. For
    other features (``key`` is all ids) this is empty.
    """
    if len(key) == len(ids) or stale.is_empty():
        return stale.head(0).select(ids)
    recomputed = stale.select(ids).join(rows.select(key).unique(), on=list(key), how="semi")
    return recomputed.join(rows.select(ids), on=list(ids), how="anti")


def _changed_field_counts(stale: pl.DataFrame) -> dict[str, int]:
    if stale.is_empty():
        return {}
    counted = stale.select(pl.col(columns.CHANGED_FIELDS).explode()).to_series().value_counts()
    return {str(k): int(v) for k, v in sorted(counted.iter_rows())}
