"""Failed samples in Dagster: an asset returns MetaxyOutput(rows, failed=...); the good rows
are written, the failures recorded and shown (metadata, check, sensor), and retried on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from metaxy_core import IncrementCounts
from metaxy_core.testing import root_samples
from metaxy_dagster import (
    MetaxyIOManager,
    MetaxyOutput,
    MetaxyStoreResource,
    build_metaxy_checks,
    build_metaxy_sensor,
    feature_graph,
    metaxy_asset,
)
from tests.dagster_reference import materialization_metadata

N = 1_000
BAD = [f"c{i:04d}" for i in (3, 150, 151, 400, 702, 888, 999)]


class Clips:
    """A root asset over N clips whose audio a test can edit, and an embedding asset that
    fails on the corrupt clips; ``seen`` holds the ids each embedding run received."""

    def __init__(self, tmp_path: Path) -> None:
        self.audio = {f"c{i:04d}": f"h{i}" for i in range(N)}
        self.corrupt = set(BAD)
        self.seen: list[list[str]] = []
        self.store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"))

        @metaxy_asset(key="clips", id_columns=["clip_id"], fields=["audio"])
        def clips() -> pl.DataFrame:
            return root_samples("clip_id", list(self.audio), audio=list(self.audio.values()))

        @metaxy_asset(key="clips/embed", id_columns=["clip_id"], deps=[clips])
        def embed(increment: pl.DataFrame) -> MetaxyOutput:
            self.seen.append(sorted(increment["clip_id"]))
            bad = pl.col("clip_id").is_in(sorted(self.corrupt))
            return MetaxyOutput(
                increment.filter(~bad).select("clip_id", dim=pl.lit(512)),
                failed=increment.filter(bad).select(
                    "clip_id", error=pl.format("corrupt clip {}: moov atom not found", "clip_id")
                ),
            )

        self.assets = [clips, embed]
        self.checks = build_metaxy_checks(self.assets, store=self.store)

    def resources(self, **store: object) -> dict[str, object]:
        resource = MetaxyStoreResource(path=self.store.path, **store) if store else self.store  # type: ignore[arg-type]
        return {"metaxy_store": resource, "metaxy_io_manager": MetaxyIOManager(store=resource)}

    def run(self, instance: dg.DagsterInstance, **kwargs: object) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*self.assets, *self.checks],
            resources=self.resources(),
            instance=instance,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def test_failed_samples_in_metadata_check_and_sensor(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    p = Clips(tmp_path)
    result = p.run(instance)
    assert result.success  # seven bad clips do not fail the step
    meta = materialization_metadata(result, "clips/embed")
    assert (meta["metaxy/new"], meta["metaxy/failed"], meta["metaxy/failed_held_back"]) == (
        N,
        7,
        0,
    )
    assert (meta["metaxy/rows_written"], meta["metaxy/failed_recorded"]) == (N - 7, 7)
    preview = str(meta["metaxy/failed_preview"])
    assert "| clip_id | error |" in preview
    assert "| c0003 | corrupt clip c0003: moov atom not found |" in preview

    # The check: failed=7 of 1,000 (0.7%) is under the 1% threshold; it passes, with a preview.
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert evaluation.metadata["failed"].value == 7
    assert evaluation.metadata["failed_preview"].value == {
        i: f"corrupt clip {i}: moov atom not found" for i in BAD
    }
    assert evaluation.description is not None
    assert evaluation.description.startswith("7 sample(s) failed (0.7%; threshold 1.0%)")

    # The next run computes nothing; the 7 are held back, and shown so.
    result = p.run(instance)
    assert len(p.seen) == 1  # an empty increment: the function is not called
    meta = materialization_metadata(result, "clips/embed")
    assert (meta["metaxy/new"], meta["metaxy/failed"], meta["metaxy/failed_held_back"]) == (
        0,
        0,
        7,
    )
    assert "| c0888 | corrupt clip c0888: moov atom not found |" in str(
        meta["metaxy/failed_preview"]
    )

    # The sensor requests nothing and says why.
    graph = feature_graph(p.assets)
    sensor = build_metaxy_sensor(p.assets, store=p.store)
    defs = dg.Definitions(assets=p.assets, sensors=[sensor], resources=p.resources())
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert tick.run_requests == []
    assert tick.skip_message is not None
    assert "failed samples left out until their inputs or code change (clips/embed: 7)" in (
        tick.skip_message
    )

    # Editing one failed clip's audio brings back exactly that one; the sensor asks for it.
    p.audio["c0150"] = "fixed"
    p.run(instance, selection=[p.assets[0].key])
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    (request,) = tick.run_requests or []
    assert (request.tags["metaxy/new"], request.tags["metaxy/failed"]) == ("1", "6")
    p.corrupt.discard("c0150")
    p.run(instance, selection=[p.assets[1].key])
    assert p.seen[-1] == ["c0150"]

    # A run with retry_failed in its config retries the other 6 (the store resource is
    # configured at launch, so the launchpad can set it per run).
    p.corrupt.clear()
    launched = MetaxyStoreResource.configure_at_launch(path=p.store.path)
    config = dg.RunConfig(resources={"metaxy_store": {"config": {"retry_failed": True}}})
    dg.materialize(
        p.assets,
        resources={"metaxy_store": launched, "metaxy_io_manager": MetaxyIOManager(store=p.store)},
        instance=instance,
        selection=[p.assets[1].key],
        run_config=config,
    )
    assert p.seen[-1] == sorted(set(BAD) - {"c0150"})
    store = p.store.get_store(graph)
    assert store.count_update("clips/embed") == IncrementCounts(0, 0, 0, 0)
    assert store.read("clips/embed").height == N


def test_the_check_fails_above_its_threshold(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    p = Clips(tmp_path)
    p.checks = build_metaxy_checks(p.assets, store=p.store, failed_threshold=0.005)
    (evaluation,) = p.run(instance).get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["failed"].value == 7
    strict = build_metaxy_checks(
        p.assets, store=p.store, failed_threshold=0, failed_severity=dg.AssetCheckSeverity.ERROR
    )
    result = dg.materialize(
        [*p.assets, *strict],
        resources=p.resources(),
        instance=instance,
        selection=dg.AssetSelection.checks(*strict),
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.ERROR)
    with pytest.raises(ValueError, match="failed_threshold must be a share between 0 and 1"):
        build_metaxy_checks(p.assets, store=p.store, failed_threshold=5)


def test_a_store_retry_policy_brings_failed_samples_back(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    p = Clips(tmp_path)
    p.run(instance)
    resources = p.resources(max_sample_retries=1)
    dg.materialize(p.assets, resources=resources, instance=instance, selection=[p.assets[1].key])
    assert p.seen[-1] == BAD  # one automatic retry: they fail again
    dg.materialize(p.assets, resources=resources, instance=instance, selection=[p.assets[1].key])
    assert len(p.seen) == 2  # retries used up: nothing to compute


def test_a_failed_frame_without_messages_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    store = MetaxyStoreResource(path=str(tmp_path / "metaxy.duckdb"))

    @metaxy_asset(key="clips", id_columns=["clip_id"], fields=["audio"])
    def clips() -> pl.DataFrame:
        return root_samples("clip_id", ["a", "b"], audio=["h1", "h2"])

    @metaxy_asset(key="clips/embed", id_columns=["clip_id"], deps=[clips])
    def embed(increment: pl.DataFrame) -> MetaxyOutput:
        return MetaxyOutput(increment.head(1), failed=increment.tail(1).select("clip_id"))

    resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}
    dg.materialize([clips], resources=resources)
    result = dg.materialize(
        [clips, embed], resources=resources, selection=[embed.key], raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.cause.message  # type: ignore[union-attr]
    assert message.startswith(
        "metaxy_core.errors.MissingColumnError: failed samples of 'clips/embed': column 'error' "
        "(the error message of each sample) is missing; the frame has columns: clip_id. "
        "Add 'error'"
    ), message
    metaxy = store.get_store(feature_graph([clips, embed]))
    assert metaxy.read("clips/embed").height == 0
    assert metaxy.read_failures("clips/embed").height == 0
