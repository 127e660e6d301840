"""Child process for the floor: ONE hand-written DuckDB query over our store file.

    python -m bench.floor time --graph simple --dir DIR

The fastest query we can write for the increment: it joins the roots' current tables (named by
feature key, e.g. ``"bench/root"``), full-outer-joins them with the leaf's current table, keeps
the candidates (new, orphaned, or an upstream sample data version that differs from the one the
leaf row was computed from, when the leaf stores it, as our store does), hashes each leaf
field's recipe with its upstream data versions in dependency order **inside DuckDB, with its
built-in** ``hash()`` over the typed 64-bit values (no text, no Python), keeps the new, stale
and orphaned rows and fetches them, with integer hashes, to Arrow. Without a leaf table every
sample is new: no join. ``hash()`` is the speed bound, not our bits: in the stale phase every
candidate differs from the stored provenance, so only the new and orphaned counts are checked.

It prints ``{"seconds", "new", "stale", "orphaned", "peak_rss_mb"}``; ``seconds`` covers
connecting, the query, the fetch and closing the connection (as ours does).
``python -m bench.floor sql --graph G [--dir DIR]`` prints the query.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb
import pyarrow.compute as pc

from bench.graphs import ID, LEAF, build_graph, spec
from bench.ours import DB_FILE, peak_rss_mb
from metaxy_core import columns as c
from metaxy_core.definitions import FieldRef
from metaxy_core.engines.duckdb import quote, sql_literal


def native_hash(parts: list[str]) -> str:
    """DuckDB's built-in ``hash()`` of the typed parts, as a 64-bit integer (other bits)."""
    return f"hash({', '.join(parts)})"


def floor_query(graph_name: str, leaf_columns: set[str] | None) -> str:
    """The floor's SQL: new, stale and orphaned leaf rows with their expected provenance.

    ``leaf_columns`` are the columns of the leaf's current table (``None``: never written; then
    every sample is new and no join is needed). When the leaf stores, per upstream, the sample
    data version it was computed from (as our store does), only samples whose upstream data
    version changed are hashed, like our engines do; otherwise every sample is hashed.
    """
    fg = build_graph(spec(graph_name))
    leaf = fg[LEAF]
    roots = [d.feature for d in leaf.deps]
    alias = {root: f"r{i}" for i, root in enumerate(roots)}
    fields = sorted(leaf.field_keys)
    inputs = {
        (d.feature, d.field): f"{alias[d.feature]}_{d.field}"
        for f in fields
        for d in fg.field_deps(LEAF, f)
    }
    # e: the joined upstream rows; per root its sample data version u<i>, and the field inputs
    e_cols = [f"r0.{ID}"]
    e_cols += [f"{alias[r]}.{quote(c.DATA_VERSION)} AS u{i}" for i, r in enumerate(roots)]
    e_cols += [
        f"{alias[r]}.{quote(c.data_version_column(f))} AS {name}" for (r, f), name in inputs.items()
    ]
    joined = f"{quote(roots[0])} r0"
    for root in roots[1:]:
        joined += f" JOIN {quote(root)} {alias[root]} USING ({ID})"
    e = f"e AS (SELECT {', '.join(e_cols)} FROM {joined})"

    hashes = []
    for f in fields:
        recipe = fg.versions.recipes[FieldRef(LEAF, f)]
        parts = [inputs[(d.feature, d.field)] for d in fg.field_deps(LEAF, f)]
        hashes.append(
            f"{native_hash([sql_literal(recipe), *parts])} AS {quote(c.provenance_column(f))}"
        )
    upstream = [c.upstream_data_version_column(r) for r in roots]
    carried = [f"u{i} AS {quote(u)}" for i, u in enumerate(upstream)]
    if leaf_columns is None:
        return (
            f"WITH {e} SELECT 'new' AS status, {ID}, {', '.join(hashes)}, {', '.join(carried)} "
            "FROM e"
        )

    s_cols = [ID, *(f"{quote(c.provenance_column(f))} AS s_{f}" for f in fields)]
    prune = set(upstream) <= leaf_columns
    if prune:
        s_cols += [f"{quote(u)} AS su{i}" for i, u in enumerate(upstream)]
    stored = f"s AS (SELECT {', '.join(s_cols)} FROM {quote(LEAF)})"
    candidate = " OR ".join(
        ["s.sample_id IS NULL", "e.sample_id IS NULL"]
        + [f"e.u{i} IS DISTINCT FROM s.su{i}" for i in range(len(roots))]
        if prune
        else ["true"]
    )
    kept = ", ".join(
        [
            f"coalesce(e.{ID}, s.{ID}) AS {ID}",
            f"e.{ID} IS NOT NULL AS in_e",
            f"s.{ID} IS NOT NULL AS in_s",
            *(f"e.u{i}" for i in range(len(roots))),
            *(f"e.{name}" for name in inputs.values()),
            *(f"s.s_{f}" for f in fields),
        ]
    )
    # MATERIALIZED: filter the candidates before hashing, as our DuckDB engine does.
    cands = (
        f"c AS MATERIALIZED (SELECT {kept} FROM e FULL OUTER JOIN s ON e.{ID} = s.{ID} "
        f"WHERE {candidate})"
    )
    differs = " OR ".join(f"{quote(c.provenance_column(f))} IS DISTINCT FROM s_{f}" for f in fields)
    status = (
        f"CASE WHEN NOT in_s THEN 'new' WHEN NOT in_e THEN 'orphaned' "
        f"WHEN {differs} THEN 'stale' END"
    )
    out = [
        ID,
        *map(quote, map(c.provenance_column, fields)),
        *(a.split(" AS ")[1] for a in carried),
    ]
    return (
        f"WITH {e}, {stored}, {cands}, h AS (SELECT *, {', '.join(hashes)}, "
        f"{', '.join(carried)} FROM c) "
        f"SELECT * FROM (SELECT {status} AS status, {', '.join(out)} FROM h) "
        "WHERE status IS NOT NULL"
    )


