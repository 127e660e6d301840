"""Runs the sensor requests never stall and never duplicate: per-partition run keys and
waiting, retries of failed runs by policy, failures reported, and a fix run without a write.

Requested runs are executed in the sensor's own (real, ephemeral) Dagster instance, with the
request's tags, as the daemon would launch them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metaxy_core.testing import root_samples
from metaxy_dagster import (
    HashShardPartitions,
    MetaxyIOManager,
    MetaxyStoreResource,
    build_metaxy_checks,
    build_metaxy_sensor,
    feature_graph,
    metaxy_asset,
)
from tests.test_dagster_assets import IDS, Pipeline


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real instance, disposed after the test (its temporary folder with it)."""
    with dg.instance_for_test() as instance:
        yield instance


class Launcher:
    """A sensor ticking on a real instance, and the runs it requested, launched in it."""

    def __init__(
        self,
        resources: dict[str, object],
        assets: list[dg.AssetsDefinition],
        instance: dg.DagsterInstance,
        policy: dg.RetryPolicy | None = None,
    ) -> None:
        self.resources = resources
        self.instance = instance
        self.cursor: str | None = None
        self.launched: Counter[str] = Counter()  # run key -> runs launched
        self.deploy(assets, policy)

    def deploy(self, assets: list[dg.AssetsDefinition], policy: dg.RetryPolicy | None) -> None:
        """(Re)load the code location: new definitions, same instance and cursor."""
        self.assets = assets
        store = self.resources["metaxy_store"]
        assert isinstance(store, MetaxyStoreResource)
        self.sensor = build_metaxy_sensor(assets, store=store, retry_policy=policy)
        self.defs = dg.Definitions(assets=assets, sensors=[self.sensor], resources=self.resources)

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.defs
        )
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result

    def launch(self, request: dg.RunRequest) -> bool:
        """Run a request as the daemon would: once per run key. Returns whether it succeeded."""
        assert request.run_key is not None
        if self.launched[request.run_key]:
            return True  # Dagster skips a run key it already used
        self.launched[request.run_key] += 1
        result = dg.materialize(
            self.assets,
            resources=self.resources,
            instance=self.instance,
            selection=request.asset_selection,
            partition_key=request.partition_key,
            tags=request.tags,
            raise_on_error=False,
        )
        return result.success


def _scope(request: dg.RunRequest) -> tuple[str, str | None]:
    return request.tags["metaxy/feature"], request.partition_key


