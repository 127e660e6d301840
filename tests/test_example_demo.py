"""The demo's exit paths: Dagster is stopped whatever ends the demo.

``make demo | head``: ``head`` exits after ten lines and the demo's stdout becomes a closed
pipe. A Ctrl-C then must still stop Dagster's whole process group, although the demo can no
longer print that it is stopping.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from example_project import demo
from example_project.devserver import ROOT, session_members
from example_project.media import DATA_DIR_ENV, generate_clips

# Generous but bounded: a cold start imports Dagster in several processes.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_stops_dagster_when_stdout_is_a_closed_pipe(tmp_path: Path) -> None:
    generate_clips(tmp_path / "data", 2)
    port = _free_port()
    env = dict(os.environ)
    env[DATA_DIR_ENV] = str(tmp_path / "data")
    env["METAXY_STORE_PATH"] = str(tmp_path / "metaxy.duckdb")
    log = (tmp_path / "demo.log").open("wb")
    command = [sys.executable, "-m", "example_project.demo", "--port", str(port)]
    demo = subprocess.Popen(
        [*command, "--dagster-home", str(tmp_path / "dagster_home")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,  # its own session: every process it starts is found by sid
    )
    dagster: list[int] = []
    try:
        assert demo.stdout is not None
        assert demo.stdout.readline() == b"\n"
        assert demo.stdout.readline().startswith(b"Starting Dagster on http://127.0.0.1:")
        demo.stdout.close()  # what `head` does once it has its lines

        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(port):
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()
            assert time.monotonic() < deadline, "dagster dev did not listen in time"
            time.sleep(0.5)
        dagster = [pid for pid, _ in session_members(demo.pid) if pid != demo.pid]
        assert dagster, "dagster dev runs no process"

        os.kill(demo.pid, signal.SIGINT)  # Ctrl-C in the demo's terminal
        code = demo.wait(STOP_TIMEOUT)
        assert [pid for pid in dagster if _alive(pid)] == []
        assert session_members(demo.pid) == []
        assert code == 0, (tmp_path / "demo.log").read_text()[-2000:]
    finally:
        for pid, _ in session_members(demo.pid):
            os.kill(pid, signal.SIGKILL)
        demo.wait()
        log.close()


def test_dagster_processes_of_the_demo_do_not_repeat_the_data_version_beta_warning(
    tmp_path: Path,
) -> None:
    env = demo.prepare(tmp_path / "home", tmp_path / "data", clips=1)
    step = "import dagster as dg; dg.Output(1, data_version=dg.DataVersion('x')); print('ok')"
    quiet = subprocess.run(
        [sys.executable, "-c", step], env=env, capture_output=True, text=True, check=True
    )
    assert (quiet.stdout, quiet.stderr) == ("ok\n", "")
    env.pop("PYTHONWARNINGS")
    loud = subprocess.run(
        [sys.executable, "-c", step], env=env, capture_output=True, text=True, check=True
    )
    assert "BetaWarning: Parameter `data_version` of initializer `Output.__init__`" in loud.stderr
