"""Writing Ray's results to the DuckDB file store: many write tasks, or one writer.

    python -m bench.ray_sink [--rows 100000] [--cpus 2] [--tasks 2 8 32] [--output FILE]

On a local Ray of ``--cpus`` CPUs, the ``video/crop`` increment of the reference graph
(``--rows`` new samples) is read with :func:`~metaxy_core.integrations.ray.read_increment`,
given one user column by ``map_batches``, and written to a fresh store file either

- ``sink``: through :class:`~metaxy_core.integrations.ray.MetaxyDatasink` from the workers,
  one ``store.write`` per write task, each taking the file's exclusive lock in turn; or
- ``one-writer``: collected to the driver as Arrow blocks and written there in one
  ``store.write``,

both with ``K`` read tasks for each ``K`` of ``--tasks`` (each read task resolves its hash
shard of the increment, so both pay the same reads). Each variant runs once per round (rounds
interleaved), on a new store; the figures are the median wall time of read + compute + write,
and for the sink the summed time of its store writes (lock waits included). The rows written
are checked. Ray start-up is not timed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import ray

from metaxy_core import DuckDBMetadataStore, FeatureGraph, FeatureSpec
from metaxy_core.integrations.ray import MetaxyDatasink, read_increment

GRAPH = FeatureGraph(
    [
        FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio", "frames"]),
        FeatureSpec(
            key="video/crop",
            id_columns=["video_id"],
            deps=["video/raw"],
            fields=["audio", "frames"],
        ),
    ]
)


def add_length(batch: pa.Table) -> pa.Table:
    return batch.append_column("id_chars", pc.utf8_length(batch["video_id"]))


def fresh_store(directory: Path, name: str, rows: int) -> DuckDBMetadataStore:
    store = DuckDBMetadataStore(GRAPH, directory / f"{name}.duckdb")
    ids = [f"v{i:08d}" for i in range(rows)]
    store.write(
        "video/raw",
        pl.DataFrame(
            {
                "video_id": ids,
                "metaxy_data_version__audio": ids,
                "metaxy_data_version__frames": ids,
            }
        ),
    )
    return store


def run(variant: str, store: DuckDBMetadataStore) -> dict[str, Any]:
    kind, tasks = variant.split("-")
    start = time.perf_counter()
    dataset = read_increment(store, "video/crop", blocks=int(tasks)).map_batches(
        add_length, batch_format="pyarrow"
    )
    if kind == "one":
        table = pa.concat_tables(ray.get(dataset.to_arrow_refs()))
        before = time.perf_counter()
        written = store.write("video/crop", pl.from_arrow(table)).rows
        writes, write_s = 1, time.perf_counter() - before
    else:
        sink = MetaxyDatasink(store, "video/crop")
        dataset.write_datasink(sink)
        written = sink.rows_written
        writes = sum(1 for w in sink.writes if w.rows)
        write_s = sum(w.seconds for w in sink.writes)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "write_s": write_s, "rows": written, "writes": writes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    variants = [f"{kind}-{k}" for k in args.tasks for kind in ("one", "sink")]
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    ok = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                for variant in variants:
                    store = fresh_store(Path(tmp), f"{variant}-{round_}", args.rows)
                    result = run(variant, store)
                    ok = ok and result["rows"] == args.rows
                    results[variant].append(result)
    finally:
        ray.shutdown()
    lines = [f"rows={args.rows} cpus={args.cpus} rounds={args.rounds} (medians)"]
    summary = []
    for variant in variants:
        median = statistics.median(r["seconds"] for r in results[variant])
        write_s = statistics.median(r["write_s"] for r in results[variant])
        one = statistics.median(r["seconds"] for r in results["one-" + variant.split("-")[1]])
        writes = results[variant][0]["writes"]
        summary.append(
            {"variant": variant, "median_s": median, "write_s": write_s, "writes": writes}
        )
        lines.append(
            f"{variant:>8}: {median:6.2f} s in all ({median / one:4.2f}x one-writer at the "
            f"same reads), {writes:>2} store write(s) taking {write_s:5.2f} s summed"
        )
    print("\n".join(lines))
    if args.output:
        args.output.write_text(
            json.dumps({"args": vars(args) | {"output": None}, "summary": summary}, indent=2)
        )
    if not ok:
        print("!!! a variant wrote another number of rows than the increment has", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