def test_finishing_one_shard_does_not_rerequest_the_others(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Acceptance 5: 4 hash shards; each (asset, shard) with work is launched exactly once,
    and a shard of a downstream asset waits only for the same shard upstream."""
    p = Pipeline(tmp_path)
    shards = HashShardPartitions(4)
    assets = p.assets(partitions=shards)
    for k in range(4):
        p.materialize(assets, partition_key=f"shard-{k}")
    for i in IDS:
        p.audio[i] = "new"  # every shard has audio work
    for k in range(4):
        p.materialize(assets, selection=[assets[0].key], partition_key=f"shard-{k}")

    launcher = Launcher(p.resources(), assets, instance)
    first = launcher.tick().run_requests
    assert sorted(_scope(r) for r in first) == sorted(
        (f, f"shard-{k}") for f in ("video/crop", "audio/transcript") for k in range(4)
    )
    keys = {_scope(r): r.run_key for r in first}

    # The queue runs one request at a time, in the order requested; every tick re-requests.
    requested: Counter[tuple[str, str | None]] = Counter()
    seen_keys: dict[tuple[str, str | None], set[str]] = {}
    pending = list(first)
    manifest_before_last_crop = False
    while pending:
        request = pending[0]
        assert launcher.launch(request)
        requests = launcher.tick().run_requests or []
        for r in requests:
            requested[_scope(r)] += 1
            seen_keys.setdefault(_scope(r), set()).add(str(r.run_key))
        scopes = {_scope(r) for r in requests}
        if ("train/manifest", "shard-0") in scopes and ("video/crop", "shard-3") in scopes:
            manifest_before_last_crop = True
        pending = [r for r in requests if not launcher.launched[str(r.run_key)]]

    # One key, and one launched run, per (asset, shard): still-queued shards kept their keys.
    assert all(len(k) == 1 for k in seen_keys.values()), seen_keys
    for scope, key in keys.items():
        assert seen_keys.get(scope, {key}) == {key}
    assert set(launcher.launched.values()) == {1}
    launched_scopes = sorted(
        (k.split("|")[0], k.split("|")[1]) for k in launcher.launched
    )  # feature|partition|generation
    assert launched_scopes == sorted(
        (f, f"shard-{k}")
        for f in ("video/crop", "audio/transcript", "train/manifest")
        for k in range(4)
    )
    # Waiting is per shard: manifest's shard 0 was requested while crop's shard 3 (which its
    # shard 3, through faces, waits for) was still to run.
    assert manifest_before_last_crop
    assert launcher.tick().skip_message is not None


def _crop_location(
    tmp_path: Path, broken: bool
) -> tuple[list[dg.AssetsDefinition], dict[str, object]]:
    audio = {i: f"a-{i}" for i in IDS[:4]}

    @metaxy_asset(key="video/raw", id_columns=["video_id"], fields=["audio"])
    def raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return root_samples("video_id", list(audio), audio=list(audio.values()))

    if broken:

        @metaxy_asset(key="video/crop", id_columns=["video_id"], deps=[raw])
        def crop(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
            raise RuntimeError("the GPU fell over")

    else:

        @metaxy_asset(key="video/crop", id_columns=["video_id"], deps=[raw])
        def crop(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
            return increment.select("video_id", cropped=pl.lit(True))

    store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"))
    return [raw, crop], {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}


def test_a_failed_run_is_retried_by_policy_reported_and_run_again_once_fixed(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Acceptance 4."""
    assets, resources = _crop_location(tmp_path, broken=True)
    policy = dg.RetryPolicy(max_retries=2, delay=0)
    launcher = Launcher(resources, assets, instance, policy)
    assert dg.materialize([assets[0]], resources=resources, instance=launcher.instance).success

    attempts = []
    for _ in range(3):  # the first run and two retries, each failing
        requests = launcher.tick().run_requests or []
        assert [_scope(r) for r in requests] == [("video/crop", None)]
        attempts.append(requests[0].tags["metaxy/attempt"])
        assert not launcher.launch(requests[0])
    assert attempts == ["0", "1", "2"]

    # Retries exhausted: nothing more is requested, and the tick says why.
    exhausted = launcher.tick()
    assert exhausted.run_requests == []
    assert exhausted.skip_message is not None
    assert exhausted.skip_message.startswith("failed, retries exhausted: video/crop; fix the asset")
    assert launcher.tick().run_requests == []  # and it stays so: no retry storm

    # The up-to-date check shows the failure.
    store = resources["metaxy_store"]
    assert isinstance(store, MetaxyStoreResource)
    checks = build_metaxy_checks(assets, store=store)
    result = dg.materialize(
        [*assets, *checks],
        resources=resources,
        instance=launcher.instance,
        selection=dg.AssetSelection.checks(*checks),
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    failed_runs = evaluation.metadata["failed_runs"].value
    assert list(failed_runs) == [""]
    assert evaluation.metadata["new"].value == 4

    # The fix is deployed; with no upstream write, the next tick runs crop, once.
    fixed, _ = _crop_location(tmp_path, broken=False)
    launcher.deploy(fixed, policy)
    requests = launcher.tick().run_requests or []
    assert [(_scope(r), r.tags["metaxy/attempt"]) for r in requests] == [
        (("video/crop", None), "0")
    ]
    assert launcher.launch(requests[0])
    assert launcher.tick().run_requests == []
    assert store.get_store(feature_graph(fixed)).read("video/crop").height == 4
