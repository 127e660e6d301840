"""The example's Dagster code location: ``dagster dev -m example_project.definitions``.

- Assets: the six features of :mod:`example_project.assets`, over the clips of
  ``$METAXY_EXAMPLE_DATA`` (default ``example_project/data``).
- Store: the embedded DuckDB file ``$METAXY_STORE_PATH`` (default
  ``example_project/.dagster_home/metaxy.duckdb``), created on first use.
- Schedule ``scan_clips`` (hourly, stopped until you turn it on): its job ``scan_clips_job``
  materializes ``video/raw``, which picks up new, edited and removed clips.
- Sensor ``metaxy_sensor`` (running): every 5 seconds it asks the store which assets have new
  or stale clips and requests a run of exactly those, so everything downstream of a scan follows.
- Asset checks ``metaxy_up_to_date``: per downstream asset, whether any clip is still new,
  stale or orphaned.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from example_project.assets import build_assets
from example_project.media import default_data_dir
from metaxy_dagster import (
    MetaxyIOManager,
    MetaxyStoreResource,
    build_metaxy_checks,
    build_metaxy_sensor,
    build_root_schedule,
    feature_graph,
)

__all__ = [
    "SCAN_SCHEDULE",
    "SENSOR_INTERVAL_SECONDS",
    "STORE_PATH_ENV",
    "default_store_path",
    "defs",
]

STORE_PATH_ENV = "METAXY_STORE_PATH"
"""Environment variable that overrides the path of the store file."""
SCAN_SCHEDULE = "scan_clips"
"""The schedule scanning the data folder; its job ``scan_clips_job`` materializes ``video/raw``."""
SENSOR_INTERVAL_SECONDS = 5
"""How often the sensor asks the store for work: a tick that finds no new write is cheap."""


def default_store_path() -> Path:
    """``$METAXY_STORE_PATH`` if set, else ``example_project/.dagster_home/metaxy.duckdb``."""
    env = os.environ.get(STORE_PATH_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / ".dagster_home" / "metaxy.duckdb"


assets = build_assets(default_data_dir())
feature_graph()  # validate the whole graph now: a bad declaration fails at load, not in a run

store = MetaxyStoreResource(path=str(default_store_path()))

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
        )
    ],
    resources={"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)},
    # Each step takes milliseconds: a process per step (the default executor) would spend
    # seconds importing Dagster for each. Runs still execute in parallel, one process each.
    executor=dg.in_process_executor,
)
