"""The example project's assets, run in process by real Dagster on real clips and a DuckDB file.

Each test materializes the six assets, changes the clips the way a user would (edit the audio,
edit the frames, remove clips) and checks, from the store and from Dagster's events and logs,
exactly which clips each asset computed.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML (a Dagster dependency) ships no stubs

from example_project import demo
from example_project.assets import FEATURES, GROUP, SpeechModel, build_assets, build_resources
from example_project.edit import edit_audio, edit_frames, remove_clips
from example_project.media import DATA_DIR_ENV, face_boxes, generate_clips, spoken_text
from example_project.quality import iou, word_error_rate
from metaxy_core import DuckDBMetadataStore, columns
from metaxy_dagster import asset_key, feature_graph
from tests.dagster_reference import materialization_metadata

N = 6
CLIPS = [f"clip-{i:04d}" for i in range(N)]
EDITED = CLIPS[:3]
AUDIO_BRANCH = ("video/crop", "audio/features", "audio/transcript", "train/manifest")
FRAMES_BRANCH = ("video/crop", "vision/faces", "train/manifest")
MIN_IOU = 0.7
MAX_WER = 0.15
_SOURCE: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def source_clips(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The six clips, generated once for the module; each test gets a copy."""
    root = tmp_path_factory.mktemp("source")
    assert generate_clips(root, N) == CLIPS
    _SOURCE[:] = [root]
    yield
    _SOURCE.clear()


class Example:
    """The example's assets over a data folder and a store file in ``tmp_path``."""

    def __init__(self, tmp_path: Path, instance: dg.DagsterInstance) -> None:
        self.data_dir = tmp_path / "data"
        self.store_path = tmp_path / "metaxy.duckdb"
        shutil.copytree(_SOURCE[0] / "clips", self.data_dir / "clips")
        self.assets = build_assets(self.data_dir)
        self.instance = instance

    def materialize(self, **kwargs: Any) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            self.assets,
            resources=build_resources(self.store_path),
            instance=self.instance,
            **kwargs,
        )
        assert result.success
        return result

    def store(self) -> DuckDBMetadataStore:
        return DuckDBMetadataStore(feature_graph(self.assets), self.store_path)

    def current(self, feature: str) -> list[str]:
        return sorted(self.store().read(feature)["clip_id"])

    def written(self, feature: str, run_id: str) -> list[str]:
        """Clips whose row of ``feature`` was written (not deleted) by run ``run_id``."""
        history = self.store().read(feature, history=True)
        rows = history.filter((pl.col(columns.RUN_ID) == run_id) & ~pl.col(columns.DELETED))
        return sorted(rows["clip_id"])

    def logged(self, result: dg.ExecuteInProcessResult, prefix: str) -> list[str]:
        """User log messages of the run that start with ``prefix``."""
        entries = self.instance.all_logs(result.run_id)
        return [e.user_message for e in entries if e.user_message.startswith(prefix)]


def counts(result: dg.ExecuteInProcessResult) -> dict[str, tuple[object, object, object]]:
    """Per feature: (new, stale, rows written)."""
    out = {}
    for feature in FEATURES:
        meta = materialization_metadata(result, feature)
        out[feature] = (meta["metaxy/new"], meta["metaxy/stale"], meta["metaxy/rows_written"])
    return out


