"""``@metaxy_multi_asset``: one step that computes several features.

A common multimodal shape: one decode pass over a video writes an audio feature and a frames
feature. Each feature is its own Dagster asset, with its own increment, rows, counts and data
version; the function runs once for all of them.

The function takes ``increments`` (feature key -> its new and stale samples; not for root
features) and anything a ``dagster.asset`` function takes, and returns a mapping feature key ->
frame. A sample that is in another feature's increment but not in this one's is dropped from
this one's frame (a decode pass over the union of the increments computes it for every
feature; only the features where it is new or stale write it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

from metaxy_core import FeatureGraph, FeatureSpec, errors, hash_parts, to_hex, to_polars
from metaxy_dagster.asset import (
    DEFAULT_ENGINE,
    KIND,
    Dep,
    _location_graph,
    _merge_metadata,
    _signature,
    _source,
    _split_deps,
    _wrap,
    store_resource,
)
from metaxy_dagster.features import FINGERPRINT_KEY
from metaxy_dagster.materialize import materialize
from metaxy_dagster.metadata import asset_code_version, asset_key, definition_metadata
from metaxy_dagster.partitions import MetaxyPartitions
from metaxy_dagster.resource import MetaxyStoreResource

__all__ = ["INCREMENTS", "metaxy_multi_asset"]

INCREMENTS = "increments"
"""The parameter of a downstream multi-asset's function that receives the increments."""

_SPEC_KEYWORDS = frozenset({"kinds", "tags", "owners", "automation_condition", "metadata"})
_OP_KEYWORDS = frozenset(
    {"name", "description", "retry_policy", "op_tags", "pool", "config_schema"}
)


