"""``@metaxy_asset``: a feature and its Dagster asset, declared in one place.

The decorated function takes what a ``dagster.asset`` function takes (context, a ``Config``
named ``config``, resources by parameter, other assets as inputs) plus ``increment``: the new
and stale samples of its feature (scoped to the run's partition), with the upstream columns
and which fields changed. A root feature's function takes no increment and returns all its
samples as they are now (with a data version per field); only the new and changed ones are
written, and vanished ones are soft-deleted.

The asset carries its feature and every feature upstream of it (see
:mod:`metaxy_dagster.features`); it learns them from its ``deps``: upstream metaxy assets, or
a ``graph=`` holding the upstream features.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from metaxy_core import (
    FeatureDep,
    FeatureGraph,
    FeatureSpec,
    FieldSpec,
    errors,
    hash_parts,
    to_hex,
)
from metaxy_dagster.features import FEATURE_KEY, FINGERPRINT_KEY, graph_of, location_graph
from metaxy_dagster.io_manager import MetaxyWrite
from metaxy_dagster.materialize import materialize
from metaxy_dagster.metadata import asset_code_version, asset_key, definition_metadata
from metaxy_dagster.partitions import MetaxyPartitions
from metaxy_dagster.resource import MetaxyStoreResource

__all__ = ["metaxy_asset"]

Compute = Callable[..., Any]
Dep = dg.AssetsDefinition | dg.AssetSpec | dg.AssetKey | FeatureSpec | FeatureDep | str

INCREMENT = "increment"
"""The parameter of a downstream asset's function that receives the increment."""
KIND = "metaxy"
"""The kind of every metaxy asset; the engine resolving its increments is the other."""
DEFAULT_ENGINE = "duckdb"
"""The engine a :class:`MetaxyStoreResource` uses unless told otherwise."""

_CONTEXT_NAMES = frozenset({"context", "_context", "context_", "_"})
_REFUSED = {
    "code_version": "metaxy derives it from the feature's own definition (its fields' code "
    "versions and how it reads its upstream features); bump a field's code_version instead",
    "name": "the asset key is the feature key; set key= (e.g. key='video/crop')",
    "key_prefix": "the asset key is the feature key; set key= (e.g. key='video/crop')",
    "partitions_def": "metaxy scopes each increment to its partition; pass "
    "partitions=HashShardPartitions(n) or partitions=ColumnPartitions(column, partitions_def)",
    "io_manager_def": "metaxy assets are written by MetaxyIOManager; wire it under "
    "io_manager_key= instead",
    "dagster_type": "the output of a metaxy asset is the rows metaxy writes; describe your "
    "columns with columns= instead",
    "non_argument_deps": "list upstream assets in deps=",
    "compute_kind": "Dagster replaced it by kinds=; pass kinds={...}, added to metaxy's",
}
# dagster.asset's own keywords, and the deprecated ones it still takes through **kwargs.
_ASSET_KEYWORDS = (frozenset(inspect.signature(dg.asset).parameters) - {"compute_fn", "kwargs"}) | {
    "auto_materialize_policy",
    "legacy_freshness_policy",
    *_REFUSED,
}


