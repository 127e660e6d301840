"""The reference graph as metaxy assets, with functions that record what they were given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import polars as pl

from metaxy_core import FeatureSpec
from metaxy_dagster import ColumnPartitions, MetaxyPartitions, asset_key, metaxy_asset
from tests.reference import reference_specs

Calls = dict[str, list[pl.DataFrame]]


def reference_assets(
    raw_samples: Callable[[], pl.DataFrame],
    calls: Calls,
    code_versions: dict[tuple[str, str], str] | None = None,
    partitions: MetaxyPartitions | None = None,
    bad: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] | None = None,
) -> list[dg.AssetsDefinition]:
    """One asset per reference feature; ``calls[feature]`` collects each increment received."""
    specs = {s.key: s for s in reference_specs(code_versions)}
    assets: list[dg.AssetsDefinition] = []

    @metaxy_asset(spec=specs["video/raw"], partitions=partitions)
    def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
        """Scan the videos."""
        return raw_samples()

    assets.append(raw)
    by_key = {"video/raw": raw}

    def make(spec: FeatureSpec, upstream: dict[str, dg.AssetsDefinition]) -> dg.AssetsDefinition:
        # The upstream assets tell the asset what its upstream features are.
        deps = [upstream[d.feature] for d in spec.deps]

        @metaxy_asset(spec=spec, deps=deps, partitions=partitions, columns={"out": "string"})
        def step(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> Any:
            calls.setdefault(spec.key, []).append(increment)
            # A column partition's column is kept, so that downstream features have it too.
            kept = [partitions.column] if isinstance(partitions, ColumnPartitions) else []
            out = increment.select("video_id", *kept).with_columns(out=pl.lit(spec.key))
            return (bad or {}).get(spec.key, lambda f: f)(out)

        upstream[spec.key] = step
        return step

    for key in ("video/crop", "vision/faces", "audio/transcript", "train/manifest"):
        assets.append(make(specs[key], by_key))
    return assets


def materialization_metadata(result: dg.ExecuteInProcessResult, feature: str) -> dict[str, object]:
    """The metadata values of ``feature``'s (first) materialization in ``result``."""
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == asset_key(feature):
            return {k: v.value for k, v in mat.metadata.items()}
    raise KeyError(feature)
