"""Ray Data over the store: increments read on workers, rows written back from workers, and the
example's crop and faces steps on Ray (a local Ray of 2 CPUs, one for this module)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import narwhals as nw
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import ray

from example_project.assets import build_assets, build_resources
from example_project.edit import edit_audio
from example_project.media import generate_clips
from example_project.ray_assets import RAY_WRITES, build_ray_assets
from metaxy_core import (
    DuckDBMetadataStore,
    FeatureGraph,
    HashShard,
    InMemoryMetadataStore,
    columns,
    errors,
)
from metaxy_core.integrations.ray import MetaxyDatasink, read_current, read_increment
from metaxy_core.testing import assert_same_rows
from metaxy_dagster import asset_key, feature_graph
from tests.reference import reference_graph

ROOT = Path(__file__).resolve().parent.parent
VOLATILE = [columns.RUN_ID, columns.WRITTEN_AT, columns.WRITE_SEQ]
"""Columns that differ between two writes of the same rows."""


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray of 2 CPUs for the module, shut down after; its workers import the
    example project from the repository."""
    with pytest.MonkeyPatch.context() as patch:
        path = os.environ.get("PYTHONPATH")
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), path) if p))
        if ray.is_initialized():  # left by another test of this process (e.g. a docs page)
            ray.shutdown()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def stored(store: DuckDBMetadataStore, feature: str) -> pl.DataFrame:
    return store.read(feature).drop(VOLATILE)


def raw_samples(n: int) -> pl.DataFrame:
    ids = [f"v{i:04d}" for i in range(n)]
    return pl.DataFrame(
        {
            "video_id": ids,
            "metaxy_data_version__audio": [f"a-{i}" for i in ids],
            "metaxy_data_version__frames": [f"f-{i}" for i in ids],
        }
    )


def with_raw(tmp_path: Path, name: str, graph: FeatureGraph | None = None) -> DuckDBMetadataStore:
    store = DuckDBMetadataStore(graph or reference_graph(), tmp_path / f"{name}.duckdb")
    store.write("video/raw", raw_samples(1000))
    return store


def collect(dataset: ray.data.Dataset) -> pl.DataFrame:
    """The rows of a Dataset, block by block, as one Polars frame."""
    table = pa.concat_tables(ray.get(dataset.to_arrow_refs()))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def add_length(batch: pa.Table) -> pa.Table:
    """A per-sample step: the length of each id (runs on a worker)."""
    return batch.append_column("id_chars", pc.utf8_length(batch["video_id"]))


def test_increment_computed_on_ray_is_written_as_in_process(tmp_path: Path) -> None:
    on_ray, in_process = with_raw(tmp_path, "ray"), with_raw(tmp_path, "local")
    sink = MetaxyDatasink(on_ray, "video/crop", run_id="ray-run")
    read_increment(on_ray, "video/crop", blocks=4).map_batches(
        add_length, batch_format="pyarrow"
    ).write_datasink(sink)

    increment = in_process.resolve_update("video/crop").to_compute()
    local = pl.from_arrow(add_length(increment.to_arrow()))
    in_process.write("video/crop", local, run_id="local-run")

    assert sink.rows_written == 1000
    assert len(sink.writes) == 4
    assert sorted(w.rows > 0 for w in sink.writes) == [True] * 4
    assert len({w.write_seq for w in sink.writes}) == 4  # one store write per task
    assert_same_rows(
        stored(on_ray, "video/crop"), stored(in_process, "video/crop"), by=["video_id"]
    )
    assert on_ray.read("video/crop").get_column(columns.RUN_ID).unique().to_list() == ["ray-run"]
    assert on_ray.count_update("video/crop").total == 0


@pytest.mark.parametrize(
    "scope",
    [HashShard(3, 1), nw.col("video_id") < "v0100"],
    ids=["hash-shard", "predicate"],
)
def test_a_filtered_increment_reads_exactly_its_samples(tmp_path: Path, scope: Any) -> None:
    store = with_raw(tmp_path, "store")
    expected = store.resolve_update("video/crop", filter=scope).to_compute()
    read = collect(read_increment(store, "video/crop", filter=scope, blocks=3))
    assert 0 < expected.height < 1000
    assert_same_rows(read, expected, by=["video_id"])