def metaxy_multi_asset(
    *,
    specs: Sequence[FeatureSpec],
    deps: Sequence[Dep] = (),
    graph: FeatureGraph | None = None,
    columns: Mapping[str, Mapping[str, str]] | None = None,
    partitions: MetaxyPartitions | None = None,
    group_name: str | None = None,
    store_key: str = "metaxy_store",
    io_manager_key: str = "metaxy_io_manager",
    store: MetaxyStoreResource | None = None,
    required_resource_keys: set[str] | None = None,
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """Declare several metaxy features computed by one step, each its own Dagster asset.

    Args:
        specs: the features; all roots (no deps), or all downstream, none reading another.
        deps: upstream metaxy assets (or other assets), as for :func:`metaxy_asset`.
        graph: a :class:`~metaxy_core.FeatureGraph` holding upstream features.
        columns: feature key -> its user columns (name -> type), for the column schemas.
        partitions: :class:`HashShardPartitions` or :class:`ColumnPartitions`, for all.
        group_name: the Dagster asset group.
        store_key: resource key of the :class:`MetaxyStoreResource`.
        io_manager_key: resource key of the :class:`MetaxyIOManager`.
        store: the store resource, when at hand: the kinds then name its engine.
        required_resource_keys: more resources the function reads from the context.
        **kwargs: ``kinds``, ``tags``, ``owners``, ``automation_condition``, ``metadata``
            (given to every asset) and ``name``, ``description``, ``retry_policy``,
            ``op_tags``, ``pool`` (of the one step).

    Example:
        .. code-block:: python

            @metaxy_multi_asset(specs=[audio_spec, frames_spec], deps=[raw])
            def decode(context, increments: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
                todo = pl.concat([i.select("video_id") for i in increments.values()]).unique()
                audio, frames = decode_videos(todo)  # one pass over each video
                return {"video/audio": audio, "video/frames": frames}
    """
    unknown = sorted(set(kwargs) - _SPEC_KEYWORDS - _OP_KEYWORDS)
    if unknown:
        raise errors.AssetDefinitionError(
            f"metaxy_multi_asset got keywords it cannot take: {unknown}; it takes its own and "
            f"{', '.join(sorted(_SPEC_KEYWORDS | _OP_KEYWORDS))}."
        )
    keys = [s.key for s in specs]
    if not keys:
        raise errors.AssetDefinitionError("metaxy_multi_asset needs at least one spec in specs=.")
    known, explicit, _, plain_deps = _split_deps(deps, graph)
    if explicit:
        raise errors.AssetDefinitionError(
            f"metaxy_multi_asset of {keys}: declare feature dependencies in each spec's deps=; "
            "deps= here takes upstream assets (or a graph=) only."
        )
    for spec in specs:
        inner = sorted({d.feature for d in spec.deps} & set(keys))
        if inner:
            raise errors.AssetDefinitionError(
                f"feature {spec.key!r} reads {inner}, computed by the same multi-asset: one "
                "step cannot read its own outputs. Give it an asset of its own."
            )
    roots = {spec.is_root for spec in specs}
    if len(roots) > 1:
        raise errors.AssetDefinitionError(
            f"metaxy_multi_asset of {keys} mixes root features and downstream ones: a root "
            "returns all its samples, a downstream feature its increment. Split them."
        )
    is_root = roots.pop()
    feature_graph = _multi_graph(specs, known)
    columns = columns or {}

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        op_kwargs = {k: v for k, v in kwargs.items() if k in _OP_KEYWORDS}
        spec_kwargs = {k: v for k, v in kwargs.items() if k in _SPEC_KEYWORDS}
        name = op_kwargs.pop("name", fn.__name__)
        asset_specs = [
            _asset_spec(
                feature_graph, s, fn, columns, partitions, group_name, store, spec_kwargs
            ).with_io_manager_key(io_manager_key)
            for s in specs
        ]
        asset_specs = [
            a.replace_attributes(deps=[*a.deps, *plain_deps]) if plain_deps else a
            for a in asset_specs
        ]
        signature, call = _wrap(
            fn,
            ", ".join(keys),
            is_root,
            store_key,
            required_resource_keys is not None,
            INCREMENTS,
        )
        takes_store = store_key in _signature(fn).parameters

        def _compute(context: dg.AssetExecutionContext, **params: Any) -> Iterator[dg.Output[Any]]:
            resource = store_resource(context, params, store_key, takes_store, keys[0])
            metadata_store = resource.get_store(_location_graph(context, feature_graph))
            scope = partitions.filter(context.partition_key) if partitions is not None else None
            run = call(context, params)
            resolved = {}
            if is_root:
                results = _results(run(None), keys, keys)
            else:
                resolved = {
                    k: metadata_store.resolve_update(
                        k, filter=scope, retry_failed=resource.retry_failed
                    )
                    for k in keys
                }
                todo = {k: inc.to_compute() for k, inc in resolved.items()}
                busy = [k for k, t in todo.items() if t.height]
                results = _results(run(todo), keys, busy) if busy else {}
                results = _own_samples(feature_graph, results, todo)
            for spec in specs:
                out = materialize(
                    context,
                    metadata_store,
                    spec,
                    _returned(results, spec.key),
                    partitions,
                    resolved.get(spec.key),
                    retry_failed=resource.retry_failed,
                )
                yield dg.Output(
                    out.value,
                    output_name=asset_key(spec.key).to_python_identifier(),
                    data_version=out.data_version,
                    metadata=out.metadata,
                )

        _compute.__signature__ = signature  # type: ignore[attr-defined]  # read by Dagster
        _compute.__name__ = name
        _compute.__doc__ = fn.__doc__
        _compute.__module__ = fn.__module__
        return dg.multi_asset(
            specs=asset_specs,
            name=name,
            partitions_def=partitions.partitions_def if partitions else None,
            group_name=group_name,
            can_subset=False,  # one pass computes every feature
            required_resource_keys={*required_resource_keys, store_key}
            if required_resource_keys is not None
            else None,
            **op_kwargs,
        )(_compute)

    return decorate


def _returned(results: Mapping[str, pl.DataFrame], key: str) -> Callable[[Any], pl.DataFrame]:
    """What the one call returned for ``key``, as :func:`materialize` asks for it."""

    def call(_todo: Any) -> pl.DataFrame:
        return results[key]

    return call


def _multi_graph(specs: Sequence[FeatureSpec], known: Sequence[FeatureSpec]) -> FeatureGraph:
    seen = {s.key for s in known}
    for spec in specs:
        for dep in spec.deps:
            if dep.feature not in seen:
                raise errors.FeatureNotFoundError(
                    f"asset {spec.key!r} reads feature {dep.feature!r}, which it cannot see: "
                    "pass the upstream asset in deps= or a graph= holding it."
                )
    mine = {s.key for s in specs}
    return FeatureGraph([*(s for s in known if s.key not in mine), *specs])


def _asset_spec(
    graph: FeatureGraph,
    spec: FeatureSpec,
    fn: Callable[..., Any],
    columns: Mapping[str, Mapping[str, str]],
    partitions: MetaxyPartitions | None,
    group_name: str | None,
    store: MetaxyStoreResource | None,
    given: Mapping[str, Any],
) -> dg.AssetSpec:
    metadata = definition_metadata(graph, spec, columns.get(spec.key, {}), partitions)
    code_version = asset_code_version(graph, spec.key)
    metadata[FINGERPRINT_KEY] = to_hex(hash_parts(["fingerprint/v1", code_version, _source(fn)]))
    description = spec.description or (inspect.cleandoc(fn.__doc__) if fn.__doc__ else None)
    return dg.AssetSpec(
        key=asset_key(spec.key),
        deps=[asset_key(d.feature) for d in spec.deps],
        description=description,
        code_version=code_version,
        metadata=_merge_metadata(spec.key, metadata, given.get("metadata")),
        kinds={KIND, store.engine if store else DEFAULT_ENGINE, *(given.get("kinds") or ())},
        group_name=group_name,
        tags=given.get("tags"),
        owners=given.get("owners"),
        automation_condition=given.get("automation_condition"),
    )


def _results(returned: Any, keys: Sequence[str], needed: Sequence[str]) -> dict[str, pl.DataFrame]:
    """The function's mapping feature key -> frame, as Polars frames."""
    where = f"multi-asset of {list(keys)}"
    if not isinstance(returned, Mapping):
        raise TypeError(
            f"{where} returned {type(returned).__name__}; return a dict feature key -> frame, "
            f"e.g. {{{', '.join(repr(k) for k in keys)}: ...}}."
        )
    unknown = sorted(set(returned) - set(keys))
    missing = sorted(set(needed) - set(returned))
    if unknown or missing:
        raise errors.AssetDefinitionError(
            f"{where} returned frames for {sorted(returned)}: "
            + (f"{unknown} not among its features" if unknown else f"none for {missing}")
            + f". Return one frame per feature with samples to compute: {list(needed)}."
        )
    return {k: to_polars(v, f"frame returned for {k!r}") for k, v in returned.items()}


def _own_samples(
    graph: FeatureGraph, results: Mapping[str, pl.DataFrame], todo: Mapping[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """Each feature's frame without the samples that are only in other features' increments."""
    out = {}
    for key, frame in results.items():
        by = list(graph.expected_key(key))
        if any(c not in frame.columns for c in by):
            out[key] = frame  # the write names the missing id column
            continue
        others = [t.select(by) for k, t in todo.items() if k != key and set(by) <= set(t.columns)]
        elsewhere = pl.concat(others).unique() if others else frame.head(0).select(by)
        only_elsewhere = elsewhere.join(todo[key].select(by), on=by, how="anti")
        out[key] = frame.join(only_elsewhere, on=by, how="anti")
    return out
