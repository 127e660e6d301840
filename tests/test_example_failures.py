"""The example's silent clip: the speech model rejects it, the transcript records it as a
failed sample, the other clips go on, and it comes back once its audio is edited."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from example_project.assets import build_assets, build_resources
from example_project.demo import SILENT_CLIP
from example_project.edit import edit_audio
from example_project.media import generate_clips, silence_audio
from metaxy_core import DuckDBMetadataStore, IncrementCounts
from metaxy_dagster import asset_key, feature_graph

N = 8  # clip-0000 .. clip-0007, the last one silent as in the demo


def _metadata(result: dg.ExecuteInProcessResult, feature: str) -> dict[str, object]:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == asset_key(feature)
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_silent_clip_fails_its_transcript_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_clips(data, N)
    assert SILENT_CLIP == "clip-0007"
    silence_audio(data, SILENT_CLIP)
    assets = build_assets(data)
    resources = build_resources(tmp_path / "metaxy.duckdb")
    result = dg.materialize(assets, resources=resources)
    assert result.success
    meta = _metadata(result, "audio/transcript")
    assert (meta["metaxy/new"], meta["metaxy/failed"], meta["metaxy/rows_written"]) == (N, 1, N - 1)
    message = "no speech in clip-0007: its audio track is silent (video.mp4)"
    assert f"| clip-0007 | {message} |" in str(meta["metaxy/failed_preview"])

    store = DuckDBMetadataStore(feature_graph(assets), tmp_path / "metaxy.duckdb")
    assert store.read("audio/features").height == N  # the other steps take the silent clip
    assert store.read("audio/transcript").height == N - 1
    # Downstream, the clip is missing upstream, not new work: the manifest lists the others.
    assert store.read("train/manifest").height == N - 1
    assert store.count_update("train/manifest") == IncrementCounts(0, 0, 0)
    assert store.count_update("audio/transcript") == IncrementCounts(0, 0, 0, failed=1)

    # Run again: nothing is computed, the failure is shown as held back.
    meta = _metadata(dg.materialize(assets, resources=resources), "audio/transcript")
    assert (meta["metaxy/new"], meta["metaxy/failed"], meta["metaxy/failed_held_back"]) == (0, 0, 1)

    # A new recording of its audio brings it back, and it succeeds.
    edit_audio(N, data)
    dg.materialize(assets, resources=resources)
    assert store.read("audio/transcript").height == N
    assert store.count_update("audio/transcript") == IncrementCounts(0, 0, 0)
    assert store.read("train/manifest").height == N


def test_the_demo_generates_the_silent_clip(tmp_path: Path) -> None:
    from example_project import demo
    from example_project.media import read_audio, stream_hashes

    data = tmp_path / "data"
    demo.prepare(tmp_path / "home", data, clips=8)
    silent = read_audio(data / "clips" / SILENT_CLIP / "video.mp4")
    loud = read_audio(data / "clips" / "clip-0006" / "video.mp4")
    assert (silent.size == loud.size, bool(silent.any()), bool(loud.any())) == (True, False, True)
    # Only its audio track was silenced: its frames are those every clip-0007 has.
    generate_clips(tmp_path / "fresh", 1, start=7)
    assert (
        stream_hashes(data / "clips" / SILENT_CLIP / "video.mp4")["frames"]
        == stream_hashes(tmp_path / "fresh" / "clips" / SILENT_CLIP / "video.mp4")["frames"]
    )
