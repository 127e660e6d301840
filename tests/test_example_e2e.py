"""End to end: the demo's ``dagster dev`` started for real and driven over GraphQL.

The test starts ``python -m example_project.demo`` (what ``make demo`` runs) in a session of its
own, on a free port, with the Dagster instance, the clips and the store in ``tmp_path``. It
materializes every asset with ``launchRun``, edits the audio of three clips, launches the scan
job, lets the running field-aware sensor request the rest, and checks from the store's write
history and from Dagster's runs that only the assets reading audio ran, on exactly those clips.
Finally it stops the server with SIGINT to the process group it started and checks that no
process of that session is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pytest

from example_project.assets import FEATURES, build_assets
from example_project.edit import edit_audio
from example_project.media import DATA_DIR_ENV, generate_clips, scan_clips
from metaxy_core import DuckDBMetadataStore, IncrementCounts, columns
from metaxy_dagster import feature_graph
from metaxy_dagster.registry import clear_features

ROOT = Path(__file__).resolve().parent.parent
N = 6
CLIPS = [f"clip-{i:04d}" for i in range(N)]
EDITED = CLIPS[:3]
AUDIO_BRANCH = {"video/crop", "audio/features", "audio/transcript", "train/manifest"}
SCAN_JOB = "scan_clips_job"
SENSOR = "metaxy_sensor"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

# Generous but bounded: a cold start imports Dagster in several processes.
START_TIMEOUT = 120.0
RUN_TIMEOUT = 180.0
SETTLE_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0

T = TypeVar("T")

RUNS_QUERY = """
query Runs {
  runsOrError(limit: 200) {
    __typename
    ... on Runs {
      results {
        runId
        status
        endTime
        tags { key value }
        assetSelection { path }
      }
    }
    ... on PythonError { message }
  }
}
"""

TICKS_QUERY = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState {
        status
        ticks(limit: 10) { status timestamp skipReason runIds error { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

REPOSITORIES_QUERY = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } pipelines { name } }
    }
    ... on PythonError { message }
  }
}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _session_members(sid: int) -> list[tuple[int, str]]:
    """(pid, command) of every live process in session ``sid`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue  # exited while we looked
        # Fields after the command name (which may hold spaces): state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append((int(entry.name), cmdline))
    return members


def _poll(
    what: str, timeout: float, check: Callable[[], T | None], diagnose: Callable[[], str]
) -> T:
    """Call ``check`` every half second until it returns something other than ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnose()}")
        time.sleep(0.5)


class DemoServer:
    """``python -m example_project.demo`` in a session of its own, and a GraphQL client for it."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.store_path = tmp_path / "metaxy.duckdb"
        self.log_path = tmp_path / "dagster.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        env = dict(os.environ)
        env[DATA_DIR_ENV] = str(self.data_dir)
        env["METAXY_STORE_PATH"] = str(self.store_path)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "example_project.demo",
                "--port",
                str(self.port),
                "--dagster-home",
                str(tmp_path / "dagster_home"),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session and process group, led by this pid
        )
        self.location = ""
        self.repository = ""

    # -- GraphQL ---------------------------------------------------------------------------------

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload: dict[str, Any] = json.load(response)
        assert "errors" not in payload, payload["errors"]
        data: dict[str, Any] = payload["data"]
        return data

    def wait_ready(self) -> None:
        """Until the code location is loaded and the daemon has ticked the sensor once."""

        def loaded() -> dict[str, Any] | None:
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited with {self.process.returncode}\n{self.log_tail()}")
            try:
                repos = self.query(REPOSITORIES_QUERY)["repositoriesOrError"]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return None
            if repos["__typename"] != "RepositoryConnection" or not repos["nodes"]:
                return None
            node: dict[str, Any] = repos["nodes"][0]
            return node

        node = _poll("the code location", START_TIMEOUT, loaded, self.log_tail)
        self.location, self.repository = node["location"]["name"], node["name"]
        assert {p["name"] for p in node["pipelines"]} == {"__ASSET_JOB", SCAN_JOB}
        _poll("the first sensor tick", START_TIMEOUT, lambda: self.ticks() or None, self.log_tail)

    def runs(self) -> list[dict[str, Any]]:
        result = self.query(RUNS_QUERY)["runsOrError"]
        assert result["__typename"] == "Runs", result
        runs: list[dict[str, Any]] = result["results"]
        return runs

    def ticks(self) -> list[dict[str, Any]]:
        selector = {
            "repositoryLocationName": self.location,
            "repositoryName": self.repository,
            "sensorName": SENSOR,
        }
        sensor = self.query(TICKS_QUERY, {"selector": selector})["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        assert sensor["sensorState"]["status"] == "RUNNING"  # running by default
        ticks: list[dict[str, Any]] = sensor["sensorState"]["ticks"]
        return ticks

    def launch(self, job: str, assets: list[str] | None = None) -> str:
        selector: dict[str, Any] = {
            "repositoryLocationName": self.location,
            "repositoryName": self.repository,
            "jobName": job,
        }
        if assets is not None:
            selector["assetSelection"] = [{"path": a.split("/")} for a in assets]
        result = self.query(LAUNCH_MUTATION, {"params": {"selector": selector}})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        run_id: str = result["run"]["runId"]
        return run_id

    def wait_run(self, run_id: str) -> None:
        def finished() -> str | None:
            status = {r["runId"]: r["status"] for r in self.runs()}[run_id]
            return status if status in TERMINAL else None

        status = _poll(f"run {run_id}", RUN_TIMEOUT, finished, self.diagnose)
        assert status == "SUCCESS", f"run {run_id} ended {status}\n{self.diagnose()}"

    def wait_settled(self) -> list[dict[str, Any]]:
        """Until no run is active and the sensor skipped a tick begun after the last run ended.

        Such a tick saw the store as every run left it and found nothing to request, so the
        pipeline is at rest. Returns every run.
        """

        def settled() -> list[dict[str, Any]] | None:
            runs = self.runs()
            if any(r["status"] not in TERMINAL for r in runs):
                return None
            last_end = max((r["endTime"] or 0.0) for r in runs)
            if not any(
                t["status"] == "SKIPPED" and t["timestamp"] > last_end for t in self.ticks()
            ):
                return None
            # A tick that ended meanwhile may have launched runs: the run list must not change.
            again = self.runs()
            return runs if {r["runId"] for r in again} == {r["runId"] for r in runs} else None

        return _poll("the sensor to settle", SETTLE_TIMEOUT, settled, self.diagnose)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(["--- dagster log (tail) ---", *text[-lines:]])

    def diagnose(self) -> str:
        try:
            state = json.dumps({"runs": self.runs(), "ticks": self.ticks()}, indent=1)
        except Exception as exc:  # the server may be the problem: show the log in any case
            state = f"(GraphQL failed: {exc!r})"
        return f"{state}\n{self.log_tail()}"

    # -- stopping --------------------------------------------------------------------------------

    def stop(self) -> int:
        """SIGINT to the process group we started, as Ctrl-C would; returns the exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        finally:
            self._log.close()

    def leftovers(self, grace: float = 15.0) -> list[tuple[int, str]]:
        """Processes still alive in the session we started, after a short grace period."""
        deadline = time.monotonic() + grace
        while (members := _session_members(self.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        return members

    def kill(self) -> None:
        """Last resort after a failure: SIGKILL each process left in our session, by pid."""
        for pid, _ in _session_members(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DemoServer]:
    assert generate_clips(tmp_path / "data", N) == CLIPS
    clear_features()
    build_assets(tmp_path / "data")  # the same graph as the server's, for reading the store
    demo = DemoServer(tmp_path)
    try:
        yield demo
    finally:
        if demo.process.poll() is None or _session_members(demo.process.pid):
            demo.kill()
        clear_features()


def _store(server: DemoServer) -> DuckDBMetadataStore:
    return DuckDBMetadataStore(feature_graph(), server.store_path)


def _written_since(store: DuckDBMetadataStore, feature: str, seq: int) -> pl.DataFrame:
    history = store.read(feature, history=True)
    return history.filter((pl.col(columns.WRITE_SEQ) > seq) & ~pl.col(columns.DELETED))


def _assets(run: dict[str, Any]) -> list[str]:
    return sorted("/".join(key["path"]) for key in run["assetSelection"] or [])


def test_demo_server_runs_only_the_audio_branch_after_an_audio_edit(server: DemoServer) -> None:
    server.wait_ready()

    # 1. Materialize everything over GraphQL; every clip gets computed in every asset.
    first = server.launch("__ASSET_JOB", list(FEATURES))
    server.wait_run(first)
    before = server.wait_settled()
    store = _store(server)
    for feature in FEATURES:
        assert sorted(store.read(feature)["clip_id"]) == CLIPS, feature
        samples = scan_clips(server.data_dir) if feature == "video/raw" else None
        assert store.count_update(feature, samples=samples) == IncrementCounts(0, 0, 0), feature
    seq = store.last_write_seq()

    # 2. Edit the audio of three clips, scan, and let the sensor do the rest.
    assert edit_audio(3, server.data_dir) == EDITED
    scan = server.launch(SCAN_JOB)
    server.wait_run(scan)
    after = server.wait_settled()
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
    assert written == {
        "video/raw": EDITED,
        "video/crop": EDITED,
        "vision/faces": [],
        "audio/features": EDITED,
        "audio/transcript": EDITED,
        "train/manifest": EDITED,
    }
    writers = {
        run_id
        for feature in FEATURES
        for run_id in _written_since(store, feature, seq)[columns.RUN_ID]
    }
    assert writers <= {r["runId"] for r in new_runs}
    assert store.count_update("vision/faces").total == 0

    # 3. Stop by PID: SIGINT to our process group; nothing may be left behind.
    assert server.stop() == 0, server.log_tail()
    assert server.leftovers() == []
