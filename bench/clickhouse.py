"""The ClickHouse store (embedded, chdb) beside the DuckDB store: write and resolve at N.

    python -m bench.clickhouse [--n 1000000] [--graph simple] [--rounds 3]

For each store, in one process, on the same data (:mod:`bench.graphs`): write the roots' N
rows (timed), resolve the leaf with nothing stored (``new``, timed), write the leaf, change
one field on 10% of the samples, and resolve again (``stale``, timed). Rounds alternate the
stores; the median is printed with the machine's load. Each round starts from an empty store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.graphs import LEAF, build_graph, root_rows, spec
from metaxy_core import ClickHouseMetadataStore, DuckDBMetadataStore, MetadataStore
from metaxy_core.graph import FeatureGraph

STORES = ("duckdb", "clickhouse")


def _store(kind: str, graph: FeatureGraph, directory: Path) -> MetadataStore:
    if kind == "duckdb":
        return DuckDBMetadataStore(graph, directory / "m.duckdb")
    return ClickHouseMetadataStore(graph, directory / "ch")


def _timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def one_round(kind: str, graph_name: str, n: int) -> dict[str, float]:
    """Seconds of each timed step on a fresh store of ``kind``."""
    g = spec(graph_name)
    graph = build_graph(g)
    directory = Path(tempfile.mkdtemp(prefix=f"metaxy-bench-{kind}-"))
    try:
        store = _store(kind, graph, directory)
        roots = {root: root_rows(g, root, 0, n) for root in g.roots}
        out = {"write": sum(_timed(lambda r=r, f=f: store.write(r, f)) for r, f in roots.items())}
        found: dict[str, object] = {}
        out["resolve_new"] = _timed(lambda: found.update(new=store.resolve_update(LEAF)))
        increment = found["new"]
        store.write(LEAF, increment.new)  # type: ignore[attr-defined]
        root, _ = g.changed
        store.write(root, root_rows(g, root, 0, n, 10, changed=True))
        out["resolve_stale"] = _timed(lambda: found.update(stale=store.resolve_update(LEAF)))
        counts = found["stale"].counts  # type: ignore[attr-defined]
        assert counts.stale == (n + 9) // 10, counts
        return out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clickhouse")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--graph", default="simple")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    times: dict[str, list[dict[str, float]]] = {k: [] for k in STORES}
    for _ in range(args.rounds):
        for kind in STORES:
            times[kind].append(one_round(kind, args.graph, args.n))
    print(f"graph {args.graph}, n={args.n:,}, {args.rounds} rounds, load {os.getloadavg()}")
    print(f"{'store':<12}{'write':>10}{'resolve new':>14}{'resolve stale':>16}  (median s)")
    for kind in STORES:
        med = {k: statistics.median(r[k] for r in times[kind]) for k in times[kind][0]}
        print(
            f"{kind:<12}{med['write']:>10.2f}{med['resolve_new']:>14.2f}"
            f"{med['resolve_stale']:>16.2f}"
        )


if __name__ == "__main__":
    main()
