"""Several processes on one store file, and a writer killed mid-write (design section 4)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from metaxy_core import DuckDBMetadataStore
from metaxy_core.errors import StoreLockedError
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
    # As Dagster does: the server imports the heavy modules once, each child forks from it.
    ctx.set_forkserver_preload(["metaxy_core", "tests.reference"])
    results, stop = ctx.Queue(), ctx.Event()
    reader = ctx.Process(target=_forkserver_reader, args=(db, stop, results))
    reader.start()
    writers = [
        ctx.Process(target=_forkserver_writer, args=(db, p, results)) for p in range(WRITERS)
    ]
    try:
        for w in writers:
            w.start()
        reported = [results.get(timeout=300) for _ in writers]
        stop.set()
        reported.append(results.get(timeout=300))
    finally:  # never leave a process behind, whatever failed
        stop.set()
        for process in [p for p in [*writers, reader] if p.pid is not None]:
            process.join(timeout=60)
            if process.exitcode is None:
                process.kill()
                process.join()
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


_HOLDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from metaxy_core import DuckDBMetadataStore
    from metaxy_core.testing import root_samples
    from tests.reference import reference_graph

    store = DuckDBMetadataStore(reference_graph(), sys.argv[2])
    with store:
        if sys.argv[1] == "write":
            store.write("video/raw", root_samples("video_id", ["held"], audio=["a"], frames=["f"]))
        else:
            store.read("video/raw")
        print("holding", flush=True)
        sys.stdin.read()  # until the test closes our stdin
    print("released", flush=True)
    """
).format(root=str(ROOT))


def _holder(mode: str, db: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, mode, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "holding\n", holder.communicate(timeout=60)
    return holder


def _raw(ids: list[str]) -> Any:
    return root_samples("video_id", ids, audio=["a"] * len(ids), frames=["f"] * len(ids))


def test_readers_share_the_file_and_a_writer_waits_for_them(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    DuckDBMetadataStore(reference_graph(), db).write("video/raw", _raw(["v1"]))
    holder = _holder("read", db)  # another process inside a read session
    try:
        store = DuckDBMetadataStore(reference_graph(), db, lock_timeout=0.5)
        assert store.read("video/raw")["video_id"].to_list() == ["v1"]  # readers run together
        with pytest.raises(
            StoreLockedError,
            match=r"store '.*store\.duckdb' stayed locked .* 0\.5 s .*raise lock_timeout",
        ):
            store.write("video/raw", _raw(["v2"]))
    finally:
        out, _ = holder.communicate("", timeout=60)
    assert out == "released\n"
    store.write("video/raw", _raw(["v2"]))  # the reader is gone: the writer goes ahead
    assert sorted(store.read("video/raw")["video_id"]) == ["v1", "v2"]


def test_a_writer_keeps_readers_out_until_it_closes(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    holder = _holder("write", db)  # another process inside a write session, file just created
    try:
        store = DuckDBMetadataStore(reference_graph(), db, lock_timeout=0.5)
        with pytest.raises(StoreLockedError, match=r"lock file .*store\.duckdb\.lock"):
            store.read("video/raw")
        with pytest.raises(StoreLockedError, match="stayed locked by other processes"):
            store.last_write_seq()
    finally:
        out, _ = holder.communicate("", timeout=60)
    assert out == "released\n"
    assert store.read("video/raw")["video_id"].to_list() == ["held"]
    assert store.last_write_seq() == 1


def test_two_store_objects_on_one_file_nest_in_one_thread(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    reader, writer = (DuckDBMetadataStore(reference_graph(), db) for _ in range(2))
    assert reader.read("video/raw").height == 0  # a reader of a new file creates it
    with reader:
        assert reader.last_write_seq() == 0  # a read-only session is open ...
        with writer:  # ... and a write of another store object on the file reopens it
            writer.write("video/raw", _raw(["v1"]))
            assert reader.read("video/raw")["video_id"].to_list() == ["v1"]
        writer.write("video/raw", _raw(["v2"]))
        assert reader.last_write_seq() == 2
    with writer, reader:
        assert writer.read("video/raw").height == reader.read("video/raw").height == 2


def test_the_store_works_where_fcntl_does_not_exist(tmp_path: Path) -> None:
    """Without ``fcntl`` (Windows) the package imports and the file store locks with
    ``filelock``; two processes write at once without losing a row."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["fcntl"] = None  # as on Windows
        sys.path.insert(0, {root!r})
        import warnings
        warnings.simplefilter("ignore")  # filelock warns that only its soft lock is left here
        from metaxy_core import DuckDBMetadataStore
        from metaxy_core.testing import root_samples
        from tests.reference import reference_graph

        store = DuckDBMetadataStore(reference_graph(), sys.argv[2])
        for b in range(5):
            ids = [f"{{sys.argv[1]}}-{{b}}-{{k}}" for k in range(3)]
            frame = root_samples("video_id", ids, audio=["a"] * 3, frames=["f"] * 3)
            store.write("video/raw", frame)
        print(store.read("video/raw").height >= 15)
        """
    ).format(root=str(ROOT))
    db = tmp_path / "store.duckdb"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"p{p}", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [(p.returncode, out) for p, (out, _) in zip(procs, outputs, strict=True)] == [
        (0, "True\n"),
        (0, "True\n"),
    ], outputs
    store = DuckDBMetadataStore(reference_graph(), db)
    assert store.read("video/raw").height == 30
    assert store.last_write_seq() == 10


def test_waiting_writers_go_first_come_first_served(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    holder = _holder("write", db)
    writers = []
    try:
        for proc in range(1, 5):
            writers.append(_spawn(proc, 1, 1, db))
            # Start the next writer only once this one waits in the queue (one node file each).
            deadline = time.monotonic() + 120
            while len(list(tmp_path.glob("store.duckdb.lock.queue.*"))) < proc:
                assert time.monotonic() < deadline, "a writer never joined the queue"
                assert writers[-1].poll() is None, writers[-1].communicate()
                time.sleep(0.01)
    finally:
        holder.communicate("", timeout=60)
        outputs = [w.communicate(timeout=300) for w in writers]
    assert [(w.returncode, out.split()) for w, (out, _) in zip(writers, outputs, strict=True)] == [
        (0, ["writing", "done"])
    ] * 4
    history = DuckDBMetadataStore(reference_graph(), db).read("video/raw", history=True)
    assert history.select("metaxy_write_seq", "metaxy_run_id").rows() == [
        (1, None),
        (2, "p1"),
        (3, "p2"),
        (4, "p3"),
        (5, "p4"),
    ]
    assert list(tmp_path.glob("store.duckdb.lock.queue.*")) == []  # every waiter cleaned up


def test_a_child_forked_inside_a_session_does_not_keep_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    store = DuckDBMetadataStore(reference_graph(), db)
    wake, hold = os.pipe()
    with store:
        store.write("video/raw", _raw(["v1"]))  # this process holds the file exclusively
        with warnings.catch_warnings():
            # Python 3.12+ warns on forking a process with threads (DuckDB's); the child only
            # waits on a pipe and exits.
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
        if child == 0:
            os.close(hold)
            os.read(wake, 1)
            os._exit(0)
    os.close(wake)
    try:
        writer = _spawn(1, 1, 1, db)  # the forked child still runs: the writer must not wait
        out, err = writer.communicate(timeout=300)
        assert (writer.returncode, out.split()) == (0, ["writing", "done"]), err
    finally:
        os.close(hold)
        os.waitpid(child, 0)
    assert sorted(store.read("video/raw")["video_id"]) == ["p1-b0-0", "v1"]
