"""End to end: the demo's ``dagster dev`` started for real and driven over GraphQL.

The test starts ``python -m example_project.demo`` (what ``make demo`` runs) with
:class:`example_project.devserver.DevServer`: in a session of its own, on a free port, with the
Dagster instance, the clips and the store in ``tmp_path``. It materializes every asset with
``launchRun``, edits the audio of three clips, launches the scan job, lets the running
field-aware sensor request the rest, and checks from the store's write history and from
Dagster's runs that only the assets reading audio ran, on exactly those clips. Finally it stops
the server with SIGINT to the process group it started and checks that no process of that
session is left.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from example_project.assets import FEATURES, build_assets
from example_project.definitions import AUTOMATION_ENV
from example_project.devserver import DevServer
from example_project.edit import edit_audio
from example_project.media import face_boxes, generate_clips, scan_clips, spoken_text
from example_project.quality import iou, word_error_rate
from metaxy_core import DuckDBMetadataStore, IncrementCounts, columns
from metaxy_core.store.snapshots import snapshots
from metaxy_dagster import feature_graph

N = 6
CLIPS = [f"clip-{i:04d}" for i in range(N)]
EDITED = CLIPS[:3]
AUDIO_BRANCH = {"video/crop", "audio/features", "audio/transcript", "train/manifest"}
# The clips each feature writes after the audio edit of EDITED: all but the face branch.
WRITTEN_AFTER_THE_EDIT = {
    "video/raw": EDITED,
    "video/crop": EDITED,
    "vision/faces": [],
    "audio/features": EDITED,
    "audio/transcript": EDITED,
    "train/manifest": EDITED,
}
SCAN_JOB = "scan_clips_job"
SENSOR = "metaxy_sensor"
AUTOMATION_SENSOR = "metaxy_automation"
MIN_IOU = 0.7
MAX_WER = 0.15

# Generous but bounded: a cold start imports Dagster in several processes, and on a loaded
# machine (a full suite beside other jobs) loading the code location alone took over 120 s,
# and at a load average of 25 on two cores the last automated run was still going after 180 s.
START_TIMEOUT = 300.0
RUN_TIMEOUT = 300.0
SETTLE_TIMEOUT = 300.0
STOP_TIMEOUT = 60.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    assert generate_clips(tmp_path / "data", N) == CLIPS
    demo = DevServer(tmp_path, sensor=SENSOR)
    try:
        yield demo
    finally:
        if demo.process.poll() is None or demo.members():
            demo.kill()


@pytest.fixture
def automated(tmp_path: Path) -> Iterator[DevServer]:
    """The demo with declarative automation on (``metaxy_eager``) and the sensor's run requests
    off; it watches the automation sensor's ticks."""
    assert generate_clips(tmp_path / "data", N) == CLIPS
    demo = DevServer(tmp_path, sensor=AUTOMATION_SENSOR, env={AUTOMATION_ENV: "1"})
    try:
        yield demo
    finally:
        if demo.process.poll() is None or demo.members():
            demo.kill()


def _store(server: DevServer) -> DuckDBMetadataStore:
    # The same graph as the server's, for reading the store.
    graph = feature_graph(build_assets(server.data_dir))
    return DuckDBMetadataStore(graph, server.store_path)


def _written_since(store: DuckDBMetadataStore, feature: str, seq: int) -> pl.DataFrame:
    history = store.read(feature, history=True)
    return history.filter((pl.col(columns.WRITE_SEQ) > seq) & ~pl.col(columns.DELETED))


def _assert_real_outputs(store: DuckDBMetadataStore) -> None:
    """Acceptance 1: the face boxes overlap where the face truly is, in every kept frame, and
    the transcripts hold the spoken sentences (mean word error rate bounded)."""
    for path in store.read("vision/faces")["faces_path"]:
        report = json.loads(Path(path).read_text())
        truth = face_boxes(report["clip_id"])
        overlaps = [
            iou((b["x"], b["y"], b["w"], b["h"]), truth[b["frame"]]) for b in report["boxes"]
        ]
        assert len(overlaps) == report["n_frames"], report
        assert min(overlaps) >= MIN_IOU, (report["clip_id"], overlaps)
    heard = dict(store.read("audio/transcript").select("clip_id", "text").iter_rows())
    assert sorted(heard) == CLIPS
    rates = [word_error_rate(spoken_text(cid), heard[cid]) for cid in CLIPS]
    assert sum(rates) / N <= MAX_WER, (heard, rates)


def _wait_run(server: DevServer, run_id: str) -> None:
    status = server.wait_run(run_id, RUN_TIMEOUT)
    assert status == "SUCCESS", f"run {run_id} ended {status}\n{server.diagnose()}"


