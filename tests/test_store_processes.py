"""Several processes on one store file, and a writer killed mid-write (design section 4)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

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


def _spawn(proc: int, batches: int, rows: int, db: Path) -> subprocess.Popen[str]:
    # The script is passed with -c: a file shared by several children could be rewritten while
    # an earlier child still reads it.
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(proc), str(batches), str(rows), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


WRITERS, WRITES, ROWS = 8, 10, 10


def _forkserver_writer(db: str, proc: int, results: Any) -> None:
    """Writes ``WRITES`` batches; reports every returned write_seq (or the error)."""
    try:
        store = DuckDBMetadataStore(reference_graph(), db)
        seqs = []
        for b in range(WRITES):
            ids = [f"p{proc}-b{b}-{k}" for k in range(ROWS)]
            frame = root_samples("video_id", ids, audio=["a"] * ROWS, frames=["f"] * ROWS)
            seqs.append(store.write("video/raw", frame, run_id=f"p{proc}").write_seq)
        results.put(("writer", proc, seqs))
    except BaseException as exc:
        results.put(("error", proc, repr(exc)))


def _forkserver_reader(db: str, stop: Any, results: Any) -> None:
    """Resolves the downstream of the written feature in a loop, as a sensor does."""
    try:
        store = DuckDBMetadataStore(reference_graph(), db)
        seen = []
        while not stop.is_set():
            with store:  # one snapshot: the rows read and the increment agree
                rows = store.read("video/raw", columns=["video_id"]).height
                new = store.count_update("video/crop").new
            seen.append((rows, new))
        results.put(("reader", -1, seen))
    except BaseException as exc:
        results.put(("error", -1, repr(exc)))


def test_forkserver_writers_and_a_reader_lose_no_committed_write(tmp_path: Path) -> None:
    """Eight processes started as Dagster's multiprocess executor starts steps write at once
    while a ninth resolves in a loop: every write that returned is in the store."""
    db = str(tmp_path / "store.duckdb")
    ctx = multiprocessing.get_context("forkserver")
    results, stop = ctx.Queue(), ctx.Event()
    reader = ctx.Process(target=_forkserver_reader, args=(db, stop, results))
    reader.start()
    writers = [
        ctx.Process(target=_forkserver_writer, args=(db, p, results)) for p in range(WRITERS)
    ]
    for w in writers:
        w.start()
    reported = [results.get(timeout=300) for _ in writers]
    stop.set()
    reported.append(results.get(timeout=300))
    for process in [*writers, reader]:
        process.join(timeout=60)
    assert [r for r in reported if r[0] == "error"] == []
    assert [p.exitcode for p in [*writers, reader]] == [0] * (WRITERS + 1)

    seqs = sorted(seq for kind, _, got in reported if kind == "writer" for seq in got)
    assert seqs == list(range(1, WRITERS * WRITES + 1))  # every write_seq handed out once
    store = DuckDBMetadataStore(reference_graph(), db)
    history = store.read("video/raw", history=True)
    assert sorted(history["metaxy_write_seq"].unique()) == seqs  # every returned write is there
    assert history.height == WRITERS * WRITES * ROWS
    assert store.read("video/raw")["video_id"].n_unique() == WRITERS * WRITES * ROWS
    assert store.last_write_seq() == WRITERS * WRITES
    assert store.count_update("video/crop").new == WRITERS * WRITES * ROWS

    seen = next(got for kind, _, got in reported if kind == "reader")
    assert seen, "the reader never finished a resolve"
    assert all(rows == new and rows % ROWS == 0 for rows, new in seen)
    assert [rows for rows, _ in seen] == sorted(rows for rows, _ in seen)  # never goes back


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

    writer = _spawn(9, 1, 3_000_000, db)
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
