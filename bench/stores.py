"""The stores side by side: one write of N root rows and the resolve of a downstream feature
(all N new, then N/10 stale), on the DuckDB file store, the Delta store in a local folder,
embedded ClickHouse (chdb) and the Delta store on a local S3 server (moto's); then W writer
processes appending to one Delta table on that server, checked: every write landed, write
sequences unique, no lock file (commits per second).

    python -m bench.stores [--rows 1000000] [--rounds 3] [--writers 16] [--writes 20]
                           [--s3-endpoint http://127.0.0.1:8333]

``--s3-endpoint`` uses an S3 server already running (e.g. ``weed server -s3`` of SeaweedFS)
instead of starting moto's (``bench.s3_server.local_s3_server``); its bucket
``metaxy-bench`` is created if absent.

Prints a table and writes bench/results/stores.json. Each figure is the best of ``--rounds``
(fresh store each round); the machine's load is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import boto3
import polars as pl

from bench.s3_server import local_s3_server
from metaxy_core import FeatureGraph, FeatureSpec, MetadataStore, open_store

RESULTS = Path(__file__).resolve().parent / "results" / "stores.json"
GRAPH = FeatureGraph(
    [
        FeatureSpec(key="clips", id_columns=["clip_id"], fields=["audio", "frames"]),
        FeatureSpec(key="clips/loudness", id_columns=["clip_id"], fields=["audio"], deps=["clips"]),
    ]
)
_WRITER = """
import sys, time
import polars as pl
from metaxy_core import FeatureGraph, FeatureSpec, open_store
uri, writer, writes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = open_store(uri, FeatureGraph([FeatureSpec(key="clips", id_columns=["id"])]))
for k in range(writes):
    frame = pl.DataFrame({"id": [f"{writer}-{k}"], "metaxy_data_version__default": ["h"]})
    store.write("clips", frame)
"""


def _roots(n: int, version: str = "1") -> pl.DataFrame:
    ids = pl.int_range(0, n, eager=True).cast(pl.String)
    return pl.DataFrame(
        {
            "clip_id": "c" + ids,
            "metaxy_data_version__audio": version + ids,
            "metaxy_data_version__frames": "f" + ids,
        }
    )


def _best(rounds: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(rounds))


def _measure(uri: Callable[[], str], n: int, rounds: int) -> dict[str, float]:
    rows = _roots(n)
    changed = rows.with_columns(
        pl.when(pl.int_range(0, n) % 10 == 0)
        .then(pl.lit("x") + pl.col("metaxy_data_version__audio"))
        .otherwise(pl.col("metaxy_data_version__audio"))
        .alias("metaxy_data_version__audio")
    )
    out: dict[str, list[float]] = {"write": [], "resolve_new": [], "resolve_stale": []}
    for _ in range(rounds):
        store: MetadataStore = open_store(uri(), GRAPH)
        start = time.perf_counter()
        store.write("clips", rows)
        out["write"].append(time.perf_counter() - start)
        start = time.perf_counter()
        increment = store.resolve_update("clips/loudness")
        out["resolve_new"].append(time.perf_counter() - start)
        assert increment.counts.new == n
        store.write("clips/loudness", increment.new)
        store.write("clips", changed)
        start = time.perf_counter()
        stale = store.resolve_update("clips/loudness")
        out["resolve_stale"].append(time.perf_counter() - start)
        assert stale.counts.stale == n // 10 + (1 if n % 10 else 0)
    return {k: min(v) for k, v in out.items()}


def _writers(uri: str, bucket: str, writers: int, writes: int) -> dict[str, float]:
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, uri, str(w), str(writes)])
        for w in range(writers)
    ]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    store = open_store(uri, FeatureGraph([FeatureSpec(key="clips", id_columns=["id"])]))
    history = store.read("clips", history=True)
    landed = history.height
    unique = history["metaxy_write_seq"].n_unique()
    prefix = uri.removeprefix(f"delta+s3://{bucket}/")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    locks = [o["Key"] for p in pages for o in p.get("Contents", []) if "lock" in o["Key"].lower()]
    problems = [
        f"{landed} of {writers * writes} writes landed" if landed != writers * writes else "",
        f"{landed - unique} repeated write sequences" if unique != landed else "",
        f"lock files: {locks}" if locks else "",
        f"{sum(c != 0 for c in codes)} writers failed" if any(codes) else "",
    ]
    if any(problems):
        raise SystemExit("concurrent appends: " + "; ".join(p for p in problems if p))
    return {
        "writers": writers,
        "writes": writers * writes,
        "failed_processes": sum(c != 0 for c in codes),
        "landed": landed,
        "unique_write_seqs": unique,
        "seconds": elapsed,
        "commits_per_second": landed / elapsed,
    }


def _s3(endpoint: str | None) -> tuple[AbstractContextManager[str] | None, str]:
    server = None
    if endpoint is None:
        server = local_s3_server()
        endpoint = server.__enter__()
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_ALLOW_HTTP="true",
    )
    s3 = boto3.client("s3", endpoint_url=endpoint)
    if "metaxy-bench" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="metaxy-bench")
    return server, "metaxy-bench"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stores")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--no-s3-rows", action="store_true", help="skip write/resolve on S3")
    parser.add_argument("--s3-endpoint", help="an S3 server already running (default: moto's)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="metaxy-bench-stores-"))
    server, bucket = _s3(args.s3_endpoint)
    load = os.getloadavg()
    stores: dict[str, Callable[[], str]] = {
        "duckdb": lambda: f"duckdb://{work}/{uuid.uuid4().hex}.duckdb",
        "delta-file": lambda: f"delta+file://{work}/{uuid.uuid4().hex}",
        "clickhouse": lambda: f"chdb://{work}/{uuid.uuid4().hex}",
    }
    if not args.no_s3_rows:
        stores["delta-s3"] = lambda: f"delta+s3://{bucket}/{uuid.uuid4().hex}"
    results: dict[str, object] = {
        "rows": args.rows,
        "s3": args.s3_endpoint or "moto",
        "load_before": load,
        "stores": {},
    }
    print(f"n = {args.rows:,}, best of {args.rounds}; load {load[0]:.2f} {load[1]:.2f}")
    print(f"{'store':<12}{'write s':>10}{'resolve new s':>15}{'resolve stale s':>17}")
    for name, uri in stores.items():
        figures = _measure(uri, args.rows, args.rounds)
        results["stores"][name] = figures  # type: ignore[index]
        print(
            f"{name:<12}{figures['write']:>10.2f}{figures['resolve_new']:>15.2f}"
            f"{figures['resolve_stale']:>17.2f}"
        )
    if args.writers:
        target = f"delta+s3://{bucket}/{uuid.uuid4().hex}"
        figures = _writers(target, bucket, args.writers, args.writes)
        results["writers"] = figures
        print(
            f"{figures['writers']} writers x {args.writes} writes on one Delta table on the "
            f"local S3 server: {figures['landed']}/{figures['writes']} landed, "
            f"{figures['unique_write_seqs']} unique write sequences, no lock file, "
            f"{figures['seconds']:.1f} s, {figures['commits_per_second']:.2f} commits/s"
        )
    results["load_after"] = os.getloadavg()
    print(f"load after: {results['load_after'][0]:.2f}")  # type: ignore[index]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if server is not None:
        server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
