"""Benchmark of the field-aware sensor's tick: 6 features of N samples each.

Run: ``python -m bench.sensor_tick [--n 1000000] [--ticks 5] [--shards K]``. Prints and writes
``bench/results/sensor_tick.json`` (``sensor_tick_shards<K>.json`` with ``--shards``): median
tick seconds for

- ``skip``: a tick whose cursor equals the store's write sequence (nothing written since);
- ``idle``: a full evaluation (no cursor) of a store where everything is up to date;
- ``changed_1pct``: a full evaluation after 1% of the root samples got new audio.

With ``--shards K`` the five non-root assets are partitioned in K hash shards, and the same run
also times counting every feature's shards both ways, side by side: ``count_update_by_shard``
(one pass, what the sensor does) and K ``count_update(filter=HashShard(K, i))`` calls (one pass
per shard), idle and after the 1% change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl

from metaxy_core import FeatureGraph, FeatureSpec, FieldDep, FieldSpec, HashShard, MetadataStore
from metaxy_dagster import (
    ColumnPartitions,
    HashShardPartitions,
    MetaxyIOManager,
    MetaxyPartitions,
    MetaxyStoreResource,
    build_metaxy_sensor,
    metaxy_asset,
)

RESULTS = Path(__file__).parent / "results" / "sensor_tick.json"
IDS = ["clip_id"]
SPLIT = "split"


def _specs() -> list[FeatureSpec]:
    audio = [FieldDep("video/raw", ["audio"])]
    return [
        FeatureSpec(key="video/raw", id_columns=IDS, fields=["audio", "frames"]),
        FeatureSpec(
            key="video/crop", id_columns=IDS, fields=["audio", "frames"], deps=["video/raw"]
        ),
        FeatureSpec(
            key="vision/faces", id_columns=IDS, deps=["video/crop"],
            fields=[FieldSpec(key="faces", deps=[FieldDep("video/crop", ["frames"])])],
        ),
        FeatureSpec(
            key="audio/transcript", id_columns=IDS, deps=["video/raw"],
            fields=[FieldSpec(key="text", deps=audio)],
        ),
        FeatureSpec(
            key="audio/features", id_columns=IDS, deps=["video/raw"],
            fields=[FieldSpec(key="features", deps=audio)],
        ),
        FeatureSpec(
            key="train/manifest", id_columns=IDS,
            deps=["vision/faces", "audio/transcript", "audio/features"],
        ),
    ]  # fmt: skip


def _root(n: int, changed_every: int = 0, values: int = 0) -> pl.DataFrame:
    i = pl.int_range(n, eager=True)
    audio = pl.format("a{}", i)
    if changed_every:
        audio = pl.when(i % changed_every == 0).then(pl.format("b{}", i)).otherwise(audio)
    return pl.select(
        clip_id=pl.format("c{}", i),
        metaxy_data_version__audio=audio,
        metaxy_data_version__frames=pl.format("f{}", i),
        # The partition column (all "p0" without column partitions): it passes downstream.
        **{SPLIT: pl.format("p{}", i % max(values, 1))},
    )


def _median_tick(
    sensor: dg.SensorDefinition, defs: dg.Definitions, cursor: str | None, ticks: int
) -> float:
    instance = dg.DagsterInstance.ephemeral()
    times = []
    for _ in range(ticks):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        start = time.perf_counter()
        sensor.evaluate_tick(context)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _count_all(store: MetadataStore, partitions: MetaxyPartitions, *, one_pass: bool) -> float:
    """Seconds to count every partition of every non-root feature, in one pass or one pass per
    partition."""
    start = time.perf_counter()
    with store:  # one connection, as a sensor tick holds
        for feature in store.graph.topological_order()[1:]:
            _count(store, feature, partitions, one_pass=one_pass)
    return time.perf_counter() - start


def _count(
    store: MetadataStore, feature: str, partitions: MetaxyPartitions, *, one_pass: bool
) -> None:
    if isinstance(partitions, HashShardPartitions):
        if one_pass:
            store.count_update_by_shard(feature, partitions.count)
        else:
            for index in range(partitions.count):
                store.count_update(feature, filter=HashShard(partitions.count, index))
        return
    keys = partitions.partitions_def.get_partition_keys()
    if one_pass:
        store.count_update_by_column(feature, partitions.column, keys)
    else:
        for key in keys:
            store.count_update(feature, filter=partitions.filter(key))


def _partition_counting(
    store: MetadataStore, partitions: MetaxyPartitions, ticks: int
) -> dict[str, float]:
    """Median seconds of both ways of counting, interleaved, and their ratio."""
    one, per = [], []
    for _ in range(ticks):
        one.append(_count_all(store, partitions, one_pass=True))
        per.append(_count_all(store, partitions, one_pass=False))
    one_pass, per_partition = statistics.median(one), statistics.median(per)
    return {
        "one_pass": round(one_pass, 3),
        "one_count_per_partition": round(per_partition, 3),
        "ratio": round(per_partition / one_pass, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--shards", type=int, default=0, help="hash shards of non-root assets")
    parser.add_argument(
        "--column-values", type=int, default=0, help="partitions by a column with this many values"
    )
    args = parser.parse_args()
    partitions: MetaxyPartitions | None = None
    if args.shards:
        partitions = HashShardPartitions(args.shards)
    elif args.column_values:
        values = [f"p{j}" for j in range(args.column_values)]
        partitions = ColumnPartitions(SPLIT, dg.StaticPartitionsDefinition(values))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metaxy.duckdb"
        graph = FeatureGraph(_specs())
        assets = []
        # Never run: the benchmark writes directly.
        for spec in graph:
            if spec.is_root:

                @metaxy_asset(spec=spec)
                def _root_asset(context: object) -> None:
                    raise NotImplementedError

                assets.append(_root_asset)
                continue

            @metaxy_asset(spec=spec, graph=graph, partitions=partitions)
            def _asset(context: object, increment: object) -> None:
                raise NotImplementedError

            assets.append(_asset)
        resource = MetaxyStoreResource(path=str(path))
        store = resource.get_store(graph)
        start = time.perf_counter()
        store.write("video/raw", _root(args.n, values=args.column_values))
        for feature in graph.topological_order()[1:]:
            store.write(feature, store.resolve_update(feature).new)
        setup = time.perf_counter() - start
        sensor = build_metaxy_sensor(assets, store=resource)
        resources = {"metaxy_store": resource, "metaxy_io_manager": MetaxyIOManager(store=resource)}
        defs = dg.Definitions(assets=assets, sensors=[sensor], resources=resources)

        result: dict[str, object] = {"n": args.n, "features": 6, "shards": args.shards}
        result["column_values"] = args.column_values
        result["setup_seconds"] = round(setup, 2)
        result["skip"] = _median_tick(sensor, defs, str(store.last_write_seq()), args.ticks)
        result["idle"] = _median_tick(sensor, defs, None, args.ticks)
        if partitions is not None:
            result["count_all_partitions_idle"] = _partition_counting(store, partitions, args.ticks)
        changed = _root(args.n, changed_every=100, values=args.column_values)
        store.write("video/raw", changed.filter(pl.int_range(pl.len()) % 100 == 0))
        result["changed_1pct"] = _median_tick(sensor, defs, None, args.ticks)
        if partitions is not None:
            result["count_all_partitions_changed_1pct"] = _partition_counting(
                store, partitions, args.ticks
            )
        context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), definitions=defs)
        requested = sensor.evaluate_tick(context).run_requests or []
        runs: dict[str, int] = {}
        for request in requested:
            feature = "/".join(request.asset_selection[0].path)  # type: ignore[index]
            runs[feature] = runs.get(feature, 0) + 1
        result["requested_runs"] = dict(sorted(runs.items()))
        every = max(args.shards, 1)  # 1% of the samples reach every hash shard
        if args.column_values:  # the changed samples (i % 100 == 0) hold these values
            every = len({i % args.column_values for i in range(0, args.n, 100)})
        assert result["requested_runs"] == {
            "audio/features": every,
            "audio/transcript": every,
            "video/crop": every,
        }, result["requested_runs"]
    output = RESULTS
    if args.shards:
        output = RESULTS.with_name(f"sensor_tick_shards{args.shards}.json")
    elif args.column_values:
        output = RESULTS.with_name(f"sensor_tick_columns{args.column_values}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