def time_floor(graph_name: str, directory: Path) -> dict[str, object]:
    """Connect, run the floor query, fetch to Arrow; one timed run."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    con = duckdb.connect(str(directory / DB_FILE), read_only=True)
    tables = {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
    leaf_columns = None
    if LEAF in tables:
        leaf_columns = {r[0] for r in con.sql(f"DESCRIBE {quote(LEAF)}").fetchall()}
    table = con.sql(floor_query(graph_name, leaf_columns)).to_arrow_table()
    con.close()  # as ours closes its connection inside resolve_update
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    counts = {r["values"]: r["counts"] for r in pc.value_counts(table["status"]).to_pylist()}
    upstream = {
        c.upstream_data_version_column(d.feature) for d in build_graph(spec(graph_name))[LEAF].deps
    }
    return {
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu, 4),
        **{k: int(counts.get(k, 0)) for k in ("new", "stale", "orphaned")},
        "peak_rss_mb": peak_rss_mb(),
        "hashed_candidates_only": leaf_columns is None or upstream <= leaf_columns,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_time = sub.add_parser("time", help="time the floor query on the store in DIR")
    p_time.add_argument("--graph", required=True)
    p_time.add_argument("--dir", type=Path, required=True)
    p_sql = sub.add_parser("sql", help="print the floor query")
    p_sql.add_argument("--graph", required=True)
    p_sql.add_argument("--dir", type=Path, help="the store whose leaf table to read (else none)")
    args = parser.parse_args(argv)
    if args.command == "sql":
        leaf_columns = None
        if args.dir is not None:
            con = duckdb.connect(str(args.dir / DB_FILE), read_only=True)
            leaf_columns = {r[0] for r in con.sql(f"DESCRIBE {quote(LEAF)}").fetchall()}
            con.close()
        print(floor_query(args.graph, leaf_columns))
        return
    print(json.dumps(time_floor(args.graph, args.dir)), flush=True)


if __name__ == "__main__":
    main()
