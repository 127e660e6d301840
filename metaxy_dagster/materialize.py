"""One materialization of a metaxy asset: resolve the increment, call the function on it,
prepare the rows to write and the Dagster data version they give."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
import polars as pl

from metaxy_core import (
    FeatureSpec,
    Increment,
    MetadataStore,
    columns,
    errors,
    to_polars,
    validate_ids,
)
from metaxy_core.store.failures import validate_failed
from metaxy_dagster.io_manager import MetaxyWrite
from metaxy_dagster.output import MetaxyOutput
from metaxy_dagster.partitions import MetaxyPartitions

__all__ = ["materialize"]

Call = Callable[[pl.DataFrame | None], Any]
"""Calls the user's function: with the increment, or with ``None`` for a root feature."""

_PREVIEW_FAILED = 10
"""Failed samples shown, with their messages, in a materialization's metadata."""


def materialize(
    context: dg.AssetExecutionContext,
    store: MetadataStore,
    spec: FeatureSpec,
    call: Call,
    partitions: MetaxyPartitions | None,
    resolved: Increment | None = None,
    retry_failed: bool = False,
) -> dg.Output[MetaxyWrite]:
    """Compute and prepare one run of the asset of ``spec`` (its partition only); ``resolved``
    is its increment when the caller resolved it already (a multi-asset). With
    ``retry_failed``, samples held back because they failed are computed again."""
    ids = list(spec.id_columns)
    scope = partitions.filter(context.partition_key) if partitions is not None else None
    # The store file is held only while reading or preparing, never while the user's function
    # computes (possibly for hours): other steps, sensors and checks use it meanwhile.
    key = store.graph.expected_key(spec.key)
    failed = None
    if spec.is_root:
        samples, failed = _returned(spec, key, call(None))
        increment = store.resolve_update(
            spec.key, samples=samples, filter=scope, retry_failed=retry_failed
        )
        rows = samples.join(increment.to_compute().select(ids), on=ids, how="semi")
        if failed is not None:
            rows = rows.join(failed.select(ids), on=ids, how="anti")
        deleting = increment.orphaned
    else:
        increment = (
            resolved
            if resolved is not None
            else store.resolve_update(spec.key, filter=scope, retry_failed=retry_failed)
        )
        todo = increment.to_compute()
        rows = todo.head(0).select(ids)
        if todo.height:
            rows, failed = _run(spec, call, todo, key)
        deleting = pl.concat([increment.orphaned, _replaced(increment.stale, rows, key, ids)])
    with store:
        prepared = store.prepare_write(spec.key, rows, run_id=context.run.run_id)
        data_version = store.data_version(
            spec.key, filter=scope, pending=prepared, deleting=deleting
        )
    counts = increment.counts
    changed = _changed_field_counts(increment.stale)
    n_failed = 0 if failed is None else failed.height
    context.log.info(
        f"{spec.key}: {counts.new} new, {counts.stale} stale, {counts.orphaned} orphaned samples"
        + (f" (stale by field: {changed})" if changed else "")
        + (f"; {n_failed} failed in this run" if n_failed else "")
        + (f"; {counts.failed} held back (failed before)" if counts.failed else "")
    )
    if n_failed:
        assert failed is not None
        context.log.warning(
            f"{spec.key}: {n_failed} sample(s) failed, e.g. "
            + "; ".join(f"{r[:-1]}: {r[-1]}" for r in failed.select(*key, "error").head(3).rows())
        )
    metadata: dict[str, Any] = {
        "metaxy/new": counts.new,
        "metaxy/stale": counts.stale,
        "metaxy/orphaned": counts.orphaned,
        "metaxy/failed": n_failed,
        "metaxy/failed_held_back": counts.failed,
        "metaxy/stale_by_field": dg.MetadataValue.json(changed),
        "metaxy/feature_version": store.graph.versions.features[spec.key],
        "metaxy/engine": store.engine_name,
        "dagster/row_count": prepared.height,
    }
    if n_failed or counts.failed:
        shown = failed if failed is not None and n_failed else increment.failed
        metadata["metaxy/failed_preview"] = dg.MetadataValue.md(_failed_markdown(shown, key))
    if context.has_partition_key:
        metadata["metaxy/partition"] = context.partition_key
    return dg.Output(
        MetaxyWrite(spec.key, prepared, deleting, store.graph, failed),
        data_version=dg.DataVersion(data_version),
        metadata=metadata,
    )


def _returned(
    spec: FeatureSpec, key: Sequence[str], returned: Any
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The rows and the failed samples (``None``: none reported, else checked: ``key`` columns
    and an ``error`` column) a function returned."""
    if not isinstance(returned, MetaxyOutput):
        return to_polars(returned, f"frame returned by {spec.key!r}"), None
    rows = to_polars(returned.rows, f"rows of the MetaxyOutput of {spec.key!r}")
    if returned.failed is None:
        return rows, None
    failed = to_polars(returned.failed, f"failed samples of the MetaxyOutput of {spec.key!r}")
    validate_failed(spec, key, failed)
    return rows, failed


def _failed_markdown(failed: pl.DataFrame, key: Sequence[str]) -> str:
    shown = failed.select(*key, "error").head(_PREVIEW_FAILED)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = [
        "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
        for row in shown.iter_rows()
    ]
    more = [f"\n_and {failed.height - shown.height} more_"] if failed.height > shown.height else []
    return "\n".join([header, rule, *body, *more])


def _run(
    spec: FeatureSpec,
    call: Call,
    todo: pl.DataFrame,
    key: Sequence[str],
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Call the user's function on the increment; attach the increment's provenance and change
    inputs to its rows and failed samples, joined on ``key``: the id columns, or the parent ids
    for an expansion, whose function returns the children of the parents it was given."""
    ids = list(spec.id_columns)
    result, failed = _returned(spec, key, call(todo))
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
    rows = result.join(expected, on=list(key), how="left")
    if failed is not None:
        failed = failed.drop([p for p in carried if p in failed.columns])
        failed = failed.join(expected, on=list(key), how="left")
    return rows, failed


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
