"""Start the example project in ``dagster dev`` (``make demo``, ``python -m example_project.demo``).

1. Generates the example clips if the data folder has none (``$METAXY_EXAMPLE_DATA``, default
   ``example_project/data``).
2. Uses a project-local Dagster instance (``example_project/.dagster_home`` unless
   ``--dagster-home`` says otherwise) whose ``dagster.yaml`` turns telemetry and the first-run
   pop-up off, and keeps the metadata store there (``metaxy.duckdb``) unless
   ``$METAXY_STORE_PATH`` is set.
3. Runs ``dagster dev -m example_project.definitions`` on 127.0.0.1 in its own process group and
   waits for it. Ctrl-C (SIGINT) or SIGTERM stops Dagster cleanly: the demo sends one SIGINT to
   the whole group, as a terminal would; a second signal kills the group. Whatever ends the
   demo (a signal, an error, a closed terminal or pipe: ``make demo | head``), Dagster's group
   is stopped before the demo exits.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from example_project.definitions import STORE_PATH_ENV
from example_project.media import (
    DATA_DIR_ENV,
    clip_id,
    default_data_dir,
    generate_clips,
    list_clips,
    silence_audio,
)

__all__ = ["DAGSTER_YAML", "DEFAULT_CLIPS", "SILENT_CLIP", "dagster_command", "main", "prepare"]

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the working directory of the code location."""
DEFAULT_HOME = Path(__file__).resolve().parent / ".dagster_home"
DEFAULT_CLIPS = 12
"""Clips generated when the data folder has none."""
SILENT_CLIP = clip_id(7)
"""The generated clip whose audio track is silent: the speech model rejects it, and the
transcript records it as a failed sample (see docs/quickstart.md)."""
_SUPERSEDED = "Function `dev_command` is superseded"
_BETA_DATA_VERSION = "Parameter `data_version` of initializer `Output.__init__` is currently"
"""Dagster's BetaWarning for ``Output(data_version=...)``, which every metaxy asset step passes:
repeated on every step, it would bury the demo's own logs."""
_STOP_TIMEOUT = 30.0
"""Seconds Dagster gets to shut down after the SIGINT before its group is killed."""
_HEADER = "# Written by `python -m example_project.demo`"
DAGSTER_YAML = f"""\
{_HEADER}: a local instance for the example project.
# Delete this header line to keep your own changes: the demo then leaves the file alone.
telemetry:
  enabled: false
nux:
  enabled: false
run_queue:
  dequeue_interval_seconds: 1
"""
"""The instance configuration: no telemetry, no first-run pop-up, queued runs start at once."""


def prepare(dagster_home: Path, data_dir: Path, clips: int) -> dict[str, str]:
    """Create the instance folder and the clips if missing; returns the environment to run in."""
    dagster_home = dagster_home.resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists() or config.read_text().startswith(_HEADER):
        config.write_text(DAGSTER_YAML)
    if not list_clips(data_dir):
        written = generate_clips(data_dir, clips)
        print(f"Generated {len(written)} example clips in {data_dir}", flush=True)
        if SILENT_CLIP in written:
            silence_audio(data_dir, SILENT_CLIP)
            print(f"{SILENT_CLIP} has an empty audio track: its transcript fails", flush=True)
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(dagster_home)
    env[DATA_DIR_ENV] = str(data_dir.resolve())
    env.setdefault(STORE_PATH_ENV, str(dagster_home / "metaxy.duckdb"))
    # `dagster dev` points to `dg dev`, which lives in another package (dagster-dg-cli) that the
    # demo does not need; keep that notice out of the demo's first screen.
    # Message filters, not `ignore::dagster.BetaWarning`: a category filter in PYTHONWARNINGS
    # would import Dagster at the start of every Python process of the demo.
    quiet = [f"ignore:{_SUPERSEDED}", f"ignore:{_BETA_DATA_VERSION}"]
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), *quiet) if w)
    return env


def dagster_command(host: str, port: int) -> list[str]:
    """The ``dagster dev`` command line serving the example's code location."""
    return [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "example_project.definitions",
        "-d",
        str(ROOT),
        "-h",
        host,
        "-p",
        str(port),
    ]


def _python() -> str:
    """This interpreter, as a user would type it from the repository root."""
    executable = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(executable.relative_to(ROOT))
    return "python"


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _say(message: str) -> None:
    """Print to stdout; once stdout is a closed pipe, say nothing more (never raise)."""
    try:
        print(message, flush=True)
    except OSError:  # BrokenPipeError, or EIO from a closed terminal
        # Point stdout at /dev/null so that the flush at interpreter exit does not fail too.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; ``False`` if the group has no process left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    """Stop whatever is left of ``child``'s process group: SIGINT, then SIGKILL after a while."""
    if child.poll() is None and _signal_group(child.pid, signal.SIGINT):
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(_STOP_TIMEOUT)
    # The leader may be gone while processes it started are not: the group outlives it.
    _signal_group(child.pid, signal.SIGKILL)
    child.wait()


def _run(command: Sequence[str], env: dict[str, str]) -> int:
    """Run ``command`` in its own process group; forward SIGINT and SIGTERM to that group."""
    # A group of its own: a terminal's Ctrl-C reaches only this process, which then signals
    # Dagster's whole group exactly once (two SIGINTs would cut Dagster's own shutdown short).
    group: dict[str, Any] = (
        {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    )
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, **group)
    signals = 0

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        # Signal first, then talk: printing can fail (stdout a closed pipe), stopping must not.
        if signals == 1:
            _signal_group(child.pid, signal.SIGINT)
            _say("\nStopping Dagster (press Ctrl-C again to kill it)...")
        else:
            _signal_group(child.pid, signal.SIGKILL)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        try:
            _stop_group(child)  # still forwarding: a Ctrl-C meanwhile kills the group
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code of ``dagster dev``."""
    parser = argparse.ArgumentParser(
        prog="python -m example_project.demo",
        description="Start the example project in `dagster dev`.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="webserver host (127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="webserver port (3000)")
    parser.add_argument(
        "--clips",
        type=int,
        default=DEFAULT_CLIPS,
        help=f"clips to generate when the data folder has none ({DEFAULT_CLIPS})",
    )
    parser.add_argument(
        "--dagster-home",
        type=Path,
        default=DEFAULT_HOME,
        help="the Dagster instance folder (example_project/.dagster_home)",
    )
    args = parser.parse_args(argv)
    if not _port_free(args.host, args.port):
        print(
            f"Port {args.port} on {args.host} is in use (another `dagster dev`?). Stop it, or "
            "pick another port: make demo DEMO_ARGS='--port 3001'.",
            file=sys.stderr,
        )
        return 1
    data_dir = default_data_dir()
    env = prepare(args.dagster_home, data_dir, args.clips)
    url = f"http://{args.host}:{args.port}"
    _say(
        f"\nStarting Dagster on {url}  (Ctrl-C to stop)\n"
        f"  clips:      {env[DATA_DIR_ENV]}\n"
        f"  metadata:   {env[STORE_PATH_ENV]}\n"
        f"  instance:   {env['DAGSTER_HOME']}\n"
        "Materialize all assets from the UI, then edit some audio and scan again:\n"
        f"  {_python()} -m example_project.edit audio --count 3\n"
        "The walk-through: docs/quickstart.md\n"
    )
    return _run(dagster_command(args.host, args.port), env)


if __name__ == "__main__":
    sys.exit(main())
