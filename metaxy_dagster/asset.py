"""``@metaxy_asset``: a feature and its Dagster asset, declared in one place.

The decorated function computes only the increment: the new and stale samples of its feature
(scoped to the run's partition), with the upstream columns and which fields changed. A root
feature's function instead returns all its samples as they are now (with a data version per
field); only the new and changed ones are written, and vanished ones are soft-deleted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

from metaxy_core import FeatureDep, FeatureSpec, FieldSpec, columns, errors
from metaxy_core.store.rows import to_polars, validate_ids
from metaxy_dagster.io_manager import MetaxyWrite
from metaxy_dagster.metadata import asset_key, definition_metadata
from metaxy_dagster.partitions import MetaxyPartitions
from metaxy_dagster.registry import feature_graph, register_feature
from metaxy_dagster.resource import MetaxyStoreResource

__all__ = ["metaxy_asset"]

Compute = Callable[..., Any]


def metaxy_asset(
    *,
    key: str | None = None,
    spec: FeatureSpec | None = None,
    id_columns: Sequence[str] | str | None = None,
    fields: Sequence[FieldSpec | str] | None = None,
    deps: Sequence[FeatureDep | str] = (),
    columns: Mapping[str, str] | None = None,
    partitions: MetaxyPartitions | None = None,
    group_name: str | None = None,
    store_key: str = "metaxy_store",
    io_manager_key: str = "metaxy_io_manager",
    **asset_kwargs: Any,
) -> Callable[[Compute], dg.AssetsDefinition]:
    """Declare a metaxy feature and the Dagster asset that computes it.

    Args:
        key: the feature key, e.g. ``"audio/transcript"``; the asset key is its path.
        spec: a :class:`~metaxy_core.FeatureSpec` declared elsewhere, instead of key, id
            columns, fields and deps.
        id_columns: the columns identifying a sample.
        fields: the feature's fields (``FieldSpec`` or names); default one field ``default``.
        deps: upstream features.
        columns: user columns the function returns, name -> type, for the column schema.
        partitions: :class:`HashShardPartitions` or :class:`ColumnPartitions`.
        group_name: the Dagster asset group.
        store_key: resource key of the :class:`MetaxyStoreResource`.
        io_manager_key: resource key of the :class:`MetaxyIOManager`.
        **asset_kwargs: passed to ``dagster.asset`` (owners, tags, automation_condition...).

    The function takes ``(context, increment)`` (``(context)`` for a root feature) and returns
    a Polars, pandas or Arrow frame with the id columns of the samples it computed.

    Example:
        .. code-block:: python

            @metaxy_asset(key="audio/transcript", id_columns=["video_id"], deps=["video/raw"],
                          fields=[FieldSpec(key="text", deps=[FieldDep("video/raw", "audio")])])
            def transcript(context, increment: pl.DataFrame) -> pl.DataFrame:
                return increment.select("video_id", text=...)
    """
    if spec is None:
        if key is None or id_columns is None:
            raise TypeError("metaxy_asset needs spec=FeatureSpec(...) or key= and id_columns=.")
        spec_kwargs: dict[str, Any] = {"key": key, "id_columns": id_columns, "deps": deps}
        if fields is not None:
            spec_kwargs["fields"] = fields
        feature = FeatureSpec(**spec_kwargs)
    else:
        feature = spec

    def decorate(fn: Compute) -> dg.AssetsDefinition:
        described = feature
        if feature.description is None and fn.__doc__:
            described = feature.model_copy(update={"description": inspect.cleandoc(fn.__doc__)})
        register_feature(described, partitions)
        # Upstream features are declared first (module order), so the versions are known here
        # and the asset always has a code version; an unknown upstream fails at import.
        graph = feature_graph()
        metadata = definition_metadata(graph, described, columns or {})
        code_version = graph.versions.features[described.key]

        @dg.asset(  # type: ignore[untyped-decorator]  # dagster types its decorator loosely
            key=asset_key(described.key),
            deps=[asset_key(d.feature) for d in described.deps],
            description=described.description,
            code_version=code_version,
            metadata=metadata,
            kinds={"metaxy", "polars"},
            group_name=group_name,
            partitions_def=partitions.partitions_def if partitions else None,
            io_manager_key=io_manager_key,
            required_resource_keys={store_key},
            **asset_kwargs,
        )
        # No annotation on context: Dagster checks it at runtime, and postponed annotations are
        # strings it does not recognize.
        def _asset(context) -> dg.Output[MetaxyWrite]:  # type: ignore[no-untyped-def]
            resource: MetaxyStoreResource = getattr(context.resources, store_key)
            return _materialize(context, resource, described, fn, partitions)

        assert isinstance(_asset, dg.AssetsDefinition)
        return _asset

    return decorate


def _materialize(
    context: dg.AssetExecutionContext,
    resource: MetaxyStoreResource,
    spec: FeatureSpec,
    fn: Compute,
    partitions: MetaxyPartitions | None,
) -> dg.Output[MetaxyWrite]:
    store = resource.get_store()
    ids = list(spec.id_columns)
    scope = partitions.filter(context.partition_key) if partitions is not None else None
    # The store file is held only while reading or preparing, never while the user's function
    # computes (possibly for hours): other steps, sensors and checks use it meanwhile.
    if spec.is_root:
        samples = to_polars(fn(context), f"samples returned by {spec.key!r}")
        increment = store.resolve_update(spec.key, samples=samples, filter=scope)
        rows = samples.join(increment.to_compute().select(ids), on=ids, how="semi")
        deleting = increment.orphaned
    else:
        increment = store.resolve_update(spec.key, filter=scope)
        todo = increment.to_compute()
        key = store.graph.expected_key(spec.key)
        rows = _run(context, spec, fn, todo, key) if todo.height else todo.head(0).select(ids)
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
        MetaxyWrite(spec.key, prepared, deleting),
        data_version=dg.DataVersion(data_version),
        metadata=metadata,
    )


def _run(
    context: dg.AssetExecutionContext,
    spec: FeatureSpec,
    fn: Compute,
    todo: pl.DataFrame,
    key: Sequence[str],
) -> pl.DataFrame:
    """Call the user's function on the increment; attach the increment's provenance and change
    inputs, joined on ``key``: the id columns, or the parent ids for an expansion, whose
    function returns the children of the parents it was given."""
    ids = list(spec.id_columns)
    result = to_polars(fn(context, todo), f"frame returned by {spec.key!r}")
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
