"""Running benchmark children: fresh subprocesses on fresh store copies, and the peer's venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
WORK: Final = ROOT / "bench" / "work"
PEER_RUNNER: Final = ROOT / "bench" / "peer" / "metaxy_peer.py"
PEER_REQUIREMENTS: Final = "requirements-metaxy-0.1.11.txt"
DEFAULT_PEER_PYTHON: Final = ROOT / ".venv-peer" / "bin" / "python"


class ChildError(RuntimeError):
    """A child process failed; the message holds its exit code and the end of its stderr."""


@dataclass(frozen=True)
class ChildResult:
    """The last JSON line a child printed, and its peak RSS as the kernel saw it."""

    data: dict[str, Any]
    maxrss_mb: float


def run_child(cmd: list[str], log: Path, *, expect_json: bool = True) -> ChildResult:
    """Run ``cmd`` from the repository root; stderr is appended to ``log``.

    With ``expect_json``, the child's last stdout line starting with ``{`` is its result.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as err:
        err.write(f"\n$ {' '.join(cmd)}\n".encode())
        err.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child alone
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        killed = " (killed by a signal; out of memory?)" if code < 0 else ""
        raise ChildError(f"exit code {code}{killed}: {' '.join(cmd)}\n{tail}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not expect_json:
        return ChildResult({}, round(usage.ru_maxrss / 1024, 1))
    if not lines:
        raise ChildError(f"no JSON line on stdout: {' '.join(cmd)}\n{out[-2000:]}")
    return ChildResult(json.loads(lines[-1]), round(usage.ru_maxrss / 1024, 1))


def fresh_copy(source: Path, target: Path) -> Path:
    """A fresh copy of a prepared store directory (replacing ``target``)."""
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    os.sync()  # the copy's write-back must not overlap the timed run
    return target


def peer_requirements() -> Path | None:
    """The peer's pins: ``shared/peer`` beside the repository, else /work/shared/peer."""
    for directory in (ROOT.parent / "shared" / "peer", Path("/work/shared/peer")):
        if (directory / PEER_REQUIREMENTS).is_file():
            return directory / PEER_REQUIREMENTS
    return None


def ensure_peer_python(python: Path) -> str | None:
    """Create the peer's venv if ``python`` is missing; returns why the peer can't run, if so."""
    if not PEER_RUNNER.is_file():
        return f"the peer runner {PEER_RUNNER.relative_to(ROOT)} does not exist"
    if python.exists():
        return None
    requirements = peer_requirements()
    if requirements is None:
        return f"{python} is missing and no {PEER_REQUIREMENTS} was found to create it"
    venv = python.parent.parent
    print(f"creating the peer's venv {venv} from {requirements} ...", flush=True)
    base = shutil.which("python3") or sys.executable
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--progress-bar", "off", "-r", str(requirements)],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=ROOT, check=False)
        if done.returncode != 0:
            return f"creating the peer venv failed: {' '.join(step)} exited {done.returncode}"
    return None


def peer_versions(python: Path) -> dict[str, str]:
    """Versions of the peer's packages (metaxy, duckdb, polars, ibis)."""
    code = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({p: m.version(p) for p in "
        "('metaxy', 'duckdb', 'polars', 'ibis-framework', 'narwhals')}))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:]}
    result: dict[str, str] = json.loads(done.stdout)
    return result