def metaxy_asset(
    *,
    key: str | None = None,
    spec: FeatureSpec | None = None,
    id_columns: Sequence[str] | str | None = None,
    fields: Sequence[FieldSpec | str] | None = None,
    deps: Sequence[Dep] = (),
    graph: FeatureGraph | None = None,
    columns: Mapping[str, str] | None = None,
    partitions: MetaxyPartitions | None = None,
    group_name: str | None = None,
    store_key: str = "metaxy_store",
    io_manager_key: str = "metaxy_io_manager",
    store: MetaxyStoreResource | None = None,
    **asset_kwargs: Any,
) -> Callable[[Compute], dg.AssetsDefinition]:
    """Declare a metaxy feature and the Dagster asset that computes it.

    Args:
        key: the feature key, e.g. ``"audio/transcript"``; the asset key is its path.
        spec: a :class:`~metaxy_core.FeatureSpec` declared elsewhere, instead of key, id
            columns, fields and deps.
        id_columns: the columns identifying a sample.
        fields: the feature's fields (``FieldSpec`` or names); default one field ``default``.
        deps: what the asset reads. An upstream metaxy asset (read 1:1, or as a
            ``FeatureDep`` of the same key in ``deps`` or ``spec`` says); a ``FeatureDep`` or
            feature key whose feature another item or ``graph`` holds; any other asset or
            asset key is a plain Dagster dependency.
        graph: a :class:`~metaxy_core.FeatureGraph` holding upstream features, when they are
            not given as assets in ``deps``.
        columns: user columns the function returns, name -> type, for the column schema.
        partitions: :class:`HashShardPartitions` or :class:`ColumnPartitions`.
        group_name: the Dagster asset group.
        store_key: resource key of the :class:`MetaxyStoreResource`.
        io_manager_key: resource key of the :class:`MetaxyIOManager`.
        store: the store resource wired under ``store_key``, when it is at hand: the asset's
            kinds then name its engine (``metaxy`` and ``duckdb`` or ``polars``; default
            ``duckdb``, the resource's default). Runs use the resource under ``store_key``;
            each materialization's metadata names the engine it ran on (``metaxy/engine``).
        **asset_kwargs: any other keyword of ``dagster.asset``. ``metadata``, ``kinds`` and
            ``tags`` are merged with metaxy's, ``required_resource_keys`` gets the store's key
            added; ``code_version``, ``name``, ``key_prefix``, ``partitions_def``,
            ``io_manager_def`` and ``dagster_type`` are refused (metaxy sets them).

    The function takes ``increment`` (a Polars frame; not for a root feature) and anything a
    ``dagster.asset`` function takes; it returns a Polars, pandas or Arrow frame with the id
    columns of the samples it computed.

    Example:
        .. code-block:: python

            @metaxy_asset(key="audio/transcript", id_columns=["video_id"], deps=[raw],
                          fields=[FieldSpec(key="text", deps=[FieldDep("video/raw", "audio")])])
            def transcript(context, increment: pl.DataFrame, model: WhisperResource):
                return increment.select("video_id", text=model.transcribe(...))
    """
    _check_keywords(asset_kwargs)
    known, explicit, implied, plain_deps = _split_deps(deps, graph)
    if spec is None:
        if key is None or id_columns is None:
            raise errors.AssetDefinitionError(
                "metaxy_asset needs spec=FeatureSpec(...), or key= and id_columns=: e.g. "
                "@metaxy_asset(key='video/crop', id_columns=['video_id'], deps=[raw])."
            )
        listed = {d.feature for d in explicit}
        feature_deps = [*explicit, *(FeatureDep(k) for k in implied if k not in listed)]
        spec_kwargs: dict[str, Any] = {"key": key, "id_columns": id_columns, "deps": feature_deps}
        if fields is not None:
            spec_kwargs["fields"] = fields
        feature = FeatureSpec(**spec_kwargs)
    else:
        if key is not None or id_columns is not None or fields is not None or explicit:
            raise errors.AssetDefinitionError(
                f"metaxy_asset for {spec.key!r} got spec= and also key=, id_columns=, fields= "
                "or feature dependencies in deps=: declare the feature once, in spec= (deps= "
                "may still give upstream assets, which say what the upstream features are)."
            )
        feature = spec

    def decorate(fn: Compute) -> dg.AssetsDefinition:
        kwargs = dict(asset_kwargs)
        described = feature
        description = kwargs.pop("description", None) or (
            inspect.cleandoc(fn.__doc__) if fn.__doc__ else None
        )
        if feature.description is None and description:
            described = feature.model_copy(update={"description": description})
        feature_graph = _graph(described, known)
        metadata = definition_metadata(feature_graph, described, columns or {}, partitions)
        code_version = asset_code_version(feature_graph, described.key)
        metadata[FINGERPRINT_KEY] = to_hex(
            hash_parts(["fingerprint/v1", code_version, _source(fn)])
        )
        resource_keys = kwargs.pop("required_resource_keys", None)
        signature, call = _wrap(
            fn, described.key, described.is_root, store_key, resource_keys is not None
        )
        takes_store = store_key in _signature(fn).parameters

        def _compute(context: dg.AssetExecutionContext, **params: Any) -> dg.Output[MetaxyWrite]:
            resource = store_resource(context, params, store_key, takes_store, described.key)
            # The store over the whole code location's graph (not only what this asset sees),
            # so the writes of a code location's assets record one snapshot: its graph.
            store = resource.get_store(_location_graph(context, feature_graph))
            return materialize(
                context,
                store,
                described,
                call(context, params),
                partitions,
                retry_failed=resource.retry_failed,
            )

        _compute.__signature__ = signature  # type: ignore[attr-defined]  # read by Dagster
        _compute.__name__ = fn.__name__
        _compute.__doc__ = fn.__doc__
        _compute.__module__ = fn.__module__
        return dg.asset(
            _compute,
            key=asset_key(described.key),
            deps=[*(asset_key(d.feature) for d in described.deps), *plain_deps],
            description=described.description,
            code_version=code_version,
            metadata=_merge_metadata(described.key, metadata, kwargs.pop("metadata", None)),
            kinds={
                KIND,
                store.engine if store else DEFAULT_ENGINE,
                *(kwargs.pop("kinds", None) or ()),
            },
            group_name=group_name,
            partitions_def=partitions.partitions_def if partitions else None,
            io_manager_key=io_manager_key,
            **(
                {"required_resource_keys": {*resource_keys, store_key}}
                if resource_keys is not None
                else {}
            ),
            **kwargs,
        )

    return decorate


