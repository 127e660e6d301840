"""Remake the Dagster UI screenshots of docs/quickstart.md from the running demo.

    .venv/bin/python scripts/screenshots.py            # writes docs/img/*.png

The script does what the quickstart tells a user to do, against a real ``dagster dev``:

1. starts ``python -m example_project.demo`` on a free port, with the clips, the store and the
   Dagster instance in a temporary folder (the project's own demo state is left alone);
2. materializes every asset over GraphQL (as "Materialize all" does) and waits for the sensor
   (the silent clip's transcript fails, as a failed sample: the run succeeds);
3. edits the audio of 3 clips, launches the scan job and waits until the sensor has run the
   audio branch;
4. takes headless Chromium screenshots (``apt-get install chromium``) of the asset graph before
   and after, the transcript's first materialization (failed=1), the runs the sensor launched
   (only the audio branch), one of those runs, the transcript asset's materializations and the
   sensor's ticks;
5. stops the server with SIGINT to the process group it started.

Then, for the field-level staleness picture, a second demo with declarative automation on
(``METAXY_EXAMPLE_AUTOMATION=1``) and its automation sensor stopped, so the pipeline halts where
the picture is: everything materialized, the audio of 3 clips edited and scanned, only
``video/crop`` rerun. The metaxy sensor has recorded ``vision/faces`` as pruned: Dagster shows it
fresh, and the assets that read audio stale (``--only-staleness`` takes only this one).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from example_project.assets import FEATURES, GROUP  # noqa: E402
from example_project.demo import DEFAULT_CLIPS, SILENT_CLIP  # noqa: E402
from example_project.devserver import DevServer  # noqa: E402
from example_project.edit import edit_audio  # noqa: E402
from example_project.media import generate_clips, silence_audio  # noqa: E402

CLIPS = DEFAULT_CLIPS
EDITED = 3
SCAN_JOB = "scan_clips_job"
SENSOR = "metaxy_sensor"
AUDIO_BRANCH = {"video/crop", "audio/features", "audio/transcript", "train/manifest"}
TIMEOUT = 300.0
WINDOW = (1400, 900)


@contextlib.contextmanager
def running_demo(workdir: Path) -> Iterator[DevServer]:
    generate_clips(workdir / "data", CLIPS)
    silence_audio(workdir / "data", SILENT_CLIP)  # as the demo does: its transcript fails
    demo = DevServer(workdir, sensor=SENSOR)
    try:
        demo.wait_ready(TIMEOUT)
        yield demo
    except BaseException:
        print(f"The demo's log is in {demo.log_path}", file=sys.stderr)
        raise
    finally:
        demo.stop()


def wait_settled(demo: DevServer) -> list[dict[str, Any]]:
    """Every run once the pipeline is at rest; raises if any run did not succeed."""
    runs = demo.wait_settled(TIMEOUT)
    failed = [r["runId"] for r in runs if r["status"] != "SUCCESS"]
    if failed:
        raise RuntimeError(f"runs failed: {failed}")
    return runs


def screenshot(browser: str, url: str, out: Path, window: tuple[int, int] = WINDOW) -> None:
    """A headless Chromium screenshot of ``url`` once the page has rendered."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=15000",
                f"--window-size={window[0]},{window[1]}",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def _asset(run: dict[str, Any]) -> str:
    return "/".join(run["assetSelection"][0]["path"]) if run["assetSelection"] else ""


_SENSOR_ID_QUERY = """
query SensorId($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { id } }
}
"""
_STOP_SENSOR = "mutation Stop($id: String!) { stopSensor(id: $id) { __typename } }"


def field_staleness(browser: str, out: Path) -> None:
    """The asset graph after an audio edit, a scan and a rerun of crop only (see above)."""
    with tempfile.TemporaryDirectory(prefix="metaxy-screenshots-") as tmp:
        workdir = Path(tmp)
        generate_clips(workdir / "data", CLIPS)
        demo = DevServer(workdir, sensor=SENSOR, env={"METAXY_EXAMPLE_AUTOMATION": "1"})
        try:
            demo.wait_ready(TIMEOUT)
            selector = {
                "repositoryLocationName": demo.location,
                "repositoryName": demo.repository,
                "sensorName": "metaxy_automation",
            }
            sensor = demo.query(_SENSOR_ID_QUERY, {"selector": selector})["sensorOrError"]
            demo.query(_STOP_SENSOR, {"id": sensor["id"]})
            for job, assets in (("__ASSET_JOB", list(FEATURES)), (SCAN_JOB, None)):
                if job == SCAN_JOB:
                    edit_audio(EDITED, demo.data_dir)
                demo.wait_run(demo.launch(job, assets), TIMEOUT)
            demo.wait_run(demo.launch("__ASSET_JOB", ["video/crop"]), TIMEOUT)
            wait_settled(demo)  # a metaxy sensor tick after crop: faces recorded as pruned
            graph = f"{demo.base}/locations/{demo.location}/asset-groups/{GROUP}"
            screenshot(browser, graph, out / "asset-graph-field-staleness.png")
        finally:
            demo.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="(docs/img)")
    parser.add_argument(
        "--browser", default=shutil.which("chromium") or "chromium", help="Chromium binary"
    )
    parser.add_argument(
        "--only-staleness", action="store_true", help="only the field-level staleness picture"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    field_staleness(args.browser, out)
    if args.only_staleness:
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="metaxy-screenshots-") as tmp,
        running_demo(Path(tmp)) as demo,
    ):
        base = demo.base
        graph = f"{base}/locations/{demo.location}/asset-groups/{GROUP}"
        print(f"demo at {base}; materializing all assets", flush=True)
        demo.launch("__ASSET_JOB", list(FEATURES))
        before = {r["runId"] for r in wait_settled(demo)}
        screenshot(args.browser, graph, out / "asset-graph.png")
        screenshot(
            args.browser,
            f"{base}/assets/audio/transcript?view=events",
            out / "asset-transcript-failed.png",
            (1400, 1100),
        )

        edited = edit_audio(EDITED, demo.data_dir)
        print(f"edited the audio of {', '.join(edited)}; scanning", flush=True)
        scan = demo.launch(SCAN_JOB)
        after = [r for r in wait_settled(demo) if r["runId"] not in before]
        by_asset = {_asset(r): r["runId"] for r in after if r["runId"] != scan}
        print(f"the sensor ran: {', '.join(sorted(by_asset))}", flush=True)
        if set(by_asset) != AUDIO_BRANCH:
            raise RuntimeError(f"unexpected runs after the audio edit: {sorted(by_asset)}")

        transcript_run = by_asset["audio/transcript"]
        screenshot(args.browser, graph, out / "asset-graph-after-audio-edit.png")
        screenshot(args.browser, f"{base}/runs", out / "runs-after-audio-edit.png", (1400, 1400))
        screenshot(
            args.browser, f"{base}/runs/{transcript_run}?logs=computing", out / "audio-run.png"
        )
        screenshot(
            args.browser,
            f"{base}/assets/audio/transcript?view=events",
            out / "asset-transcript.png",
            (1400, 1100),
        )
        screenshot(
            args.browser, f"{base}/locations/{demo.location}/sensors/{SENSOR}", out / "sensor.png"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
