"""Features belong to the definitions they are declared in: two graphs in one process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metaxy_core import FieldDep, FieldSpec, errors
from metaxy_core.testing import root_samples
from metaxy_dagster import (
    MetaxyIOManager,
    MetaxyStoreResource,
    build_metaxy_checks,
    build_metaxy_sensor,
    feature_graph,
    metaxy_asset,
)

IDS = ["a", "b", "c"]


def _location(path: Path, *, fields: list[str], reader: str) -> dg.Definitions:
    """A code location: ``video/raw`` with ``fields``, and one reader of its audio."""

    @metaxy_asset(key="video/raw", id_columns=["video_id"], fields=fields)
    def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return root_samples("video_id", IDS, **{f: [f"{f}-{i}" for i in IDS] for f in fields})

    @metaxy_asset(
        key=reader,
        id_columns=["video_id"],
        deps=[raw],
        fields=[FieldSpec(key="out", deps=[FieldDep("video/raw", ["audio"])])],
    )
    def read(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        return increment.select("video_id", out=pl.lit(reader))

    store = MetaxyStoreResource(path=str(path))
    assets = [raw, read]
    return dg.Definitions(
        assets=assets,
        asset_checks=build_metaxy_checks(assets, store=store),
        sensors=[build_metaxy_sensor(assets, store=store)],
        resources={"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)},
    )


def test_two_definitions_with_different_graphs_resolve_independently(tmp_path: Path) -> None:
    """Acceptance 2: same feature key, different declarations, one process."""
    one = _location(tmp_path / "one.duckdb", fields=["audio", "frames"], reader="audio/transcript")
    two = _location(tmp_path / "two.duckdb", fields=["audio"], reader="audio/features")

    graph_one, graph_two = feature_graph(one), feature_graph(two)
    assert graph_one.topological_order() == ("video/raw", "audio/transcript")
    assert graph_two.topological_order() == ("video/raw", "audio/features")
    assert graph_one["video/raw"].field_keys == ("audio", "frames")
    assert graph_two["video/raw"].field_keys == ("audio",)

    for defs, reader in ((one, "audio/transcript"), (two, "audio/features")):
        job = defs.resolve_implicit_global_asset_job_def()
        with dg.instance_for_test() as instance:
            assert job.execute_in_process(instance=instance).success
        store = defs.resources["metaxy_store"].get_store(feature_graph(defs))
        assert sorted(store.read(reader)["video_id"]) == IDS
        assert store.read("video/raw").columns.count("metaxy_data_version__frames") == (
            1 if reader == "audio/transcript" else 0
        )
        sensor = defs.resolve_sensor_def("metaxy_sensor")
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(instance=instance, definitions=defs)
            tick = sensor.evaluate_tick(context)
        assert tick.run_requests == []
        assert tick.skip_message == "every metaxy asset is up to date at write 2"

    # Each store holds only its own location's features.
    assert (tmp_path / "one.duckdb").exists() and (tmp_path / "two.duckdb").exists()
    other = MetaxyStoreResource(path=str(tmp_path / "one.duckdb")).get_store(graph_one)
    assert other.read("audio/transcript").height == len(IDS)

    # Mixing the two declarations of video/raw in one graph is refused, naming the feature.
    with pytest.raises(errors.DuplicateFeatureError, match="feature 'video/raw' is declared twice"):
        feature_graph([*one.assets, *two.assets])  # type: ignore[misc]


def test_an_upstream_the_asset_cannot_see_fails_at_import() -> None:
    with pytest.raises(
        errors.FeatureNotFoundError,
        match=r"asset 'video/crop' reads feature 'video/raw', which it cannot see: pass the "
        r"upstream asset in deps= \(e\.g\. deps=\[raw\]\) or a graph= holding 'video/raw'\.",
    ):

        @metaxy_asset(key="video/crop", id_columns=["video_id"], deps=["video/raw"])
        def crop(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
            return increment
