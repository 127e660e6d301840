"""Benchmark of the field-aware sensor's tick: 6 features of N samples each.

Run: ``python -m bench.sensor_tick [--n 1000000] [--ticks 5]``. Prints and writes
``bench/results/sensor_tick.json``: median tick seconds for

- ``skip``: a tick whose cursor equals the store's write sequence (nothing written since);
- ``idle``: a full evaluation (no cursor) of a store where everything is up to date;
- ``changed_1pct``: a full evaluation after 1% of the root samples got new audio.
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

from metaxy_core import FeatureSpec, FieldDep, FieldSpec
from metaxy_dagster import (
    MetaxyIOManager,
    MetaxyStoreResource,
    build_metaxy_sensor,
    metaxy_asset,
)
from metaxy_dagster.registry import feature_graph

RESULTS = Path(__file__).parent / "results" / "sensor_tick.json"
IDS = ["clip_id"]


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


def _root(n: int, changed_every: int = 0) -> pl.DataFrame:
    i = pl.int_range(n, eager=True)
    audio = pl.format("a{}", i)
    if changed_every:
        audio = pl.when(i % changed_every == 0).then(pl.format("b{}", i)).otherwise(audio)
    return pl.select(
        clip_id=pl.format("c{}", i),
        metaxy_data_version__audio=audio,
        metaxy_data_version__frames=pl.format("f{}", i),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metaxy.duckdb"
        assets = []
        for spec in _specs():

            @metaxy_asset(spec=spec)
            def _asset(context: object) -> None:  # never run: the benchmark writes directly
                raise NotImplementedError

            assets.append(_asset)
        resource = MetaxyStoreResource(path=str(path))
        store = resource.get_store()
        start = time.perf_counter()
        store.write("video/raw", _root(args.n))
        for feature in feature_graph().topological_order()[1:]:
            store.write(feature, store.resolve_update(feature).new)
        setup = time.perf_counter() - start
        sensor = build_metaxy_sensor(assets, store=resource)
        resources = {"metaxy_store": resource, "metaxy_io_manager": MetaxyIOManager(store=resource)}
        defs = dg.Definitions(assets=assets, sensors=[sensor], resources=resources)

        result = {"n": args.n, "features": 6, "setup_seconds": round(setup, 2)}
        result["skip"] = _median_tick(sensor, defs, str(store.last_write_seq()), args.ticks)
        result["idle"] = _median_tick(sensor, defs, None, args.ticks)
        store.write(
            "video/raw", _root(args.n, changed_every=100).filter(pl.int_range(pl.len()) % 100 == 0)
        )
        result["changed_1pct"] = _median_tick(sensor, defs, None, args.ticks)
        context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), definitions=defs)
        requested = sensor.evaluate_tick(context).run_requests or []
        result["requested"] = sorted(
            "/".join(r.asset_selection[0].path)
            for r in requested  # type: ignore[index]
        )
        assert result["requested"] == ["audio/features", "audio/transcript", "video/crop"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
