"""Remake the Dagster UI screenshots of docs/quickstart.md from the running demo.

    .venv/bin/python scripts/screenshots.py            # writes docs/img/*.png

The script does what the quickstart tells a user to do, against a real ``dagster dev``:

1. starts ``python -m example_project.demo`` on a free port, with the clips, the store and the
   Dagster instance in a temporary folder (the project's own demo state is left alone);
2. materializes every asset over GraphQL (as "Materialize all" does) and waits for the sensor;
3. edits the audio of 3 clips, launches the scan job and waits until the sensor has run the
   audio branch;
4. takes headless Chromium screenshots (``apt-get install chromium``) of the asset graph before
   and after, the runs the sensor launched (only the audio branch), one of those runs, the
   transcript asset's materializations and the sensor's ticks;
5. stops the server with SIGINT to the process group it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from example_project.assets import FEATURES, GROUP  # noqa: E402
from example_project.edit import edit_audio  # noqa: E402
from example_project.media import DATA_DIR_ENV, generate_clips  # noqa: E402

CLIPS = 24
EDITED = 3
SCAN_JOB = "scan_clips_job"
SENSOR = "metaxy_sensor"
AUDIO_BRANCH = {"video/crop", "audio/features", "audio/transcript", "train/manifest"}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
TIMEOUT = 300.0
WINDOW = (1400, 900)

T = TypeVar("T")

RUNS = """
query { runsOrError(limit: 100) { ... on Runs { results {
  runId status endTime tags { key value } assetSelection { path } } } } }
"""
TICKS = """
query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {
  sensorState { ticks(limit: 10) { status timestamp } } } } }
"""
LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""
REPOSITORIES = """
query { repositoriesOrError { ... on RepositoryConnection {
  nodes { name location { name } } } } }
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(what: str, check: Callable[[], T | None], timeout: float = TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while (result := check()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return result


class Demo:
    """The demo server and the few GraphQL calls the screenshots need."""

    def __init__(self, workdir: Path, log: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        generate_clips(self.data_dir, CLIPS)
        env = dict(os.environ)
        env[DATA_DIR_ENV] = str(self.data_dir)
        env["METAXY_STORE_PATH"] = str(workdir / "metaxy.duckdb")
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "example_project.demo",
                "--port",
                str(self.port),
                "--dagster-home",
                str(workdir / "dagster_home"),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.location = self.repository = ""

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload: dict[str, Any] = json.load(response)
        if "errors" in payload:
            raise RuntimeError(payload["errors"])
        data: dict[str, Any] = payload["data"]
        return data

    def wait_ready(self) -> None:
        def loaded() -> dict[str, Any] | None:
            if self.process.poll() is not None:
                raise RuntimeError(f"the demo exited with {self.process.returncode}")
            try:
                nodes = self.query(REPOSITORIES)["repositoriesOrError"].get("nodes")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return None
            return nodes[0] if nodes else None

        node = _wait("the code location", loaded)
        self.location, self.repository = node["location"]["name"], node["name"]
        _wait("the first sensor tick", lambda: self.ticks() or None)

    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.query(RUNS)["runsOrError"]["results"]
        return runs

    def ticks(self) -> list[dict[str, Any]]:
        selector = {
            "repositoryLocationName": self.location,
            "repositoryName": self.repository,
            "sensorName": SENSOR,
        }
        sensor = self.query(TICKS, {"s": selector})["sensorOrError"]
        ticks: list[dict[str, Any]] = sensor["sensorState"]["ticks"]
        return ticks

    def launch(self, job: str, assets: Sequence[str] | None = None) -> str:
        selector: dict[str, Any] = {
            "repositoryLocationName": self.location,
            "repositoryName": self.repository,
            "jobName": job,
        }
        if assets is not None:
            selector["assetSelection"] = [{"path": a.split("/")} for a in assets]
        result = self.query(LAUNCH, {"p": {"selector": selector}})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun failed: {result}")
        run_id: str = result["run"]["runId"]
        return run_id

    def wait_settled(self) -> list[dict[str, Any]]:
        """Until no run is active and the sensor skipped a tick begun after the last run."""

        def settled() -> list[dict[str, Any]] | None:
            runs = self.runs()
            if not runs or any(r["status"] not in TERMINAL for r in runs):
                return None
            last_end = max(r["endTime"] or 0.0 for r in runs)
            if not any(
                t["status"] == "SKIPPED" and t["timestamp"] > last_end for t in self.ticks()
            ):
                return None
            return runs if len(self.runs()) == len(runs) else None

        runs = _wait("the runs and the sensor to settle", settled)
        failed = [r["runId"] for r in runs if r["status"] != "SUCCESS"]
        if failed:
            raise RuntimeError(f"runs failed: {failed}")
        return runs

    def stop(self) -> None:
        """SIGINT to the process group we started; SIGKILL it if it does not stop."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def running_demo(workdir: Path) -> Iterator[Demo]:
    demo = Demo(workdir, workdir / "dagster.log")
    try:
        demo.wait_ready()
        yield demo
    except BaseException:
        print(f"The demo's log is in {workdir / 'dagster.log'}", file=sys.stderr)
        raise
    finally:
        demo.stop()


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="(docs/img)")
    parser.add_argument(
        "--browser", default=shutil.which("chromium") or "chromium", help="Chromium binary"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="metaxy-screenshots-") as tmp,
        running_demo(Path(tmp)) as demo,
    ):
        base = demo.base
        graph = f"{base}/locations/{demo.location}/asset-groups/{GROUP}"
        print(f"demo at {base}; materializing all assets", flush=True)
        demo.launch("__ASSET_JOB", list(FEATURES))
        before = {r["runId"] for r in demo.wait_settled()}
        screenshot(args.browser, graph, out / "asset-graph.png")

        edited = edit_audio(EDITED, demo.data_dir)
        print(f"edited the audio of {', '.join(edited)}; scanning", flush=True)
        scan = demo.launch(SCAN_JOB)
        after = [r for r in demo.wait_settled() if r["runId"] not in before]
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
