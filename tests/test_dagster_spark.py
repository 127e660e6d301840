"""A partitioned metaxy asset whose increment is resolved on Spark, run by real Dagster over a
Delta store (local Spark, the process's one session)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from metaxy_core import hash_string
from metaxy_core.engines.spark import local_session
from metaxy_core.store.delta import DeltaMetadataStore
from metaxy_core.testing import root_samples
from metaxy_dagster import HashShardPartitions, MetaxyIOManager, MetaxyStoreResource
from tests.dagster_reference import Calls, materialization_metadata, reference_assets
from tests.reference import reference_graph

IDS = [f"v{i:03d}" for i in range(40)]


def _samples() -> pl.DataFrame:
    return root_samples(
        "video_id", IDS, audio=[f"a{i}" for i in IDS], frames=[f"f{i}" for i in IDS]
    )


def test_partitioned_asset_resolves_its_partition_on_spark(tmp_path: Path) -> None:
    folder = tmp_path / "delta"
    store = MetaxyStoreResource(path=f"delta+file://{folder}", engine="spark")
    opened = store.get_store(reference_graph())
    assert isinstance(opened, DeltaMetadataStore) and opened.engine_name == "spark"
    calls: Calls = {}
    shards = HashShardPartitions(4)
    assets = reference_assets(_samples, calls, partitions=shards)
    resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}
    spark = local_session()
    jobs_before = len(spark.sparkContext.statusTracker().getJobIdsForGroup())

    result = dg.materialize(assets, resources=resources, partition_key="shard-2")

    assert result.success
    in_shard = sorted(i for i in IDS if hash_string(i) % 4 == 2)
    assert 0 < len(in_shard) < len(IDS)
    assert sorted(pl.concat(calls["video/crop"])["video_id"]) == in_shard
    assert materialization_metadata(result, "video/crop")["metaxy/new"] == len(in_shard)
    assert materialization_metadata(result, "video/crop")["metaxy/partition"] == "shard-2"
    assert sorted(opened.read("video/crop")["video_id"]) == in_shard
    # The increments ran as Spark jobs in the process's session.
    assert len(spark.sparkContext.statusTracker().getJobIdsForGroup()) > jobs_before

    calls.clear()
    again = dg.materialize(assets, resources=resources, partition_key="shard-2")
    assert again.success
    assert materialization_metadata(again, "video/crop")["metaxy/new"] == 0
    assert "video/crop" not in calls or sum(f.height for f in calls["video/crop"]) == 0