def _assets(run: dict[str, Any]) -> list[str]:
    return sorted("/".join(key["path"]) for key in run["assetSelection"] or [])


def test_demo_server_runs_only_the_audio_branch_after_an_audio_edit(server: DevServer) -> None:
    server.wait_ready(START_TIMEOUT)
    assert server.jobs == {"__ASSET_JOB", SCAN_JOB}

    # 1. Materialize everything over GraphQL; every clip gets computed in every asset.
    first = server.launch("__ASSET_JOB", list(FEATURES))
    _wait_run(server, first)
    before = server.wait_settled(SETTLE_TIMEOUT)
    store = _store(server)
    for feature in FEATURES:
        assert sorted(store.read(feature)["clip_id"]) == CLIPS, feature
        samples = scan_clips(server.data_dir) if feature == "video/raw" else None
        assert store.count_update(feature, samples=samples) == IncrementCounts(0, 0, 0), feature
    _assert_real_outputs(store)
    seq = store.last_write_seq()

    # 2. Edit the audio of three clips, scan, and let the sensor do the rest.
    assert edit_audio(3, server.data_dir) == EDITED
    scan = server.launch(SCAN_JOB)
    _wait_run(server, scan)
    after = server.wait_settled(SETTLE_TIMEOUT)
    known = {r["runId"] for r in before}
    new_runs = [r for r in after if r["runId"] not in known]
    assert all(r["status"] == "SUCCESS" for r in new_runs), server.diagnose()
    assert scan in {r["runId"] for r in new_runs}
    sensor_runs = [r for r in new_runs if r["runId"] != scan]

    # Only the assets that read audio ran, each on exactly the three edited clips.
    for run in sensor_runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/sensor_name"] == SENSOR
        assert len(_assets(run)) == 1
        assert (tags["metaxy/new"], tags["metaxy/stale"]) == ("0", "3"), run
    assert {_assets(r)[0] for r in sensor_runs} == AUDIO_BRANCH
    # Sets: two runs of one asset racing on the same increment would both write it; which
    # clips were written is what matters here.
    written = {
        feature: sorted(set(_written_since(store, feature, seq)["clip_id"])) for feature in FEATURES
    }
    assert written == WRITTEN_AFTER_THE_EDIT
    writers = {
        run_id
        for feature in FEATURES
        for run_id in _written_since(store, feature, seq)[columns.RUN_ID]
    }
    assert writers <= {r["runId"] for r in new_runs}
    assert store.count_update("vision/faces").total == 0
    assert [s.graph_version for s in snapshots(store)] == [store.graph.versions.graph]

    # 3. Stop by PID: SIGINT to our process group; nothing may be left behind.
    assert server.stop(STOP_TIMEOUT) == 0, server.log_tail()
    assert server.leftovers() == []


def test_declarative_automation_runs_exactly_the_audio_branch_after_an_audio_edit(
    automated: DevServer,
) -> None:
    """Acceptance 3, second half: automation conditions on, the sensor's run requests off."""
    server = automated
    server.wait_ready(START_TIMEOUT)
    first = server.launch("__ASSET_JOB", list(FEATURES))
    _wait_run(server, first)
    before = server.wait_settled(SETTLE_TIMEOUT)
    assert [r["runId"] for r in before] == [first]  # nothing left for automation to do
    store = _store(server)
    seq = store.last_write_seq()

    assert edit_audio(3, server.data_dir) == EDITED
    scan = server.launch(SCAN_JOB)
    _wait_run(server, scan)
    after = server.wait_settled(SETTLE_TIMEOUT)
    automated_runs = [r for r in after if r["runId"] not in {first, scan}]
    assert all(r["status"] == "SUCCESS" for r in automated_runs), server.diagnose()
    for run in automated_runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/sensor_name"] == AUTOMATION_SENSOR, run
    ran = [asset for run in automated_runs for asset in _assets(run)]
    assert sorted(ran) == sorted(AUDIO_BRANCH), server.diagnose()  # each once, faces never
    written = {
        feature: sorted(_written_since(store, feature, seq)["clip_id"]) for feature in FEATURES
    }
    assert written == WRITTEN_AFTER_THE_EDIT
    writers = {
        run_id
        for feature in FEATURES[1:]
        for run_id in _written_since(store, feature, seq)[columns.RUN_ID]
    }
    assert writers == {r["runId"] for r in automated_runs}
    for feature in FEATURES[1:]:
        assert store.count_update(feature) == IncrementCounts(0, 0, 0), feature
    # Every step opened the store over the code location's whole graph: one snapshot of it,
    # not one per asset's part of the graph.
    assert [s.graph_version for s in snapshots(store)] == [store.graph.versions.graph]

    assert server.stop(STOP_TIMEOUT) == 0, server.log_tail()
    assert server.leftovers() == []
