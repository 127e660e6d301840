"""An observable source for a root: Dagster runs the root only when its sources changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metaxy_core.testing import root_samples
from metaxy_dagster import MetaxyIOManager, MetaxyStoreResource, build_root_source, metaxy_asset

IDS = ["c1", "c2", "c3"]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real instance, disposed after the test (its temporary folder with it)."""
    with dg.instance_for_test() as instance:
        yield instance


# Dagster itself reads its deprecated OpDefinition.version when it observes a source asset.
@pytest.mark.filterwarnings(
    "ignore:Property `OpDefinition.version` is deprecated:DeprecationWarning"
)
def test_an_observation_runs_the_root_only_when_its_sources_changed(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    audio = {i: f"a-{i}" for i in IDS}

    def scan() -> pl.DataFrame:
        return root_samples("clip_id", IDS, audio=[audio[i] for i in IDS])

    source = build_root_source("video/source", scan, id_columns=["clip_id"])

    @metaxy_asset(
        key="video/raw",
        id_columns=["clip_id"],
        fields=["audio"],
        deps=[source],
        automation_condition=dg.AutomationCondition.eager(),
    )
    def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return scan()

    store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"))
    resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}
    defs = dg.Definitions(assets=[source, raw], resources=resources)
    cursor = None

    def observe() -> str:
        result = dg.materialize(
            [source, raw], resources=resources, instance=instance, selection=[source.key]
        )
        (observation,) = result.asset_observations_for_node("video__source")
        assert observation.metadata["metaxy/samples"].value == len(IDS)
        return str(observation.tags["dagster/data_version"])

    def requested() -> int:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        return result.get_num_requested(raw.key)

    first = observe()
    assert dg.materialize(
        [source, raw], resources=resources, instance=instance, selection=[raw.key]
    ).success
    requested()
    assert observe() == first  # nothing changed: the same data version...
    assert requested() == 0  # ...and the root is not run
    audio["c2"] = "edited"
    assert observe() != first
    assert requested() == 1
