"""Benchmark of ``resolve_update``: ours (Polars and DuckDB engines), the floor, and the peer;
and of one write of N root rows: ours against a plain ``INSERT`` of the same columns.

    python -m bench [--sizes 10000,100000,1000000,10000000] [--graphs simple,pruned,wide]
                    [--phases new,stale] [--rounds 3] [--impls ours-polars,...] [--no-peer]
                    [--peer-max-n 1000000] [--peer-python .venv-peer/bin/python] [--fresh]
                    [--concurrency-writers 16] [--concurrency-rows 50000] [--only-concurrency]
                    [--no-writes]

For every (graph, n, phase): prepare (or reuse) the stores, then run ``--rounds`` interleaved
rounds; in each round every implementation is timed once, in a fresh subprocess, on a fresh copy
of its prepared store. For every n, the write of the first graph's root is timed the same way.
Then the concurrency section (:mod:`bench.concurrency`): many processes writing to one store
file at once. Prints tables and writes everything to ``bench/results/latest.json``.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import concurrency
from bench.children import (
    DEFAULT_PEER_PYTHON,
    ROOT,
    WORK,
    ChildError,
    ensure_peer_python,
    fresh_copy,
    peer_versions,
    run_child,
)
from bench.graphs import GRAPHS, PHASES, expected_counts, spec
from bench.impls import IMPLS
from bench.prepare import core_source_hash, prepare_ours, prepare_peer, store_dir
from bench.report import machine_info, size_label, summarize, tables, write_table

DEFAULT_SIZES = "10000,100000,1000000,10000000"
PEER_TOO_BIG = (
    "n > --peer-max-n={max_n:,}: the peer's setup of 10M rows takes very long (it must write in "
    "1M-row chunks) and a single 10M-row write() into its store is known to be OOM-killed (24 GiB)"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated row counts")
    parser.add_argument("--graphs", default=",".join(GRAPHS))
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--impls", default=",".join(IMPLS), help=f"subset of {','.join(IMPLS)}")
    parser.add_argument("--no-peer", action="store_true", help="skip metaxy 0.1.11")
    parser.add_argument("--peer-max-n", type=int, default=1_000_000)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--fresh", action="store_true", help="rebuild the prepared stores")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="default: bench/results/latest.json (concurrency.json with --only-concurrency)",
    )
    parser.add_argument(
        "--concurrency-writers",
        type=int,
        default=16,
        help="processes writing to one store at once in the concurrency section (0 skips it)",
    )
    parser.add_argument("--concurrency-rows", type=int, default=50_000, help="rows per writer")
    parser.add_argument(
        "--only-concurrency", action="store_true", help="run only the concurrency section"
    )
    parser.add_argument("--no-writes", action="store_true", help="skip the write benchmark")
    args = parser.parse_args(argv)
    if args.output is None:
        name = "concurrency.json" if args.only_concurrency else "latest.json"
        args.output = ROOT / "bench" / "results" / name
    args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    args.graphs = [g for g in args.graphs.split(",") if g]
    args.phases = [p for p in args.phases.split(",") if p]
    args.impls = [i for i in args.impls.split(",") if i]
    for g in args.graphs:
        spec(g)
    for name, values, known in (("phase", args.phases, PHASES), ("impl", args.impls, IMPLS)):
        unknown = [v for v in values if v not in known]
        if unknown:
            parser.error(f"unknown {name} {', '.join(unknown)}; choose from {', '.join(known)}")
    if (args.no_peer or args.only_concurrency) and "peer" in args.impls:
        args.impls.remove("peer")
    args.impls = [i for i in IMPLS if i in args.impls]  # the fixed round order
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def check_counts(case: dict[str, Any]) -> None:
    """Record (and print loudly) every run whose counts differ from the expected ones."""
    expected = case["expected"]
    for impl, runs in case["runs"].items():
        for run in runs:
            if "seconds" not in run:
                continue
            wrong = {k: run[k] for k in IMPLS[impl].checked if run[k] != expected[k]}
            if wrong:
                message = (
                    f"COUNT MISMATCH {case['graph']} n={case['n']:,} {case['phase']} {impl} "
                    f"round {run['round']}: got {wrong}, expected {expected}"
                )
                case["mismatches"].append(message)
                print(f"!!! {message}", flush=True)


def timed_run(impl: str, graph: str, source: Path, peer_python: Path, log: Path) -> dict[str, Any]:
    """One timed run of ``impl`` in a fresh process on a fresh copy of ``source``."""
    copy = fresh_copy(source, WORK / "runs" / impl)
    try:
        result = run_child(IMPLS[impl].command(graph, copy, peer_python), log)
    except ChildError as exc:
        print(f"!!! {impl} failed: {exc}", flush=True)
        return {"error": str(exc)}
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    run = {**result.data, "child_maxrss_mb": result.maxrss_mb}
    print(
        f"    {impl:<17} {run['seconds']:8.3f} s  new={run['new']:,} stale={run['stale']:,} "
        f"orphaned={run['orphaned']:,}  peak {run['peak_rss_mb']:.0f} MiB",
        flush=True,
    )
    return run


def run_case(
    args: argparse.Namespace, graph: str, n: int, phase: str, peer_skip: str | None
) -> dict[str, Any]:
    """Prepare the stores of one case and time every implementation ``args.rounds`` times."""
    log = WORK / "logs" / f"{graph}-{n}-{phase}.log"
    case: dict[str, Any] = {
        "graph": graph,
        "n": n,
        "phase": phase,
        "expected": expected_counts(spec(graph), n, phase),
        "setup": {},
        "runs": {},
        "skipped": {},
        "errors": [],
        "mismatches": [],
        "metaxy_core_sources": core_source_hash(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    impls = list(args.impls)
    if "peer" in impls and (peer_skip or n > args.peer_max_n):
        reason = peer_skip or PEER_TOO_BIG.format(max_n=args.peer_max_n)
        case["skipped"]["peer"] = reason
        print(f"  peer skipped for n={n:,}: {reason}", flush=True)
        impls.remove("peer")
    sources: dict[str, Path] = {}
    for store in ("ours", "peer"):
        if not any(IMPLS[i].store == store for i in impls):
            continue
        try:
            if store == "ours":
                case["setup"][store] = prepare_ours(graph, n, phase, fresh=args.fresh, log=log)
            else:
                case["setup"][store] = prepare_peer(
                    graph, n, phase, python=args.peer_python, fresh=args.fresh, log=log
                )
            sources[store] = store_dir(store, graph, n, phase)
        except ChildError as exc:
            failed = [i for i in impls if IMPLS[i].store == store]
            for impl in failed:
                case["skipped"][impl] = f"setup of the {store} store failed"
            case["errors"].append(f"setup of the {store} store failed: {exc}")
            print(f"!!! setup of the {store} store failed, skipping {failed}: {exc}", flush=True)
            impls = [i for i in impls if i not in failed]
    for rnd in range(1, args.rounds + 1):
        print(f"  round {rnd}", flush=True)
        for impl in impls:
            run = timed_run(impl, graph, sources[IMPLS[impl].store], args.peer_python, log)
            case["runs"].setdefault(impl, []).append({"round": rnd, **run})
            if "error" in run:
                case["errors"].append(f"{impl} round {rnd}: {run['error']}")
    check_counts(case)
    summarize(case)
    return case


WRITE_IMPLS = ("ours", "insert")


def run_writes(args: argparse.Namespace, graph: str, n: int) -> dict[str, Any]:
    """Time one write of ``n`` root rows of ``graph``, ours and the plain insert, interleaved."""
    log = WORK / "logs" / f"write-{graph}-{n}.log"
    case: dict[str, Any] = {"graph": graph, "n": n, "runs": {}, "errors": []}
    case["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    for rnd in range(1, args.rounds + 1):
        print(f"  round {rnd}", flush=True)
        for impl in WRITE_IMPLS:
            directory = WORK / "runs" / f"write-{impl}"
            cmd = [sys.executable, "-m", "bench.write", "time", "--graph", graph, "--n", str(n)]
            try:
                result = run_child([*cmd, "--dir", str(directory), "--impl", impl], log)
            except ChildError as exc:
                print(f"!!! write {impl} failed: {exc}", flush=True)
                case["errors"].append(f"write {impl} round {rnd}: {exc}")
                continue
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            run = {"round": rnd, **result.data, "child_maxrss_mb": result.maxrss_mb}
            case["runs"].setdefault(impl, []).append(run)
            print(
                f"    write {impl:<7} {run['seconds']:8.3f} s  peak {run['peak_rss_mb']:.0f} MiB",
                flush=True,
            )
    medians = {
        impl: round(statistics.median(r["seconds"] for r in runs), 4)
        for impl, runs in case["runs"].items()
    }
    case["median_seconds"] = medians
    case["peak_rss_mb"] = {i: max(r["peak_rss_mb"] for r in rs) for i, rs in case["runs"].items()}
    if len(medians) == 2 and medians["insert"] > 0:
        case["ratio_ours_insert"] = round(medians["ours"] / medians["insert"], 3)
    return case


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    peer_skip = None
    if "peer" in args.impls:
        peer_skip = ensure_peer_python(args.peer_python)
        if peer_skip:
            print(f"!!! the peer will not run: {peer_skip}", flush=True)
    run_peer = "peer" in args.impls and not peer_skip
    results: dict[str, Any] = {
        "complete": False,
        "machine": machine_info(),
        "peer_versions": peer_versions(args.peer_python) if run_peer else None,
        "args": {
            "sizes": args.sizes,
            "graphs": args.graphs,
            "phases": args.phases,
            "rounds": args.rounds,
            "impls": args.impls,
            "peer_max_n": args.peer_max_n,
        },
        "impls": {name: IMPLS[name].note for name in args.impls},
        "notes": [
            "seconds: wall time inside the timed child of opening the store, resolving the "
            "leaf's increment and collecting new/stale/orphaned into memory (imports and graph "
            "declaration excluded); each run is a fresh process on a fresh copy of the store",
            "peer: metaxy 0.1.11 runs offline with xxh64 macros defined as DuckDB's native "
            "hash(): different bits from real xxhash64, the same class of cost",
            "floor: one hand-written DuckDB query hashing with DuckDB's built-in hash() over "
            "the typed 64-bit values (the speed bound, not our bits); its stale-phase stale "
            "count is not comparable (every candidate differs)",
            "writes: one write of N root rows into a new file; insert = a plain CREATE TABLE and "
            "INSERT of the same columns",
        ],
        "cases": [],
        "writes": [],
    }
    try:
        for n in sorted(args.sizes) if not args.only_concurrency else []:
            for graph in args.graphs:
                for phase in args.phases:
                    print(f"== {graph} n={n:,} ({size_label(n)}) phase={phase}", flush=True)
                    results["cases"].append(run_case(args, graph, n, phase, peer_skip))
                    write_results(args.output, results)
            if not args.no_writes:
                print(f"== write of {size_label(n)} rows of {args.graphs[0]}'s root", flush=True)
                results["writes"].append(run_writes(args, args.graphs[0], n))
                write_results(args.output, results)
    finally:
        shutil.rmtree(WORK / "runs", ignore_errors=True)
    if args.concurrency_writers > 0:
        print(f"== concurrency: {args.concurrency_writers} writers", flush=True)
        results["concurrency"] = concurrency.run(args.concurrency_writers, args.concurrency_rows)
        write_results(args.output, results)
    results["complete"] = True
    seen = {case["metaxy_core_sources"] for case in results["cases"]} | {core_source_hash()}
    results["metaxy_core_changed_during_run"] = len(seen) > 1
    write_results(args.output, results)
    print()
    if results["cases"]:
        print(tables(results["cases"], args.impls, args.rounds))
        print()
    if results["writes"]:
        print(write_table(results["writes"], args.rounds))
        print()
    if "concurrency" in results:
        print(concurrency.report(results["concurrency"]))
        print()
    if results["cases"]:
        print("peer: metaxy 0.1.11 with DuckDB-native hash() macros for xxh64 (offline): different")
        print("bits, same class of cost. floor: one DuckDB query with its built-in hash() over the")
        print("typed values (the speed bound; other bits: in the stale phase all are stale).")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    skipped = {r for case in results["cases"] for r in case["skipped"].values()}
    for reason in sorted(skipped):
        print(f"peer skipped: {reason}")
    print(f"results written to {args.output}")
    if results["metaxy_core_changed_during_run"]:
        print("!!! metaxy_core's sources changed during the run: cases ran different code")
    problems = [m for case in results["cases"] for m in case["mismatches"] + case["errors"]]
    problems += [e for case in results["writes"] for e in case["errors"]]
    figures = results.get("concurrency")
    if figures and not (figures["all_writes_landed"] and figures["reader_counts_consistent"]):
        problems.append(f"concurrency: not every write landed or the reader's counts: {figures}")
    if problems:
        print(f"\n!!! {len(problems)} problem(s):", *problems, sep="\n!!! ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
