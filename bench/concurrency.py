"""Many writers at once on one store file, as Dagster steps that finish together.

    python -m bench.concurrency [--writers 16] [--rows 50000] [--output FILE]

``--writers`` processes, started from a forkserver as Dagster's multiprocess executor starts
steps, each prepare ``--rows`` rows of ``bench/root`` (graph ``simple``), wait at one barrier,
then write them with ONE ``store.write`` call each, all at once, with the default
``lock_timeout``. A sensor-like reader asks the store every second for the last write and for
the count of new ``bench/leaf`` samples (one ``with store:`` snapshot per tick). Reported: did
every write land (every returned write sequence present, exact row count, every sequence once),
writes per second, the longest wait for the lock (writers and reader, from the store's
``metaxy_core.store`` debug log), and the total wall time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.children import ROOT
from bench.graphs import build_graph, root_rows, spec

GRAPH = "simple"
ROOT_FEATURE = "bench/root"
LEAF_FEATURE = "bench/leaf"


class _LockWaits(logging.Handler):
    """Collects the lock waits the store logs (``metaxy_lock_wait`` of its debug records)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.waits: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        wait = getattr(record, "metaxy_lock_wait", None)
        if wait is not None:
            self.waits.append(float(wait))


def _listen() -> _LockWaits:
    handler = _LockWaits()
    logger = logging.getLogger("metaxy_core.store")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return handler


def _writer(db: str, index: int, rows: int, barrier: Any, results: Any) -> None:
    from metaxy_core import DuckDBMetadataStore

    try:
        waits = _listen()
        store = DuckDBMetadataStore(build_graph(spec(GRAPH)), db)
        frame = root_rows(spec(GRAPH), ROOT_FEATURE, index * rows, (index + 1) * rows)
        barrier.wait()
        start = time.time()
        seq = store.write(ROOT_FEATURE, frame, run_id=f"writer-{index}").write_seq
        end = time.time()
        results.put(
            {
                "kind": "writer",
                "index": index,
                "write_seq": seq,
                "rows": frame.height,
                "start": start,
                "end": end,
                "lock_wait": max(waits.waits, default=0.0),
            }
        )
    except BaseException as exc:
        results.put({"kind": "error", "index": index, "error": repr(exc)})


def _reader(db: str, barrier: Any, stop: Any, results: Any) -> None:
    from metaxy_core import DuckDBMetadataStore

    try:
        waits = _listen()
        store = DuckDBMetadataStore(build_graph(spec(GRAPH)), db)
        ticks = []
        barrier.wait()
        while True:
            start = time.time()
            with store:
                seq = store.last_write_seq()
                new = store.count_update(LEAF_FEATURE).new
            ticks.append({"start": start, "seconds": time.time() - start, "seq": seq, "new": new})
            if stop.wait(max(0.0, 1.0 - (time.time() - start))):
                break
        results.put({"kind": "reader", "ticks": ticks, "lock_waits": waits.waits})
    except BaseException as exc:
        results.put({"kind": "error", "index": -1, "error": repr(exc)})


def run(writers: int, rows: int) -> dict[str, Any]:
    """One run in a fresh directory; returns the figures."""
    from metaxy_core import DuckDBMetadataStore

    directory = Path(tempfile.mkdtemp(prefix="metaxy-bench-concurrency-"))
    db = str(directory / "store.duckdb")
    try:
        ctx = multiprocessing.get_context("forkserver")
        barrier, stop, results = ctx.Barrier(writers + 2), ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_writer, args=(db, i, rows, barrier, results))
            for i in range(writers)
        ]
        procs.append(ctx.Process(target=_reader, args=(db, barrier, stop, results)))
        for p in procs:
            p.start()
        barrier.wait()  # every writer has its rows ready
        start = time.time()
        reported = [results.get(timeout=3600) for _ in range(writers)]
        writes_done = time.time()
        stop.set()
        reported.append(results.get(timeout=600))
        for p in procs:
            p.join(timeout=600)
        wall = time.time() - start

        errors = [r["error"] for r in reported if r["kind"] == "error"]
        done = [r for r in reported if r["kind"] == "writer"]
        reader = next(
            (r for r in reported if r["kind"] == "reader"), {"ticks": [], "lock_waits": []}
        )
        store = DuckDBMetadataStore(build_graph(spec(GRAPH)), db)
        history = store.read(ROOT_FEATURE, history=True, columns=["metaxy_write_seq"])
        seqs = sorted(r["write_seq"] for r in done)
        landed = (
            not errors
            and len(done) == writers
            and seqs == list(range(1, writers + 1))
            and sorted(history["metaxy_write_seq"].unique()) == seqs
            and history.height == writers * rows
            and store.count_update(LEAF_FEATURE).new == writers * rows
        )
        ticks = reader["ticks"]
        return {
            "writers": writers,
            "rows_per_writer": rows,
            "all_writes_landed": landed,
            "errors": errors,
            "writes_per_second": round(len(done) / (writes_done - start), 3),
            "rows_per_second": round(sum(r["rows"] for r in done) / (writes_done - start)),
            "longest_writer_lock_wait_s": round(max((r["lock_wait"] for r in done), default=0), 3),
            "longest_write_s": round(max((r["end"] - r["start"] for r in done), default=0), 3),
            "writes_wall_s": round(writes_done - start, 3),
            "total_wall_s": round(wall, 3),
            "reader_ticks": len(ticks),
            "reader_longest_tick_s": round(max((t["seconds"] for t in ticks), default=0), 3),
            "reader_longest_lock_wait_s": round(max(reader["lock_waits"], default=0), 3),
            "reader_counts_consistent": all(
                t["new"] == t["seq"] * rows for t in ticks
            ),  # each snapshot: new leaf samples == rows of the writes it sees
            "default_lock_timeout_s": DuckDBMetadataStore(
                build_graph(spec(GRAPH)), ":memory:"
            ).lock_timeout,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def report(figures: dict[str, Any]) -> str:
    """The printed summary."""
    f = figures
    return "\n".join(
        [
            f"concurrency: {f['writers']} processes x {f['rows_per_writer']:,} rows, one write "
            "each, all at once, + a reader every second",
            f"  all writes landed: {'yes' if f['all_writes_landed'] else 'NO'}"
            + (f"  errors: {f['errors']}" if f["errors"] else ""),
            f"  writes per second: {f['writes_per_second']:.2f}  ({f['rows_per_second']:,} rows/s)",
            f"  longest wait for the lock: writer {f['longest_writer_lock_wait_s']:.2f} s, "
            f"reader {f['reader_longest_lock_wait_s']:.2f} s "
            f"(lock_timeout {f['default_lock_timeout_s']:g} s)",
            f"  longest write call: {f['longest_write_s']:.2f} s; all writes done after "
            f"{f['writes_wall_s']:.2f} s; total wall time {f['total_wall_s']:.2f} s",
            f"  reader: {f['reader_ticks']} ticks, longest {f['reader_longest_tick_s']:.2f} s, "
            f"counts consistent: {'yes' if f['reader_counts_consistent'] else 'NO'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "concurrency.json"
    )
    args = parser.parse_args(argv)
    figures = run(args.writers, args.rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))
    print(f"results written to {args.output}")
    return 0 if figures["all_writes_landed"] and figures["reader_counts_consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
