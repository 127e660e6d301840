"""Dagster's own stale status agrees with metaxy, read through Dagster's GraphQL API.

The example's code location is served by a real code server (as ``dagster dev`` serves it);
runs are materialized in process into the same Dagster instance.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import dagster as dg
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML (a Dagster dependency) ships no stubs
from dagster_graphql.test.utils import (  # the GraphQL client Dagster's own tests use
    define_out_of_process_context,
    execute_dagster_graphql,
)

from example_project.assets import FEATURES
from example_project.edit import edit_audio
from example_project.media import DATA_DIR_ENV, generate_clips
from metaxy_dagster import asset_key

ROOT = Path(__file__).resolve().parent.parent
STALE_STATUS = "query { assetNodes { assetKey { path } staleStatus } }"


def _stale_status(workspace: Path, instance: dg.DagsterInstance) -> dict[str, str]:
    with define_out_of_process_context(str(workspace), None, instance) as context:
        result = execute_dagster_graphql(context, STALE_STATUS)
    assert not result.errors, result.errors
    return {"/".join(n["assetKey"]["path"]): n["staleStatus"] for n in result.data["assetNodes"]}


def test_after_an_audio_edit_and_crop_rerun_faces_is_fresh_and_transcript_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acceptance 3, first half."""
    data, store = tmp_path / "data", tmp_path / "metaxy.duckdb"
    generate_clips(data, 4)
    monkeypatch.setenv(DATA_DIR_ENV, str(data))
    monkeypatch.setenv("METAXY_STORE_PATH", str(store))
    workspace = tmp_path / "workspace.yaml"
    module = {"module_name": "example_project.definitions", "working_directory": str(ROOT)}
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": module}]}))
    import example_project.definitions as location

    location = importlib.reload(location)
    defs, assets, resources = location.defs, location.assets, location.resources
    sensor = defs.resolve_sensor_def("metaxy_sensor")

    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:

        def run(*features: str) -> None:
            selection = [asset_key(f) for f in features]
            result = dg.materialize(
                assets, resources=resources, instance=instance, selection=selection
            )
            assert result.success

        def tick() -> None:
            context = dg.build_sensor_context(instance=instance, definitions=defs)
            sensor.evaluate_tick(context)

        run(*FEATURES)
        assert set(_stale_status(workspace, instance).values()) == {"FRESH"}

        edit_audio(2, data)
        run("video/raw")
        run("video/crop")
        # Dagster alone sees a new data version of crop, and marks faces stale with it.
        before = _stale_status(workspace, instance)
        assert before["vision/faces"] == "STALE"
        assert before["audio/transcript"] == "STALE"

        tick()  # the metaxy sensor: faces has nothing to compute, and is recorded so
        after = _stale_status(workspace, instance)
        assert after["vision/faces"] == "FRESH"
        assert after["audio/transcript"] == "STALE"
        assert after["audio/features"] == "STALE"
        assert after["video/crop"] == "FRESH"
        pruned = instance.fetch_materializations(asset_key("vision/faces"), limit=1).records[0]
        assert pruned.asset_materialization is not None
        assert pruned.asset_materialization.tags["metaxy/pruned"] == "true"
        assert pruned.run_id == ""  # runless: nothing was computed

        run("audio/transcript", "audio/features", "train/manifest")
        tick()
        assert set(_stale_status(workspace, instance).values()) == {"FRESH"}
