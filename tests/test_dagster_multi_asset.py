"""@metaxy_multi_asset: one decode pass writes an audio and a frames feature, each its own
asset with its own increment, counts and data version, run by real Dagster on a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metaxy_core import DuckDBMetadataStore, FeatureSpec, FieldDep, FieldSpec, columns, errors
from metaxy_core.testing import root_samples
from metaxy_dagster import (
    MetaxyIOManager,
    MetaxyStoreResource,
    asset_key,
    build_metaxy_sensor,
    feature_graph,
    metaxy_asset,
    metaxy_multi_asset,
)

IDS = ["v1", "v2", "v3", "v4"]
AUDIO = FeatureSpec(
    key="video/audio",
    id_columns=["video_id"],
    deps=["video/raw"],
    fields=[FieldSpec(key="wave", deps=[FieldDep("video/raw", ["audio"])])],
)
FRAMES = FeatureSpec(
    key="video/frames",
    id_columns=["video_id"],
    deps=["video/raw"],
    fields=[FieldSpec(key="images", deps=[FieldDep("video/raw", ["frames"])])],
)


class Decoder:
    """The raw videos (audio and frames per id), a decode step over them, and its calls."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "metaxy.duckdb"
        self.audio = {i: f"a-{i}" for i in IDS}
        self.calls: list[dict[str, list[str]]] = []
        store = MetaxyStoreResource(path=str(self.path))
        self.resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}

        @metaxy_asset(key="video/raw", id_columns=["video_id"], fields=["audio", "frames"])
        def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
            audio = [self.audio[i] for i in IDS]
            return root_samples("video_id", IDS, audio=audio, frames=[f"f-{i}" for i in IDS])

        @metaxy_multi_asset(specs=[AUDIO, FRAMES], deps=[raw], kinds={"gpu"})
        def decode(
            context: dg.AssetExecutionContext, increments: dict[str, pl.DataFrame]
        ) -> dict[str, pl.DataFrame]:
            """Decode each video once, into its audio and its frames."""
            self.calls.append({k: sorted(v["video_id"]) for k, v in increments.items()})
            todo = pl.concat([i.select("video_id") for i in increments.values()]).unique()
            return {
                "video/audio": todo.with_columns(wave=pl.col("video_id") + ".wav"),
                "video/frames": todo.with_columns(images=pl.col("video_id") + ".png"),
            }

        self.raw, self.decode = raw, decode

    def materialize(self, *assets: dg.AssetsDefinition) -> dg.ExecuteInProcessResult:
        result = dg.materialize([self.raw, self.decode], resources=self.resources,
                                selection=[k for a in assets for k in a.keys])  # fmt: skip
        assert result.success
        return result

    def store(self) -> DuckDBMetadataStore:
        return DuckDBMetadataStore(feature_graph([self.raw, self.decode]), self.path)

    def written(self, feature: str, after: int = 0) -> list[str]:
        history = self.store().read(feature, history=True)
        return sorted(history.filter(pl.col(columns.WRITE_SEQ) > after)["video_id"])


def _materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        meta["data_version"] = mat.tags["dagster/data_version"] if mat.tags else None
        out[mat.asset_key.to_user_string()] = meta
    return out