def test_a_root_increment_reads_the_changed_samples(tmp_path: Path) -> None:
    store = with_raw(tmp_path, "store")
    samples = raw_samples(1000).with_columns(
        pl.when(pl.col("video_id") < "v0010")
        .then(pl.lit("edited"))
        .otherwise(pl.col("metaxy_data_version__audio"))
        .alias("metaxy_data_version__audio")
    )
    read = collect(read_increment(store, "video/raw", samples=samples, blocks=2))
    assert sorted(read["video_id"]) == [f"v{i:04d}" for i in range(10)]
    assert read[columns.CHANGED_FIELDS].to_list() == [["audio"]] * 10


def test_current_rows_read_in_blocks(tmp_path: Path) -> None:
    store = with_raw(tmp_path, "store")
    dataset = read_current(store, "video/raw", filter=nw.col("video_id") >= "v0900", blocks=2)
    read = collect(dataset)
    assert_same_rows(
        read, store.read("video/raw", filter=nw.col("video_id") >= "v0900"), by=["video_id"]
    )
    assert read.height == 100


def test_a_store_of_this_process_only_is_refused() -> None:
    graph = reference_graph()
    for store in (InMemoryMetadataStore(graph), DuckDBMetadataStore(graph, ":memory:")):
        with pytest.raises(errors.StoreError, match=r"lives in this process only.*Use a store"):
            MetaxyDatasink(store, "video/crop")
        with pytest.raises(errors.StoreError, match=r"reading 'video/crop' on Ray: .* lives in"):
            read_increment(store, "video/crop")


# -- the example's assets on Ray ----------------------------------------------------------------

N_CLIPS = 1000
EDITED = 100


def counts(result: dg.ExecuteInProcessResult, feature: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == asset_key(feature):
            return {k: mat.metadata[f"metaxy/{k}"].value for k in ("new", "stale", "orphaned")}
    raise KeyError(feature)


def ray_writes(result: dg.ExecuteInProcessResult, feature: str) -> list[dict[str, Any]]:
    """The write tasks the Ray asset of ``feature`` reported ([] if it did not run)."""
    found = [
        e.asset_observation_data.asset_observation.metadata[RAY_WRITES].value
        for e in result.get_asset_observation_events()
        if e.asset_observation_data.asset_observation.asset_key == asset_key(feature)
    ]
    return [w for writes in found for w in writes]  # type: ignore[union-attr]


def test_example_on_ray_matches_in_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    generate_clips(data_dir, N_CLIPS)
    local_assets = build_assets(data_dir)[:3]  # video/raw, video/crop, vision/faces
    ray_assets = build_ray_assets(data_dir, blocks=4)
    local_path, ray_path = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    graph = feature_graph(local_assets)
    assert feature_graph(ray_assets).versions == graph.versions  # the same features
    local_store = DuckDBMetadataStore(graph, local_path)
    ray_store = DuckDBMetadataStore(graph, ray_path)

    def both() -> tuple[dg.ExecuteInProcessResult, dg.ExecuteInProcessResult]:
        local = dg.materialize(local_assets, resources=build_resources(local_path))
        on_ray = dg.materialize(ray_assets, resources=build_resources(ray_path))
        assert local.success and on_ray.success
        for feature in ("video/raw", "video/crop", "vision/faces"):
            assert counts(on_ray, feature) == counts(local, feature)
            assert_same_rows(
                stored(ray_store, feature), stored(local_store, feature), by=["clip_id"]
            )
        return local, on_ray

    _, on_ray = both()
    assert counts(on_ray, "video/crop") == {"new": N_CLIPS, "stale": 0, "orphaned": 0}
    writes = ray_writes(on_ray, "video/crop")
    assert sum(w["rows"] for w in writes) == N_CLIPS
    assert len({w["worker"] for w in writes if w["rows"]}) >= 2  # computed by 2 workers
    assert sum(w["rows"] for w in ray_writes(on_ray, "vision/faces")) == N_CLIPS

    edit_audio(EDITED, data_dir)
    faces_before = ray_store.read("vision/faces", history=True).height
    _, on_ray = both()
    assert counts(on_ray, "video/crop") == {"new": 0, "stale": EDITED, "orphaned": 0}
    assert sum(w["rows"] for w in ray_writes(on_ray, "video/crop")) == EDITED
    # The face branch reads the crop's frames only, which the audio edit left alone: pruned.
    assert counts(on_ray, "vision/faces") == {"new": 0, "stale": 0, "orphaned": 0}
    assert ray_writes(on_ray, "vision/faces") == []
    assert ray_store.read("vision/faces", history=True).height == faces_before