def test_first_run_computes_every_clip_in_every_asset(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    ex = Example(tmp_path, dagster_instance)
    result = ex.materialize()
    assert counts(result) == {feature: (N, 0, N) for feature in FEATURES}
    for feature in FEATURES:
        assert ex.current(feature) == CLIPS, feature
        assert ex.written(feature, result.run_id) == CLIPS, feature
    everyone = ", ".join(CLIPS)
    assert ex.logged(result, "video/crop: computing") == [
        f"video/crop: computing {N} clip(s): {N} new, 0 stale (stale fields: none): {everyone}"
    ]

    # Each step logged its time.
    for feature in FEATURES[1:]:
        (took,) = ex.logged(result, f"{feature}: computed")
        assert re.fullmatch(rf"{feature}: computed {N} clip\(s\) in \d+\.\d\d s", took), took

    # Acceptance 1, in process: the Haar cascade found the face where it is in every kept
    # frame, and PocketSphinx heard the spoken sentences.
    for path in ex.store().read("vision/faces")["faces_path"]:
        report = json.loads(Path(path).read_text())
        truth = face_boxes(report["clip_id"])
        overlaps = [
            iou((b["x"], b["y"], b["w"], b["h"]), truth[b["frame"]]) for b in report["boxes"]
        ]
        assert len(overlaps) == report["n_frames"] == 7, report
        assert min(overlaps) >= MIN_IOU, (report["clip_id"], overlaps)
    heard = dict(ex.store().read("audio/transcript").select("clip_id", "text").iter_rows())
    rates = [word_error_rate(spoken_text(cid), heard[cid]) for cid in CLIPS]
    assert sum(rates) / N <= MAX_WER, (heard, rates)

    # Every step wrote its files, and the store points at them.
    outputs = ex.data_dir / "outputs"
    transcripts = ex.store().read("audio/transcript").sort("clip_id")
    assert transcripts["transcript_path"].to_list() == [
        str(outputs / "transcript" / f"{c}.txt") for c in CLIPS
    ]
    for path, text in transcripts.select("transcript_path", "text").iter_rows():
        assert Path(path).read_text() == text + "\n"
    for path, n_faces in (
        ex.store().read("vision/faces").select("faces_path", "n_faces").iter_rows()
    ):
        assert len(json.loads(Path(path).read_text())["boxes"]) == n_faces
    manifest = ex.store().read("train/manifest")
    assert manifest["manifest_path"].unique().to_list() == [
        str(outputs / "manifest" / f"train-{result.run_id}.jsonl")
    ]
    lines = Path(manifest["manifest_path"][0]).read_text().splitlines()
    assert [json.loads(line)["clip_id"] for line in lines] == CLIPS


def test_a_second_run_computes_nothing(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    ex = Example(tmp_path, dagster_instance)
    ex.materialize()
    again = ex.materialize()
    assert counts(again) == {feature: (0, 0, 0) for feature in FEATURES}
    assert ex.logged(again, "video/crop: computing") == []  # the function was not called
    for feature in FEATURES:
        assert ex.written(feature, again.run_id) == [], feature


def test_audio_edit_reruns_only_the_audio_branch_on_the_edited_clips(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    ex = Example(tmp_path, dagster_instance)
    first = ex.materialize()
    transcripts = dict(ex.store().read("audio/transcript").select("clip_id", "text").iter_rows())
    faces_before = ex.store().read("vision/faces")

    assert edit_audio(3, ex.data_dir) == EDITED
    result = ex.materialize()

    assert counts(result) == {
        "video/raw": (0, 3, 3),
        "video/crop": (0, 3, 3),
        "vision/faces": (0, 0, 0),
        "audio/features": (0, 3, 3),
        "audio/transcript": (0, 3, 3),
        "train/manifest": (0, 3, 3),
    }
    for feature in ("video/raw", *AUDIO_BRANCH):
        assert ex.written(feature, result.run_id) == EDITED, feature
    assert ex.written("vision/faces", result.run_id) == []
    assert materialization_metadata(result, "video/crop")["metaxy/stale_by_field"] == {"audio": 3}
    assert materialization_metadata(result, "audio/transcript")["metaxy/stale_by_field"] == {
        "text": 3
    }

    # What the functions were given: only the edited clips, stale in exactly these fields.
    edited = ", ".join(EDITED)
    assert ex.logged(result, "video/crop: computing") == [
        f"video/crop: computing 3 clip(s): 0 new, 3 stale (stale fields: audio x3): {edited}"
    ]
    assert ex.logged(result, "audio/transcript: computing") == [
        f"audio/transcript: computing 3 clip(s): 0 new, 3 stale (stale fields: text x3): {edited}"
    ]
    assert ex.logged(result, "vision/faces: computing") == []

    # The new transcripts differ exactly for the edited clips; faces were left as they were.
    after = dict(ex.store().read("audio/transcript").select("clip_id", "text").iter_rows())
    assert sorted(c for c in CLIPS if after[c] != transcripts[c]) == EDITED
    assert ex.store().read("vision/faces").equals(faces_before)
    # Cropped frames are byte-identical, so crop's frames data version (a content hash) held.
    crop_rows = ex.store().read("video/crop", history=True).filter(pl.col("clip_id") == "clip-0000")
    assert crop_rows["metaxy_data_version__frames"].n_unique() == 1
    assert crop_rows["metaxy_data_version__audio"].n_unique() == 2
    # The new manifest lists every clip, with the new transcripts.
    manifest = ex.store().read("train/manifest").sort("clip_id")
    new_file = tmp_path / "data" / "outputs" / "manifest" / f"train-{result.run_id}.jsonl"
    old_file = new_file.with_name(f"train-{first.run_id}.jsonl")
    assert manifest["manifest_path"].to_list() == [str(new_file)] * 3 + [str(old_file)] * 3
    listed = {
        row["clip_id"]: row["text"] for row in map(json.loads, new_file.read_text().splitlines())
    }
    assert listed == after


def test_frames_edit_reruns_only_the_frames_branch(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    ex = Example(tmp_path, dagster_instance)
    ex.materialize()
    assert edit_frames(2, ex.data_dir) == CLIPS[:2]
    result = ex.materialize()
    assert counts(result) == {
        "video/raw": (0, 2, 2),
        "video/crop": (0, 2, 2),
        "vision/faces": (0, 2, 2),
        "audio/features": (0, 0, 0),
        "audio/transcript": (0, 0, 0),
        "train/manifest": (0, 2, 2),
    }
    for feature in ("video/raw", *FRAMES_BRANCH):
        assert ex.written(feature, result.run_id) == CLIPS[:2], feature
    assert materialization_metadata(result, "video/crop")["metaxy/stale_by_field"] == {"frames": 2}


def test_removed_clips_are_deleted_from_every_asset(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    ex = Example(tmp_path, dagster_instance)
    ex.materialize()
    assert remove_clips(2, ex.data_dir) == CLIPS[-2:]
    result = ex.materialize()
    for feature in FEATURES:
        meta = materialization_metadata(result, feature)
        assert (meta["metaxy/orphaned"], meta["metaxy/rows_deleted"]) == (2, 2), feature
        assert ex.current(feature) == CLIPS[:-2], feature


def test_transcript_takes_its_model_by_parameter_and_run_config(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    """Acceptance 1: a metaxy asset with a resource (the model) by parameter and a Config."""
    ex = Example(tmp_path, dagster_instance)
    transcript = next(a for a in ex.assets if a.key == asset_key("audio/transcript"))
    assert transcript.required_resource_keys >= {"speech_model", "metaxy_store"}
    resources = {**build_resources(ex.store_path), "speech_model": SpeechModel(name="test-model")}
    run_config = {"ops": {"audio__transcript": {"config": {"log_text": True}}}}
    result = dg.materialize(
        ex.assets, resources=resources, run_config=run_config, instance=ex.instance
    )
    assert result.success
    texts = dict(ex.store().read("audio/transcript").select("clip_id", "text").iter_rows())
    assert ex.logged(result, "audio/transcript: clip-") == [
        f"audio/transcript: {c} [test-model]: {texts[c]}" for c in CLIPS
    ]
    # Without the config, the default (log_text=False) logs no transcript.
    edit_audio(1, ex.data_dir)
    quiet = ex.materialize()
    assert ex.logged(quiet, "audio/transcript: clip-") == []
    assert materialization_metadata(quiet, "audio/transcript")["metaxy/stale"] == 1


def test_assets_are_declared_as_dagster_users_expect(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    ex = Example(tmp_path, dagster_instance)
    by_key = {"/".join(a.key.path): a for a in ex.assets}
    assert list(by_key) == list(FEATURES)
    graph = feature_graph(ex.assets)
    for feature, asset in by_key.items():
        spec = asset.specs_by_key[asset.key]
        assert spec.group_name == GROUP
        assert {d.asset_key for d in spec.deps} == {
            asset_key(d.feature) for d in graph[feature].deps
        }
    faces = by_key["vision/faces"].specs_by_key[asset_key("vision/faces")]
    assert faces.metadata["metaxy/fields"].value["faces"]["reads"] == ["video/crop.frames"]
    manifest = by_key["train/manifest"].specs_by_key[asset_key("train/manifest")]
    assert manifest.metadata["metaxy/fields"].value["default"]["reads"] == [
        "audio/features.features",
        "audio/transcript.text",
        "vision/faces.faces",
    ]


def test_definitions_follow_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("METAXY_STORE_PATH", str(tmp_path / "store.duckdb"))
    import example_project.definitions as module

    module = importlib.reload(module)
    defs = module.defs
    assert {"/".join(k.path) for k in defs.resolve_all_asset_keys()} == set(FEATURES)
    assert module.store.path == str(tmp_path / "store.duckdb")
    schedule = defs.resolve_schedule_def("scan_clips")
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    scan = defs.resolve_job_def(schedule.job_name)
    assert scan.asset_layer.executable_asset_keys == {asset_key("video/raw")}
    sensor = defs.resolve_sensor_def("metaxy_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 5
    checks = {key.asset_key for key in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {asset_key(f) for f in FEATURES[1:]}


def test_definitions_with_declarative_automation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("METAXY_STORE_PATH", str(tmp_path / "store.duckdb"))
    monkeypatch.setenv("METAXY_EXAMPLE_AUTOMATION", "1")
    import example_project.definitions as module

    try:
        module = importlib.reload(module)
        defs = module.defs
        conditions = {
            "/".join(a.key.path): a.specs_by_key[a.key].automation_condition for a in module.assets
        }
        assert conditions.pop("video/raw") is None
        assert {c.get_label() for c in conditions.values() if c is not None} == {"metaxy_eager"}
        assert len(conditions) == len(FEATURES) - 1
        automation = defs.resolve_sensor_def("metaxy_automation")
        assert automation.default_status == dg.DefaultSensorStatus.RUNNING
        assert defs.resolve_sensor_def("metaxy_sensor").default_status == (
            dg.DefaultSensorStatus.RUNNING
        )
    finally:
        monkeypatch.delenv("METAXY_EXAMPLE_AUTOMATION")
        importlib.reload(module)


def test_demo_prepares_a_quiet_local_instance_and_the_clips(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    env = demo.prepare(home, data, clips=4)
    assert env["DAGSTER_HOME"] == str(home.resolve())
    assert env[DATA_DIR_ENV] == str(data.resolve())
    assert env["METAXY_STORE_PATH"] == str(home.resolve() / "metaxy.duckdb")
    assert sorted(p.name for p in (data / "clips").iterdir()) == CLIPS[:4]
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config == {
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
        "run_queue": {"dequeue_interval_seconds": 1},
    }
    # Existing clips are kept; a dagster.yaml the user took over is left alone.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    demo.prepare(home, data, clips=10)
    assert len(list((data / "clips").iterdir())) == 4
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    command = demo.dagster_command("127.0.0.1", 3001)
    assert command[1:] == [
        "-m", "dagster", "dev", "-m", "example_project.definitions",
        "-d", str(demo.ROOT), "-h", "127.0.0.1", "-p", "3001",
    ]  # fmt: skip