def store_resource(
    context: dg.AssetExecutionContext,
    params: dict[str, Any],
    store_key: str,
    takes_store: bool,
    feature: str,
) -> MetaxyStoreResource:
    """The store resource of a run, taken out of ``params`` unless the function takes it."""
    if store_key in params:
        resource = params[store_key] if takes_store else params.pop(store_key)
    else:
        resource = getattr(context.resources, store_key)
    if not isinstance(resource, MetaxyStoreResource):
        raise errors.AssetDefinitionError(
            f"asset {feature!r}: resource {store_key!r} is a {type(resource).__name__}, not a "
            f"MetaxyStoreResource; wire MetaxyStoreResource(path=...) under {store_key!r}."
        )
    return resource


def _location_graph(context: dg.AssetExecutionContext, own: FeatureGraph) -> FeatureGraph:
    """The code location's graph; ``own`` for a job run outside any repository (e.g. a job's
    ``execute_in_process``)."""
    try:
        repository = context.repository_def
    except Exception:  # Dagster's invariant check (not a public error class) when unset
        return own
    return location_graph(repository, own)


def _check_keywords(kwargs: Mapping[str, Any]) -> None:
    for name in kwargs:
        if name in _REFUSED:
            raise errors.AssetDefinitionError(
                f"metaxy_asset does not take {name}=: {_REFUSED[name]}."
            )
        if name not in _ASSET_KEYWORDS:
            raise errors.AssetDefinitionError(
                f"metaxy_asset got an unknown keyword {name}=; it takes its own keywords and "
                f"those of dagster.asset: {', '.join(sorted(_ASSET_KEYWORDS - set(_REFUSED)))}."
            )


def _split_deps(
    deps: Iterable[Dep], graph: FeatureGraph | None
) -> tuple[list[FeatureSpec], list[FeatureDep], list[str], list[Any]]:
    """(features the asset can see, feature dependencies given as such, feature keys of the
    upstream metaxy assets and specs given, plain Dagster deps)."""
    known = list(graph or ())
    explicit: list[FeatureDep] = []
    implied: list[str] = []
    plain: list[Any] = []
    for dep in deps:
        if isinstance(dep, (str, FeatureDep)):
            explicit.append(FeatureDep(dep) if isinstance(dep, str) else dep)
        elif isinstance(dep, FeatureSpec):
            known.append(dep)
            implied.append(dep.key)
        else:
            carried = _carried(dep)
            if carried:
                for feature, feature_graph in carried:
                    known.extend(feature_graph)
                    implied.append(feature)
            else:
                plain.append(dep)
    return known, explicit, list(dict.fromkeys(implied)), plain


def _carried(dep: Any) -> list[tuple[str, FeatureGraph]]:
    """(feature, graph) of each metaxy asset in ``dep``; empty when ``dep`` is not one."""
    specs = dep.specs if isinstance(dep, dg.AssetsDefinition) else [dep]
    out = []
    for spec in specs:
        graph = graph_of(spec.metadata) if isinstance(spec, dg.AssetSpec) else None
        if graph is None:
            return []
        out.append((str(spec.metadata[FEATURE_KEY]), graph))
    return out


