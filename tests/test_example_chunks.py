"""The chunked face pipeline of the example (expansion 1:N, aggregation N:1, hash-shard
partitions) on real MP4 files, run shard by shard by real Dagster on a DuckDB file."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl

from example_project.assets import build_resources
from example_project.chunks import CHUNK_FEATURES, build_chunk_assets, run_shards
from example_project.edit import edit_audio
from example_project.media import N_FRAMES, face_boxes, generate_clips
from example_project.quality import iou
from metaxy_core import DuckDBMetadataStore, IncrementCounts, columns
from metaxy_dagster import asset_key, feature_graph

N = 4
CLIPS = [f"clip-{i:04d}" for i in range(N)]
CHUNKS = 4  # 3.5 s of video in 1 s chunks


def _counts(results: list[dg.ExecuteInProcessResult], feature: str) -> tuple[int, int, int]:
    """(new, stale, rows written) of ``feature`` summed over the runs."""
    total = [0, 0, 0]
    for result in results:
        for event in result.get_asset_materialization_events():
            if event.asset_key == asset_key(feature):
                meta = event.materialization.metadata
                for i, name in enumerate(["metaxy/new", "metaxy/stale", "metaxy/rows_written"]):
                    value = meta[name].value
                    assert isinstance(value, int)
                    total[i] += value
    return (total[0], total[1], total[2])


def test_chunks_expand_faces_aggregate_and_an_audio_edit_reaches_only_the_chunks_audio(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    generate_clips(data, N)
    assets = build_chunk_assets(data, shards=2)
    resources = build_resources(tmp_path / "metaxy.duckdb")
    store = DuckDBMetadataStore(feature_graph(assets), tmp_path / "metaxy.duckdb")

    first = run_shards(assets, resources)
    # Each shard cut its own videos; together, every video once.
    per_shard = [_counts([r], "video/chunks")[0] for r in first[:2]]
    assert sum(per_shard) == N and all(n > 0 for n in per_shard), per_shard
    assert _counts(first, "video/chunks") == (N, 0, N * CHUNKS)  # 1 row per video -> 4 chunks
    assert _counts(first, "vision/chunk_faces") == (N * CHUNKS, 0, N * CHUNKS)
    assert _counts(first, "vision/face_tracks") == (N, 0, N)
    chunks = store.read("video/chunks")
    assert sorted(chunks.select("clip_id", "chunk_id").rows()) == [
        (c, k) for c in CLIPS for k in range(CHUNKS)
    ]
    # The aggregation: one track per video, its boxes on the true face in every kept frame.
    tracks = store.read("vision/face_tracks").sort("clip_id")
    assert tracks["clip_id"].to_list() == CLIPS
    for cid, path in tracks.select("clip_id", "track_path").iter_rows():
        boxes = json.loads(Path(path).read_text())["boxes"]
        assert [b["frame"] for b in boxes] == list(range(0, N_FRAMES, 5)), cid
        truth = face_boxes(cid)
        assert min(iou((b["x"], b["y"], b["w"], b["h"]), truth[b["frame"]]) for b in boxes) >= 0.7

    # Acceptance 2 through the expansion: a new audio track for three videos makes their
    # chunks stale in `audio` only; the face branch receives nothing.
    seq = store.last_write_seq()
    assert edit_audio(3, data) == CLIPS[:3]
    second = run_shards(assets, resources)
    assert _counts(second, "video/raw") == (0, 3, 3)
    assert _counts(second, "video/chunks") == (0, 3 * CHUNKS, 3 * CHUNKS)
    assert _counts(second, "vision/chunk_faces") == (0, 0, 0)
    assert _counts(second, "vision/face_tracks") == (0, 0, 0)
    history = store.read("video/chunks", history=True).filter(pl.col(columns.WRITE_SEQ) > seq)
    assert sorted(set(history["clip_id"])) == CLIPS[:3]
    for feature in CHUNK_FEATURES[2:]:
        assert store.read(feature, history=True).filter(pl.col(columns.WRITE_SEQ) > seq).height == 0
    for feature in CHUNK_FEATURES[1:]:
        assert store.count_update(feature) == IncrementCounts(0, 0, 0), feature
