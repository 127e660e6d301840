"""``metaxy status`` shows failed samples with their messages; ``metaxy retry`` brings them
back. On the example project, with the demo's silent clip."""

from __future__ import annotations

import json
from pathlib import Path

from example_project.media import silence_audio
from tests.test_cli import Example, fresh_env, project, run  # noqa: F401  # fixtures

SILENT = "clip-0002"
MESSAGE = "no speech in clip-0002: its audio track is silent (video.mp4)"


def _status() -> dict[str, dict[str, object]]:
    found = json.loads(run("status", "--json").stdout)
    return {s["feature"]: s for s in found["features"]}


def test_status_shows_failed_samples_and_retry_brings_them_back(project: Path) -> None:  # noqa: F811
    example = Example(project)
    silence_audio(example.data_dir, SILENT)
    example.materialize()
    found = _status()
    assert {k: s["failed"] for k, s in found.items()} == {
        "video/raw": 0,
        "audio/features": 0,
        "audio/transcript": 1,
        "video/crop": 0,
        "vision/faces": 0,
        "train/manifest": 0,
    }
    transcript = found["audio/transcript"]
    assert (transcript["stored"], transcript["new"], transcript["failures"]) == (
        5,
        0,
        {SILENT: MESSAGE},
    )
    assert found["train/manifest"]["stored"] == 5  # missing upstream, not new

    table = run("status").stdout
    assert "┃ failed ┃" in table
    assert f"failed {SILENT}: no speech in clip-0002" in table

    retried = run("retry", "audio/transcript").stdout
    assert (
        retried == "1 failed samples of audio/transcript will be computed again by its next run\n"
    )
    found = _status()
    assert (found["audio/transcript"]["new"], found["audio/transcript"]["failed"]) == (1, 0)
    assert "┃ failed ┃" not in run("status").stdout  # no failed sample: no column
    example.materialize("audio/transcript")  # still silent: it fails again
    assert _status()["audio/transcript"]["failed"] == 1
