"""The example's Dagster code location: ``dagster dev -m example_project.definitions``.

- Assets: the six features of :mod:`example_project.assets`, over the clips of
  ``$METAXY_EXAMPLE_DATA`` (default ``example_project/data``).
- Store: the embedded DuckDB file ``$METAXY_STORE_PATH`` (default
  ``example_project/.dagster_home/metaxy.duckdb``), created on first use.
- Schedule ``scan_clips`` (hourly, stopped until you turn it on): its job ``scan_clips_job``
  materializes ``video/raw``, which picks up new, edited and removed clips.
- Sensor ``metaxy_sensor`` (running): every 5 seconds it asks the store which assets have new
  or stale clips and requests a run of exactly those, so everything downstream of a scan follows.
  With ``$METAXY_EXAMPLE_AUTOMATION=1``, declarative automation (``metaxy_eager``, sensor
  ``metaxy_automation``) requests the runs instead, and ``metaxy_sensor`` only records assets
  metaxy pruned.
- Asset checks ``metaxy_up_to_date``: per downstream asset, whether any clip is still new,
  stale or orphaned.
- Resources: the store, its IO manager and the speech model of ``audio/transcript``
  (:func:`example_project.assets.build_resources`).

The sensor and the checks build the feature graph from these assets, so an invalid graph fails
when Dagster loads the code, not in a run. ``graph`` is that graph, for the ``metaxy`` command
(``features = "example_project.definitions:graph"`` under ``[tool.metaxy]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from example_project.assets import build_assets, build_resources
from example_project.media import default_data_dir
from metaxy_dagster import (
    MetaxyStoreResource,
    build_metaxy_checks,
    build_metaxy_sensor,
    build_root_schedule,
    feature_graph,
    metaxy_eager,
)

__all__ = [
    "AUTOMATION_ENV",
    "SCAN_SCHEDULE",
    "SENSOR_INTERVAL_SECONDS",
    "STORE_PATH_ENV",
    "default_store_path",
    "defs",
    "graph",
]

AUTOMATION_ENV = "METAXY_EXAMPLE_AUTOMATION"
"""Set to ``1`` to run the assets by declarative automation (``metaxy_eager``) instead."""
STORE_PATH_ENV = "METAXY_STORE_PATH"
"""Environment variable that overrides the path of the store file."""
SCAN_SCHEDULE = "scan_clips"
"""The schedule scanning the data folder; its job ``scan_clips_job`` materializes ``video/raw``."""
SENSOR_INTERVAL_SECONDS = 5
"""How often the sensor asks the store for work: a tick that finds no new write is cheap."""


def default_store_path() -> Path | str:
    """``$METAXY_STORE_PATH`` if set (a path, or a store URI such as
    ``delta+file:///srv/metaxy``), else ``example_project/.dagster_home/metaxy.duckdb``."""
    env = os.environ.get(STORE_PATH_ENV)
    if env and "://" in env:
        return env  # a store URI: as a Path, its '//' would fold into one '/'
    return Path(env) if env else Path(__file__).resolve().parent / ".dagster_home" / "metaxy.duckdb"


resources = build_resources(default_store_path())
store = resources["metaxy_store"]
assert isinstance(store, MetaxyStoreResource)
automated = os.environ.get(AUTOMATION_ENV) == "1"
assets = build_assets(
    default_data_dir(), automation_condition=metaxy_eager(store) if automated else None
)
# With declarative automation, its sensor (on the code server: metaxy_eager asks the store)
# requests the runs, and the metaxy sensor only records pruned assets.
automation_sensors = (
    [
        dg.AutomationConditionSensorDefinition(
            "metaxy_automation",
            target=dg.AssetSelection.all(),
            use_user_code_server=True,
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        )
    ]
    if automated
    else []
)

defs = dg.Definitions(
    assets=assets,
    asset_checks=build_metaxy_checks(assets, store=store),
    schedules=[build_root_schedule(assets, name=SCAN_SCHEDULE, cron_schedule="0 * * * *")],
    sensors=[
        build_metaxy_sensor(
            assets,
            store=store,
            minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
            default_status=dg.DefaultSensorStatus.RUNNING,
            request_runs=not automated,
        ),
        *automation_sensors,
    ],
    resources=resources,
    # Each step takes milliseconds: a process per step (the default executor) would spend
    # seconds importing Dagster for each. Runs still execute in parallel, one process each.
    executor=dg.in_process_executor,
)
graph = feature_graph(defs)
"""The feature graph of this code location, which the ``metaxy`` command reads."""
