"""@metaxy_asset with lineage beyond 1:1, run by real Dagster on a DuckDB file.

video/raw (root) -> video/chunks (expansion: each video yields its chunks)
audio/utterances (root) -> speaker/profile (aggregation: one row per speaker)
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from metaxy_core import DuckDBMetadataStore, FeatureDep, FeatureGraph, FeatureSpec
from metaxy_core.testing import root_samples
from metaxy_dagster import MetaxyIOManager, MetaxyStoreResource, feature_graph, metaxy_asset
from metaxy_dagster.metadata import definition_metadata
from tests.dagster_reference import materialization_metadata

VIDEOS = [f"v{i}" for i in range(6)]


class Chunking:
    """Root videos a test can edit, and a chunking asset that records what it was given."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "metaxy.duckdb"
        self.frames = {v: f"f-{v}" for v in VIDEOS}
        self.chunks = {v: 4 + i for i, v in enumerate(VIDEOS)}  # 4 to 9 chunks
        self.received: list[pl.DataFrame] = []

        @metaxy_asset(key="video/raw", id_columns=["video_id"], fields=["frames"])
        def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
            ids = sorted(self.frames)
            return root_samples("video_id", ids, frames=[self.frames[v] for v in ids]).with_columns(
                path=pl.format("/videos/{}.mp4", pl.col("video_id"))
            )

        @metaxy_asset(
            spec=FeatureSpec(
                key="video/chunks",
                id_columns=["video_id", "chunk_id"],
                fields=["frames"],
                deps=[FeatureDep("video/raw", lineage="expansion", select=["path"])],
            ),
            deps=[raw],
        )
        def chunks(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
            """Split each video given into its chunks."""
            self.received.append(increment)
            parents = increment.select("video_id", "path").unique()
            counts = pl.DataFrame({"video_id": list(self.chunks), "n": list(self.chunks.values())})
            return (
                parents.join(counts, on="video_id")
                .with_columns(chunk_id=pl.int_ranges(0, pl.col("n")))
                .explode("chunk_id")
                .select("video_id", "chunk_id", start=pl.col("chunk_id") * 10)
            )

        self.assets = [raw, chunks]

    def materialize(self) -> dg.ExecuteInProcessResult:
        self.received.clear()
        store = MetaxyStoreResource(path=str(self.path))
        resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}
        result = dg.materialize(self.assets, resources=resources)
        assert result.success
        return result

    def stored(self) -> pl.DataFrame:
        return DuckDBMetadataStore(feature_graph(self.assets), self.path).read("video/chunks")

    def given(self) -> pl.DataFrame:
        return pl.concat(self.received) if self.received else pl.DataFrame()


def test_expansion_through_materialize(tmp_path: Path) -> None:
    p = Chunking(tmp_path)
    first = p.materialize()
    # The function received one row per new video (its chunks do not exist yet).
    given = p.given()
    assert sorted(given["video_id"]) == VIDEOS
    assert given["chunk_id"].null_count() == len(VIDEOS)
    assert sorted(given["path"]) == [f"/videos/{v}.mp4" for v in VIDEOS]
    assert materialization_metadata(first, "video/chunks")["metaxy/new"] == len(VIDEOS)
    stored = p.stored()
    assert stored.height == sum(p.chunks.values())
    assert set(stored.columns) >= {"video_id", "chunk_id", "start", "metaxy_provenance__frames"}

    p.materialize()
    assert p.received == []  # nothing to compute

    # One video's frames change: exactly its chunks are given, as child rows.
    p.frames["v2"] = "edited"
    p.materialize()
    given = p.given()
    assert sorted(given.select("video_id", "chunk_id").rows()) == [("v2", c) for c in range(6)]
    assert given["metaxy_changed_fields"].to_list() == [["frames"]] * 6
    p.materialize()
    assert p.received == []

    # Re-chunked into fewer chunks: the chunks the video no longer yields are deleted.
    p.frames["v2"] = "edited again"
    p.chunks["v2"] = 3
    p.materialize()
    assert sorted(p.stored().filter(pl.col("video_id") == "v2")["chunk_id"]) == [0, 1, 2]
    p.materialize()
    assert p.received == []

    # A video disappears: its chunks are orphaned and deleted.
    del p.frames["v4"]
    result = p.materialize()
    assert materialization_metadata(result, "video/chunks")["metaxy/orphaned"] == p.chunks["v4"]
    assert "v4" not in set(p.stored()["video_id"])
    assert p.stored().height == sum(n for v, n in p.chunks.items() if v != "v4")


def test_definition_metadata_shows_how_each_upstream_is_read(tmp_path: Path) -> None:
    p = Chunking(tmp_path)
    raw, chunks = p.assets
    deps = chunks.specs_by_key[chunks.key].metadata["metaxy/deps"].value
    assert deps == {"video/raw": {"lineage": "expansion", "select": ["path"]}}
    assert "metaxy/deps" not in raw.specs_by_key[raw.key].metadata  # a root reads nothing

    graph = FeatureGraph(
        [
            FeatureSpec(key="clips", id_columns=["clip_id"], fields=["audio"]),
            FeatureSpec(key="labels", id_columns=["clip_id"], fields=["label"]),
            FeatureSpec(
                key="long/clips",
                id_columns=["clip_id"],
                fields=["audio"],
                deps=[
                    FeatureDep("clips", filter="duration > 10", rename={"path": "clip_path"}),
                    FeatureDep("labels", optional=True),
                ],
            ),
        ]
    )
    shaped = definition_metadata(graph, graph["long/clips"], {})["metaxy/deps"].value
    assert shaped == {
        "clips": {
            "lineage": "identity",
            "rename": {"path": "clip_path"},
            "filter": "duration > 10",
        },
        "labels": {"lineage": "identity", "optional": True},
    }


def test_aggregation_through_materialize(tmp_path: Path) -> None:
    received: list[pl.DataFrame] = []
    speakers = {f"u{i:03d}": f"s{i % 5}" for i in range(100)}
    audio = {u: f"a-{u}" for u in speakers}

    @metaxy_asset(key="audio/utterances", id_columns=["speaker_id", "utterance_id"])
    def utterances(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "speaker_id": list(speakers.values()),
                "utterance_id": list(speakers),
                "metaxy_data_version__default": [audio[u] for u in speakers],
            }
        )

    @metaxy_asset(
        key="speaker/profile",
        id_columns=["speaker_id"],
        deps=[FeatureDep("audio/utterances", lineage="aggregation"), utterances],
    )
    def profile(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        received.append(increment)
        return increment.select("speaker_id", n=pl.col("utterance_id").list.len())

    store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"))
    resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}
    assert dg.materialize([utterances, profile], resources=resources).success
    assert sorted(received[0]["speaker_id"]) == [f"s{i}" for i in range(5)]
    received.clear()
    audio["u007"] = audio["u012"] = "edited"  # both of speaker s2: one group
    audio["u013"] = "edited"  # speaker s3
    assert dg.materialize([utterances, profile], resources=resources).success
    assert sorted(received[0]["speaker_id"]) == ["s2", "s3"]
    stored = store.get_store(feature_graph([profile])).read("speaker/profile")
    assert dict(stored.select("speaker_id", "n").iter_rows()) == {f"s{i}": 20 for i in range(5)}