def _graph(feature: FeatureSpec, known: Sequence[FeatureSpec]) -> FeatureGraph:
    """The graph of ``feature`` and the features it can see, validated."""
    seen = {s.key for s in known}
    for dep in feature.deps:
        if dep.feature not in seen:
            raise errors.FeatureNotFoundError(
                f"asset {feature.key!r} reads feature {dep.feature!r}, which it cannot see: "
                f"pass the upstream asset in deps= (e.g. deps=[{dep.feature.split('/')[-1]}]) "
                f"or a graph= holding {dep.feature!r}."
            )
    others = [s for s in known if s.key != feature.key]
    return FeatureGraph([*others, feature])


def _merge_metadata(
    feature: str, ours: dict[str, Any], theirs: Mapping[str, Any] | None
) -> dict[str, Any]:
    clash = sorted(k for k in theirs or {} if k.startswith("metaxy/"))
    if clash:
        raise errors.AssetDefinitionError(
            f"asset {feature!r}: metadata keys {clash} are metaxy's own; rename yours (any key "
            "that does not start with 'metaxy/')."
        )
    return {**ours, **(theirs or {})}


def _source(fn: Compute) -> str:
    """The function's source, or its compiled code where the source is not at hand."""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return code.co_code.hex() if code is not None else repr(fn)


def _signature(fn: Compute) -> inspect.Signature:
    try:
        # Real classes, not the strings of postponed annotations: Dagster resolves strings
        # against the module of the function it is given, which is ours, not the user's.
        return inspect.signature(fn, eval_str=True)
    except NameError:
        return inspect.signature(fn)


def _wrap(
    fn: Compute,
    feature: str,
    is_root: bool,
    store_key: str,
    store_by_key: bool,
    param: str = INCREMENT,
) -> tuple[inspect.Signature, Callable[[dg.AssetExecutionContext, dict[str, Any]], Any]]:
    """The signature Dagster sees (the function's, with the context first, without the
    increment (``param``) and with the store resource), and how to call the function."""
    params = list(_signature(fn).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    takes_context = (
        bool(params) and params[0].name in _CONTEXT_NAMES and params[0].kind in positional
    )
    rest = params[1:] if takes_context else params
    where = f"function {fn.__name__!r} of asset {feature!r}"
    for p in rest:
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD and p.kind is not (
            inspect.Parameter.KEYWORD_ONLY
        ):
            raise errors.AssetDefinitionError(
                f"{where} has parameter {p.name!r} that is positional-only, *args or **kwargs: "
                "Dagster passes inputs, config and resources one by one, by name; make it a "
                "normal parameter."
            )
    names = [p.name for p in rest]
    if is_root and param in names:
        raise errors.AssetDefinitionError(
            f"{where} takes {param!r}, but {feature!r} is a root feature (no deps): it "
            "returns all its samples instead. Remove the parameter, or add deps=."
        )
    if not is_root and param not in names:
        raise errors.AssetDefinitionError(
            f"{where} has no {param!r} parameter: a downstream asset receives its new and "
            f"stale samples there. Add it, e.g. def {fn.__name__}(context, {param})."
        )
    shown = [p for p in rest if p.name != param]
    if not store_by_key and store_key not in names:
        shown.append(
            inspect.Parameter(
                store_key, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=MetaxyStoreResource
            )
        )
    context = inspect.Parameter(
        "context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dg.AssetExecutionContext
    )
    # A parameter with a default may not precede one without in a signature; Dagster passes
    # everything by name, so the order of the others does not matter.
    ordered = sorted(shown, key=lambda p: p.default is not inspect.Parameter.empty)
    named = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in ordered]
    signature = inspect.Signature([context, *named], return_annotation=inspect.Signature.empty)

    def call(context: dg.AssetExecutionContext, params: dict[str, Any]) -> Callable[..., Any]:
        def run(increment: Any) -> Any:
            given = dict(params)
            if increment is not None:
                given[param] = increment
            return fn(context, **given) if takes_context else fn(**given)

        return run

    return signature, call
