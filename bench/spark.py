"""Spark local mode beside DuckDB and Polars: ``python -m bench.spark --n 1000000``.

The ``simple`` graph (one root with two fields, one leaf reading both) in its ``stale`` phase:
the leaf computed for every sample, then 10% of the root's samples given a new ``audio`` data
version. Stores: a DuckDB file (engine ``duckdb``) and a Delta folder resolved by the Polars
engine and by the Spark engine in this process's local SparkSession. Each figure is the median
of ``--rounds`` runs of ``resolve_update("bench/leaf")`` (new, stale, orphaned collected into
Polars), warm: Spark's start (JVM, session) is timed once, apart. Counts are checked. Beside
each wall time, the CPU seconds of the same runs: this process's, plus the Spark driver JVM's
(read from ``/proc``) for the Spark engine. ``make bench`` runs it at 1M rows.
"""

from __future__ import annotations

import argparse
import json
import os
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


def _time(
    resolve: Callable[[], object], rounds: int, jvm: int | None
) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``rounds`` calls of ``resolve``, and its last result."""
    seconds, cpu, counts = [], [], None
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), _cpu(jvm)
        counts = resolve()
        seconds.append(time.perf_counter() - start)
        cpu.append(_cpu(jvm) - start_cpu)
    return statistics.median(seconds), statistics.median(cpu), counts


def _cpu(jvm: int | None) -> float:
    """CPU seconds of this process, plus those of the process ``jvm`` (the Spark driver)."""
    seconds = time.process_time()
    if jvm is not None:
        fields = Path(f"/proc/{jvm}/stat").read_text().rsplit(")", 1)[1].split()
        seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


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
        jvm = local_session().sparkContext._gateway.proc.pid  # type: ignore[union-attr]
        figures["spark_start_seconds"] = time.perf_counter() - started
        on_spark = DeltaMetadataStore(graph, Path(work) / "delta", engine="spark")
        stores: list[tuple[str, MetadataStore]] = [
            ("duckdb", duck),
            ("delta-polars", delta),
            ("delta-spark", on_spark),
        ]
        for name, store in stores:
            on_jvm = jvm if name == "delta-spark" else None
            seconds, cpu, counts = _time(partial(_counts, store), args.rounds, on_jvm)
            figures[name] = seconds
            figures[f"{name}_cpu"] = cpu
            if counts != expected:
                print(f"!!! {name}: counts {counts}, expected {expected}")
            print(f"{name:>14}: {seconds:8.2f} s wall {cpu:8.2f} s CPU  {counts}", flush=True)
    result = {"n": args.n, "rounds": args.rounds, "load": os.getloadavg()[0], **figures}
    print(json.dumps(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _counts(store: MetadataStore) -> dict[str, int]:
    inc = store.resolve_update(LEAF)
    return {"new": inc.new.height, "stale": inc.stale.height, "orphaned": inc.orphaned.height}


if __name__ == "__main__":
    main()
