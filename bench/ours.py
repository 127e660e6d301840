"""Child process for our store: build a benchmark store, or time one ``resolve_update``.

    python -m bench.ours setup --graph simple --n 1000000 --phase stale --dir DIR
    python -m bench.ours time --graph simple --dir DIR --engine polars

``setup`` writes ``DIR/metaxy.duckdb`` (each root in ONE ``store.write`` call of all N rows; in the
stale phase the leaf's increment is written as is, then the changed 10% of root rows) and
``DIR/setup.json``; it prints that JSON. ``time`` prints one JSON line
``{"seconds", "new", "stale", "orphaned", "peak_rss_mb"}``; ``seconds`` covers opening the store,
resolving and collecting new/stale/orphaned into memory; modules that would be imported lazily on
first use (``pyarrow.compute``) are imported before, as the peer runner does with its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow.compute  # noqa: F401  # imported lazily on first resolve; keep it off the clock

from bench.graphs import LEAF, PHASES, build_graph, expected_counts, root_rows, spec
from metaxy_core import DuckDBMetadataStore

DB_FILE: Final = "metaxy.duckdb"
SETUP_FILE: Final = "setup.json"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def setup(graph_name: str, n: int, phase: str, directory: Path) -> dict[str, Any]:
    """Build the store for (graph, n, phase) in ``directory``; returns what setup.json holds."""
    graph = spec(graph_name)
    fg = build_graph(graph)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (DB_FILE, DB_FILE + ".wal", SETUP_FILE):
        (directory / stale).unlink(missing_ok=True)
    store = DuckDBMetadataStore(fg, directory / DB_FILE)
    info: dict[str, Any] = {"graph": graph_name, "n": n, "phase": phase}
    info["graph_version"] = fg.versions.graph
    info["root_writes"] = {}
    t_all = time.perf_counter()
    for root in graph.roots:
        t0 = time.perf_counter()
        rows = root_rows(graph, root, 0, n)
        generated = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.write(root, rows)  # one call, all N rows
        info["root_writes"][root] = {
            "rows": n,
            "generate_seconds": round(generated, 3),
            "write_seconds": round(time.perf_counter() - t0, 3),
        }
        del rows
    info["peak_rss_mb_after_roots"] = peak_rss_mb()
    if phase == "stale":
        t0 = time.perf_counter()
        inc = store.resolve_update(LEAF)
        info["leaf_resolve_seconds"] = round(time.perf_counter() - t0, 3)
        if inc.new.height != n:
            raise SystemExit(f"setup: expected {n} new leaf rows, got {inc.new.height}")
        t0 = time.perf_counter()
        store.write(LEAF, inc.new)
        info["leaf_write_seconds"] = round(time.perf_counter() - t0, 3)
        del inc
        root = graph.changed[0]
        rows = root_rows(graph, root, 0, n, 10, changed=True)
        t0 = time.perf_counter()
        store.write(root, rows)
        info["changed_write"] = {
            "feature": root,
            "rows": rows.height,
            "write_seconds": round(time.perf_counter() - t0, 3),
        }
        del rows
    con = duckdb.connect(str(directory / DB_FILE))
    con.execute("CHECKPOINT")  # a self-contained file: nothing left in the WAL
    con.close()
    info["total_seconds"] = round(time.perf_counter() - t_all, 3)
    info["peak_rss_mb"] = peak_rss_mb()
    info["expected"] = expected_counts(graph, n, phase)
    info["store_bytes"] = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    (directory / SETUP_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def time_resolve(graph_name: str, directory: Path, engine: str) -> dict[str, Any]:
    """Open the store, resolve the leaf, collect the increment; one timed run."""
    fg = build_graph(spec(graph_name))
    t0, cpu0 = time.perf_counter(), time.process_time()
    store = DuckDBMetadataStore(fg, directory / DB_FILE, engine=engine)  # type: ignore[arg-type]
    inc = store.resolve_update(LEAF)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    counts = inc.counts
    return {
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu, 4),
        "new": counts.new,
        "stale": counts.stale,
        "orphaned": counts.orphaned,
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ours", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup", help="build a benchmark store in DIR")
    p_setup.add_argument("--graph", required=True)
    p_setup.add_argument("--n", type=int, required=True)
    p_setup.add_argument("--phase", choices=PHASES, required=True)
    p_setup.add_argument("--dir", type=Path, required=True)
    p_time = sub.add_parser("time", help="time resolve_update of the leaf of the store in DIR")
    p_time.add_argument("--graph", required=True)
    p_time.add_argument("--dir", type=Path, required=True)
    p_time.add_argument("--engine", choices=("polars", "duckdb"), required=True)
    args = parser.parse_args(argv)
    if args.command == "setup":
        result = setup(args.graph, args.n, args.phase, args.dir)
    else:
        result = time_resolve(args.graph, args.dir, args.engine)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
