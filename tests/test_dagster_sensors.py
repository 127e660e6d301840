"""The field-aware sensor, the up-to-date checks and the root schedule, on real Dagster."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metaxy_core import FieldDep, FieldSpec, hash_string
from metaxy_core.testing import root_samples
from metaxy_dagster import (
    ColumnPartitions,
    HashShardPartitions,
    MetaxyStoreResource,
    asset_key,
    build_metaxy_checks,
    build_metaxy_sensor,
    build_root_schedule,
    metaxy_asset,
)
from tests.test_dagster_assets import IDS, Pipeline


class Ticker:
    """Evaluates a sensor tick after tick, carrying the cursor as Dagster does."""

    def __init__(
        self, pipeline: Pipeline, assets: list[dg.AssetsDefinition], instance: dg.DagsterInstance
    ) -> None:
        self.store = MetaxyStoreResource(path=str(pipeline.path))
        self.sensor = build_metaxy_sensor(assets, store=self.store)
        self.instance = instance
        self.definitions = dg.Definitions(
            assets=assets, sensors=[self.sensor], resources=pipeline.resources()
        )
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult | dg.SkipReason:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.definitions
        )
        data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return data

    def requested(self) -> list[tuple[str, str | None]]:
        data = self.tick()
        return sorted(
            ("/".join(r.asset_selection[0].path), r.partition_key)  # type: ignore[index]
            for r in data.run_requests or []
        )


def _land(
    p: Pipeline, assets: list[dg.AssetsDefinition], requests: list[tuple[str, str | None]]
) -> None:
    """Run what the sensor requested, as Dagster would."""
    for feature, partition in requests:
        result = p.materialize(assets, selection=[asset_key(feature)], partition_key=partition)
        assert result.success


def test_audio_change_requests_only_the_audio_branch(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    p = Pipeline(tmp_path)
    assets = p.assets()
    p.materialize(assets)
    ticker = Ticker(p, assets, dagster_instance)
    first = ticker.tick()
    assert first.run_requests == []
    assert first.skip_message == "every metaxy asset is up to date at write 5"
    assert ticker.tick().skip_message == "no new writes since write 5"

    for i in IDS[:5]:
        p.audio[i] = "new"
    p.materialize(assets, selection=[asset_key("video/raw")])
    tick = ticker.tick()
    assert sorted(
        ("/".join(r.asset_selection[0].path), r.tags["metaxy/stale"]) for r in tick.run_requests
    ) == [  # type: ignore[index]
        ("audio/transcript", "5"),
        ("video/crop", "5"),
    ]
    # Repeating the tick on the same store state requests the same run keys (idempotent).
    again = Ticker(p, assets, dagster_instance).tick()
    assert {r.run_key for r in again.run_requests} == {r.run_key for r in tick.run_requests}
    keys = {r.tags["metaxy/feature"]: r.run_key for r in tick.run_requests}

    # A write of another asset (crop) does not change the key of work still pending.
    _land(p, assets, [("video/crop", None)])
    pending = ticker.tick().run_requests
    assert [r.run_key for r in pending] == [keys["audio/transcript"]]
    _land(p, assets, [("audio/transcript", None)])
    assert ticker.requested() == [("train/manifest", None)]
    _land(p, assets, [("train/manifest", None)])
    assert ticker.requested() == []
    seq = p.store().last_write_seq()
    assert ticker.tick().skip_message == f"no new writes since write {seq}"


def test_frames_change_requests_crop_then_faces_never_transcript(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    p = Pipeline(tmp_path)
    assets = p.assets()
    p.materialize(assets)
    ticker = Ticker(p, assets, dagster_instance)
    ticker.tick()
    for i in IDS[:3]:
        p.frames[i] = "new"
    p.materialize(assets, selection=[asset_key("video/raw")])
    assert ticker.requested() == [("video/crop", None)]  # faces waits for crop
    _land(p, assets, [("video/crop", None)])
    assert ticker.requested() == [("vision/faces", None)]
    _land(p, assets, [("vision/faces", None)])
    assert ticker.requested() == [("train/manifest", None)]


def test_hash_shards_request_only_changed_partitions(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    p = Pipeline(tmp_path)
    shards = HashShardPartitions(4)
    assets = p.assets(partitions=shards)
    for k in range(4):
        p.materialize(assets, partition_key=f"shard-{k}")
    shard_of = {i: hash_string(i) % 4 for i in IDS}
    by_shard: dict[int, list[str]] = {}
    for i in IDS:
        by_shard.setdefault(shard_of[i], []).append(i)
    changed = [*by_shard[0][:2], by_shard[3][0]]  # 3 samples in 2 shards
    ticker = Ticker(p, assets, dagster_instance)
    assert ticker.requested() == []
    for i in changed:
        p.audio[i] = "new"
    for k in (0, 3):
        p.materialize(assets, selection=[asset_key("video/raw")], partition_key=f"shard-{k}")
    assert ticker.requested() == [
        ("audio/transcript", "shard-0"),
        ("audio/transcript", "shard-3"),
        ("video/crop", "shard-0"),
        ("video/crop", "shard-3"),
    ]


class DatedPipeline(Pipeline):
    """The reference pipeline with a day and a split column on every sample."""

    def samples(self) -> pl.DataFrame:
        index = pl.int_range(pl.len())
        return (
            super()
            .samples()
            .with_columns(
                day=pl.lit(dt.date(2024, 1, 1)) + pl.duration(days=index % 3),
                split=pl.when(index % 2 == 0).then(pl.lit("train")).otherwise(pl.lit("eval")),
            )
        )


@pytest.mark.parametrize(
    "partitions",
    [
        ColumnPartitions(
            "day", dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-04")
        ),
        ColumnPartitions("split", dg.StaticPartitionsDefinition(["train", "eval", "test"])),
    ],
    ids=["date-column", "string-column"],
)
def test_column_partitions_request_only_changed_partitions(
    tmp_path: Path, partitions: ColumnPartitions, dagster_instance: dg.DagsterInstance
) -> None:
    p = DatedPipeline(tmp_path)
    assets = p.assets(partitions=partitions)
    keys = partitions.partitions_def.get_partition_keys()
    for key in keys:
        assert p.materialize(assets, partition_key=key).success
    ticker = Ticker(p, assets, dagster_instance)
    assert ticker.requested() == []
    rows = p.samples().with_columns(key=pl.col(partitions.column).cast(pl.String))
    changed = rows.filter(pl.col("key") == keys[1]).head(3)["video_id"].to_list()
    for i in changed:
        p.audio[i] = "new"
    p.materialize(assets, selection=[asset_key("video/raw")], partition_key=keys[1])
    assert ticker.requested() == [
        ("audio/transcript", keys[1]),
        ("video/crop", keys[1]),
    ]
    p.materialize(assets, partition_key=keys[1])
    assert sorted(p.received("video/crop")) == sorted(changed)


def test_up_to_date_check_fails_when_stale_and_passes_after(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    assets = p.assets()
    store = MetaxyStoreResource(path=str(p.path))
    checks = build_metaxy_checks(assets, store=store)
    assert sorted(c.check_key.asset_key.to_user_string() for c in checks) == [
        "audio/transcript", "train/manifest", "video/crop", "vision/faces",
    ]  # fmt: skip
    result = p.materialize([*assets, *checks])
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 4 and all(e.passed for e in evaluations)

    for i in IDS[:7]:
        p.audio[i] = "new"
    p.materialize(assets, selection=[asset_key("video/raw")])
    crop_check = next(c for c in checks if c.check_key.asset_key == asset_key("video/crop"))
    failing = p.materialize([*assets, crop_check], selection=dg.AssetSelection.checks(crop_check))
    evaluation = failing.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    assert {k: v.value for k, v in evaluation.metadata.items()} == {
        "new": 0, "stale": 7, "orphaned": 0, "stale_by_field": {"audio": 7}, "failed_runs": {},
        "failed": 0, "failed_share": 0.0, "failed_preview": {},
    }  # fmt: skip
    passing = p.materialize([*assets, crop_check], selection=[asset_key("video/crop")])
    assert [e.passed for e in passing.get_asset_check_evaluations()] == [True]


def test_root_schedule_requests_a_scan_of_the_roots(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    p = Pipeline(tmp_path)
    assets = p.assets()
    schedule = build_root_schedule(assets, cron_schedule="0 * * * *")
    defs = dg.Definitions(assets=assets, schedules=[schedule], resources=p.resources())
    job = defs.resolve_job_def("metaxy_root_scan_job")
    assert job.asset_layer.executable_asset_keys == {asset_key("video/raw")}
    data = schedule.evaluate_tick(dg.build_schedule_context())
    assert len(data.run_requests or []) == 1
    assert schedule.cron_schedule == "0 * * * *"
    result = job.execute_in_process(instance=dagster_instance)
    assert result.success
    assert p.store().read("video/raw").height == len(IDS)


def _subtitled(path: Path, fields: list[str]) -> list[dg.AssetsDefinition]:
    """A root with ``fields`` and a transcript reading the last of them."""

    @metaxy_asset(key="video/raw", id_columns=["video_id"], fields=fields)
    def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return root_samples(
            "video_id", IDS[:4], **{f: [f"{f}-{i}" for i in IDS[:4]] for f in fields}
        )

    @metaxy_asset(
        key="audio/transcript",
        id_columns=["video_id"],
        deps=[raw],
        fields=[FieldSpec(key="text", deps=[FieldDep("video/raw", [fields[-1]])])],
    )
    def transcript(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        return increment.select("video_id")

    return [raw, transcript]


def test_a_field_added_to_a_root_requests_the_roots_scan_then_its_readers(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    p = Pipeline(tmp_path)
    before = _subtitled(p.path, ["audio"])
    assert p.materialize(before).success
    after = _subtitled(p.path, ["audio", "subtitles"])  # the code gains raw.subtitles
    ticker = Ticker(p, after, dagster_instance)
    # transcript reads a field no stored row of raw has: the tick asks for raw's scan.
    [scan] = ticker.tick().run_requests
    assert scan.asset_selection == [asset_key("video/raw")]
    assert scan.tags["metaxy/reason"] == "field not written"
    _land(p, after, [("video/raw", None)])
    [run] = ticker.tick().run_requests
    assert (run.asset_selection, run.tags["metaxy/stale"]) == ([asset_key("audio/transcript")], "4")

    # Without the root among the sensor's assets, the tick says what to materialize.
    p2 = Pipeline(tmp_path / "two")
    (tmp_path / "two").mkdir()
    assert p2.materialize(_subtitled(p2.path, ["audio"])).success
    raw, transcript = _subtitled(p2.path, ["audio", "subtitles"])
    sensor = build_metaxy_sensor([transcript], store=MetaxyStoreResource(path=str(p2.path)))
    defs = dg.Definitions(assets=[raw, transcript], sensors=[sensor], resources=p2.resources())
    context = dg.build_sensor_context(instance=dagster_instance, definitions=defs)
    tick = sensor.evaluate_tick(context)
    assert tick.run_requests == []
    assert tick.skip_message == (
        "waiting for a write of video/raw, which lacks a field its downstream reads (added to "
        "the code since); materialize video/raw (write 2)"
    )
