"""Child process timing one write of a graph's first root: ours, or the plain-insert floor.

    python -m bench.write time --graph simple --n 1000000 --dir DIR --impl ours|insert

The root's N rows (``sample_id`` and one data version string per field, as
:func:`bench.graphs.root_rows` makes them) are generated before the clock starts. Then, into a
new DuckDB file in ``DIR``:

- ``ours``: ``DuckDBMetadataStore(graph, path).write(root, rows)``, one call (validation, the
  stored data versions, provenance, every system column, history and current tables);
- ``insert``: the floor, a plain ``CREATE TABLE`` of the same columns and one
  ``INSERT INTO ... SELECT * FROM rows`` from the same Polars frame, then ``CHECKPOINT``.

Both open and close their connection inside the clock. It prints ``{"seconds", "rows",
"peak_rss_mb"}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb
import polars as pl

from bench.graphs import build_graph, root_rows, spec
from bench.ours import DB_FILE, peak_rss_mb
from metaxy_core import DuckDBMetadataStore


def _insert(path: Path, rows: pl.DataFrame) -> None:
    con = duckdb.connect(str(path))
    try:
        # The same column types DuckDB gives the frame's columns.
        con.execute("CREATE TABLE root AS SELECT * FROM rows LIMIT 0")
        con.execute("INSERT INTO root SELECT * FROM rows")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def time_write(graph_name: str, n: int, directory: Path, impl: str) -> dict[str, object]:
    """Generate the first root's rows, then time one write of them into a new file."""
    graph = spec(graph_name)
    root = next(iter(graph.roots))
    rows = root_rows(graph, root, 0, n)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DB_FILE
    for stale in (path, Path(f"{path}.wal")):
        stale.unlink(missing_ok=True)
    fg = build_graph(graph)
    t0 = time.perf_counter()
    if impl == "ours":
        DuckDBMetadataStore(fg, path).write(root, rows)
    else:
        _insert(path, rows)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 4), "rows": rows.height, "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.write", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_time = sub.add_parser("time", help="time one write of the first root's N rows")
    p_time.add_argument("--graph", required=True)
    p_time.add_argument("--n", type=int, required=True)
    p_time.add_argument("--dir", type=Path, required=True)
    p_time.add_argument("--impl", choices=("ours", "insert"), required=True)
    args = parser.parse_args(argv)
    print(json.dumps(time_write(args.graph, args.n, args.dir, args.impl)), flush=True)


if __name__ == "__main__":
    main()
