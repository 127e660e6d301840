"""Spark local mode beside DuckDB and Polars: ``python -m bench.spark --n 1000000``.

The ``simple`` graph (one root with two fields, one leaf reading both) in its ``stale`` phase:
the leaf computed for every sample, then 10% of the root's samples given a new ``audio`` data
version. Stores: a DuckDB file (engine ``duckdb``) and a Delta folder resolved by the Polars
engine and by the Spark engine in this process's local SparkSession. Each figure is the median
of ``--rounds`` runs of ``resolve_update("bench/leaf")`` (new, stale, orphaned collected into
Polars), warm: Spark's start (JVM, session) is timed once, apart. Counts are checked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.graphs import build_graph, expected_counts, root_rows, spec
from metaxy_core.store.base import MetadataStore
from metaxy_core.store.delta import DeltaMetadataStore
from metaxy_core.store.duckdb import DuckDBMetadataStore

ROOT, LEAF = "bench/root", "bench/leaf"


def _prepare(store: MetadataStore, n: int) -> None:
    graph = spec("simple")
    store.write(ROOT, root_rows(graph, ROOT, 0, n))
    todo = store.resolve_update(LEAF).to_compute()
    store.write(LEAF, todo.drop("metaxy_changed_fields", "metaxy_stale_reason", strict=False))
    store.write(ROOT, root_rows(graph, ROOT, 0, n, 10, changed=True))


def _time(resolve: Callable[[], object], rounds: int) -> tuple[float, object]:
    seconds, counts = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        counts = resolve()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    graph = build_graph(spec("simple"))
    expected = expected_counts(spec("simple"), args.n, "stale")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        duck = DuckDBMetadataStore(graph, Path(work) / "metaxy.duckdb", engine="duckdb")
        delta = DeltaMetadataStore(graph, Path(work) / "delta")
        started = time.perf_counter()
        _prepare(duck, args.n)
        _prepare(delta, args.n)
        figures["prepare_seconds"] = time.perf_counter() - started
        from metaxy_core.engines.spark import local_session

        started = time.perf_counter()
        local_session()
        figures["spark_start_seconds"] = time.perf_counter() - started
        on_spark = DeltaMetadataStore(graph, Path(work) / "delta", engine="spark")
        stores: list[tuple[str, MetadataStore]] = [
            ("duckdb", duck),
            ("delta-polars", delta),
            ("delta-spark", on_spark),
        ]
        for name, store in stores:
            seconds, counts = _time(partial(_counts, store), args.rounds)
            figures[name] = seconds
            if counts != expected:
                print(f"!!! {name}: counts {counts}, expected {expected}")
            print(f"{name:>14}: {seconds:8.2f} s  {counts}", flush=True)
    print(json.dumps({"n": args.n, **figures}))
    if args.out is not None:
        args.out.write_text(json.dumps({"n": args.n, **figures}, indent=2) + "\n")


def _counts(store: MetadataStore) -> dict[str, int]:
    inc = store.resolve_update(LEAF)
    return {"new": inc.new.height, "stale": inc.stale.height, "orphaned": inc.orphaned.height}


if __name__ == "__main__":
    main()
