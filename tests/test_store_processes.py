"""Several processes on one store file, and a writer killed mid-write (design section 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from metaxy_core import DuckDBMetadataStore
from metaxy_core.testing import root_samples
from tests.reference import reference_graph

ROOT = Path(__file__).resolve().parent.parent

_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from metaxy_core import DuckDBMetadataStore
    from metaxy_core.testing import root_samples
    from tests.reference import reference_graph

    proc, batches, rows, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = DuckDBMetadataStore(reference_graph(), path)
    for b in range(batches):
        ids = [f"p{{proc}}-b{{b}}-{{k}}" for k in range(rows)]
        frame = root_samples("video_id", ids, audio=["a"] * rows, frames=["f"] * rows)
        print("writing", flush=True)
        store.write("video/raw", frame, run_id=f"p{{proc}}")
    print("done", flush=True)
    """
).format(root=str(ROOT))


def _spawn(tmp_path: Path, proc: int, batches: int, rows: int, db: Path) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    return subprocess.Popen(
        [sys.executable, str(script), str(proc), str(batches), str(rows), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_processes_write_at_once_and_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    procs = [_spawn(tmp_path, p, 25, 10, db) for p in range(4)]
    # Wait for every writer before asserting, so a failure leaves no process or pipe behind.
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.splitlines()[-1] == "done"
    store = DuckDBMetadataStore(reference_graph(), db)
    rows = store.read("video/raw")
    assert rows.height == 4 * 25 * 10
    assert rows["video_id"].n_unique() == 1000
    assert sorted(rows["metaxy_write_seq"].unique()) == list(range(1, 101))
    assert rows.group_by("metaxy_run_id").len().sort("metaxy_run_id").rows() == [
        (f"p{p}", 250) for p in range(4)
    ]
    assert store.last_write_seq() == 100


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}.wal")) if p.exists())


def test_writer_killed_mid_write_leaves_store_as_before(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    graph = reference_graph()
    store = DuckDBMetadataStore(graph, db)
    store.write(
        "video/raw", root_samples("video_id", ["v1", "v2"], audio=["a", "b"], frames=["c", "d"])
    )
    store.write("video/crop", store.resolve_update("video/crop").new)
    before = store.read("video/raw")
    size = _size(db)

    writer = _spawn(tmp_path, 9, 1, 3_000_000, db)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "writing"
    deadline = time.monotonic() + 120
    while _size(db) < size + 4_000_000 and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert writer.poll() is None, "the writer finished before it could be killed mid-write"
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL

    after = DuckDBMetadataStore(graph, db)
    assert after.last_write_seq() == 2
    assert after.read("video/raw").sort("video_id").equals(before.sort("video_id"))
    assert after.count_update("video/crop").total == 0
    # And the store still takes writes.
    after.write("video/raw", root_samples("video_id", ["v3"], audio=["x"], frames=["y"]))
    assert after.count_update("video/crop").new == 1
