"""Declarative automation that sees fields: metaxy_eager, evaluated by Dagster's own evaluator
(the sensor off), on a real instance and store file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metaxy_core import FieldDep, FieldSpec
from metaxy_core.testing import root_samples
from metaxy_dagster import (
    MetaxyIOManager,
    MetaxyStoreResource,
    build_metaxy_sensor,
    metaxy_asset,
    metaxy_eager,
)

IDS = [f"v{i}" for i in range(6)]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real instance, disposed after the test (its temporary folder with it)."""
    with dg.instance_for_test() as instance:
        yield instance


def test_an_audio_edit_automates_exactly_the_audio_branch(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"))
    audio = {i: f"a-{i}" for i in IDS}
    eager = metaxy_eager(store)
    computed: dict[str, list[str]] = {}

    @metaxy_asset(key="video/raw", id_columns=["video_id"], fields=["audio", "frames"])
    def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
        frames = [f"f-{i}" for i in IDS]
        return root_samples("video_id", IDS, audio=list(audio.values()), frames=frames)

    def step(key: str, reads: list[tuple[str, str]], deps: list[dg.AssetsDefinition]) -> object:
        """An asset with one field reading ``reads`` (else raw's fields, read 1:1)."""
        out = FieldSpec(key="out", deps=[FieldDep(f, [x]) for f, x in reads])
        fields: list[FieldSpec | str] = [out] if reads else ["audio", "frames"]

        @metaxy_asset(
            key=key, id_columns=["video_id"], deps=deps, fields=fields, automation_condition=eager,
        )  # fmt: skip
        def compute(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
            computed.setdefault(key, []).extend(increment["video_id"])
            return increment.select("video_id")

        return compute

    crop = step("video/crop", [], [raw])  # audio and frames, as raw's
    assert isinstance(crop, dg.AssetsDefinition)
    faces = step("vision/faces", [("video/crop", "frames")], [crop])
    transcript = step("audio/transcript", [("video/raw", "audio")], [raw])
    assert isinstance(faces, dg.AssetsDefinition) and isinstance(transcript, dg.AssetsDefinition)
    manifest = step("train/manifest", [("vision/faces", "out"), ("audio/transcript", "out")],
                    [faces, transcript])  # fmt: skip
    assert isinstance(manifest, dg.AssetsDefinition)
    assets = [raw, crop, faces, transcript, manifest]
    resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}

    def run(selection: list[dg.AssetKey]) -> None:
        computed.clear()
        result = dg.materialize(assets, resources=resources, instance=instance, selection=selection)
        assert result.success

    cursor = None

    def evaluate() -> list[str]:
        nonlocal cursor
        defs = dg.Definitions(assets=assets, resources=resources)
        result = dg.evaluate_automation_conditions(defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        return sorted(a.key.to_user_string() for a in assets if result.get_num_requested(a.key))

    run([a.key for a in assets])
    assert evaluate() == []

    audio["v1"] = audio["v4"] = "edited"
    run([raw.key])
    ran: dict[str, list[str]] = {}
    for _ in range(4):  # ticks of the automation sensor, each running what it requested
        requested = evaluate()
        if not requested:
            break
        run([dg.AssetKey(k.split("/")) for k in requested])
        ran.update({k: sorted(v) for k, v in computed.items()})
    assert ran == {
        "audio/transcript": ["v1", "v4"],
        "train/manifest": ["v1", "v4"],
        "video/crop": ["v1", "v4"],
    }
    assert evaluate() == []  # and faces, which reads only crop's frames, never ran

    # The sensor, requesting no runs, records faces as pruned for Dagster's staleness.
    sensor = build_metaxy_sensor(assets, store=store, request_runs=False)
    defs = dg.Definitions(assets=assets, sensors=[sensor], resources=resources)
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert tick.run_requests == []
    latest = instance.fetch_materializations(faces.key, limit=1).records[0]
    assert latest.asset_materialization is not None
    assert latest.asset_materialization.tags["metaxy/pruned"] == "true"