def test_one_pass_writes_each_feature_its_own_increment(tmp_path: Path) -> None:
    d = Decoder(tmp_path)
    first = _materialized(d.materialize(d.raw, d.decode))
    assert d.calls == [{"video/audio": IDS, "video/frames": IDS}]  # one call for both
    assert (first["video/audio"]["metaxy/new"], first["video/frames"]["metaxy/new"]) == (4, 4)
    assert first["video/audio"]["data_version"] != first["video/frames"]["data_version"]
    assert d.written("video/audio") == d.written("video/frames") == IDS

    # An audio edit: the one call gets the audio increment and an empty frames increment;
    # frames writes nothing (its rows for those videos are dropped), and keeps its version.
    seq = d.store().last_write_seq()
    d.audio["v2"] = d.audio["v4"] = "edited"
    d.materialize(d.raw)
    d.calls.clear()
    second = _materialized(d.materialize(d.decode))
    assert d.calls == [{"video/audio": ["v2", "v4"], "video/frames": []}]
    assert d.written("video/audio", after=seq) == ["v2", "v4"]
    assert d.written("video/frames", after=seq) == []
    assert second["video/audio"]["metaxy/stale"] == 2
    assert second["video/frames"]["metaxy/stale"] == 0
    assert second["video/frames"]["data_version"] == first["video/frames"]["data_version"]
    assert second["video/audio"]["data_version"] != first["video/audio"]["data_version"]

    d.calls.clear()
    d.materialize(d.decode)
    assert d.calls == []  # nothing to compute: the function is not called


def test_each_feature_is_an_asset_of_its_own(tmp_path: Path) -> None:
    d = Decoder(tmp_path)
    specs = {s.key.to_user_string(): s for s in d.decode.specs}
    assert sorted(specs) == ["video/audio", "video/frames"]
    assert d.decode.op.name == "decode"
    assert {d.asset_key for d in specs["video/audio"].deps} == {asset_key("video/raw")}
    assert specs["video/audio"].kinds == {"metaxy", "duckdb", "gpu"}
    assert specs["video/audio"].code_version != specs["video/frames"].code_version
    assert (
        specs["video/frames"].description
        == "Decode each video once, into its audio and its frames."
    )
    assert feature_graph([d.raw, d.decode]).topological_order()[0] == "video/raw"


def test_wrong_returns_and_declarations_are_refused(tmp_path: Path) -> None:
    d = Decoder(tmp_path)

    @metaxy_multi_asset(specs=[AUDIO, FRAMES], deps=[d.raw])
    def decode(increments: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
        return {"video/audio": increments["video/audio"].select("video_id")}

    with pytest.raises(
        errors.AssetDefinitionError,
        match=r"returned frames for \['video/audio'\]: none for \['video/frames'\]\. Return one "
        r"frame per feature with samples to compute: \['video/audio', 'video/frames'\]\.",
    ):
        dg.materialize([d.raw, decode], resources=d.resources)

    inner = FeatureSpec(key="video/crop", id_columns=["video_id"], deps=["video/audio"])
    with pytest.raises(
        errors.AssetDefinitionError,
        match=r"feature 'video/crop' reads \['video/audio'\], computed by the same multi-asset",
    ):
        metaxy_multi_asset(specs=[AUDIO, inner], deps=[d.raw])
    with pytest.raises(errors.AssetDefinitionError, match=r"cannot take: \['code_version'\]"):
        metaxy_multi_asset(specs=[AUDIO], deps=[d.raw], code_version="1")


def test_the_sensor_requests_one_run_of_the_whole_step(tmp_path: Path) -> None:
    d = Decoder(tmp_path)
    d.materialize(d.raw, d.decode)
    assets = [d.raw, d.decode]
    sensor = build_metaxy_sensor(assets, store=MetaxyStoreResource(path=str(d.path)))
    defs = dg.Definitions(assets=assets, sensors=[sensor], resources=d.resources)
    d.audio["v1"] = "edited"
    d.materialize(d.raw)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        tick = sensor.evaluate_tick(context)
        [request] = tick.run_requests or []
        assert request.asset_selection == [asset_key("video/audio"), asset_key("video/frames")]
        assert request.tags["metaxy/feature"] == "video/audio"
        d.calls.clear()
        result = dg.materialize(
            assets, resources=d.resources, selection=request.asset_selection, instance=instance
        )  # the request is a valid selection of the non-subsettable step
        assert result.success
        assert d.calls == [{"video/audio": ["v1"], "video/frames": []}]
        context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=tick.cursor)
        assert sensor.evaluate_tick(context).run_requests == []
