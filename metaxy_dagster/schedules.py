"""Schedules for root assets, which scan their sources (new clips, edited files)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from metaxy_dagster.features import feature_graph, metaxy_features
from metaxy_dagster.metadata import asset_key

__all__ = ["build_root_schedule"]


def build_root_schedule(
    assets: Sequence[dg.AssetsDefinition],
    *,
    cron_schedule: str = "0 * * * *",
    name: str = "metaxy_root_scan",
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A schedule materializing the root metaxy assets among ``assets`` (hourly by default).

    Downstream assets then follow through :func:`build_metaxy_sensor`, only where fields changed.
    """
    graph = feature_graph(assets)
    roots = [asset_key(f) for f in metaxy_features(assets) if graph[f].is_root]
    if not roots:
        raise ValueError(f"schedule {name!r}: none of the given assets is a root metaxy asset.")
    job = dg.define_asset_job(f"{name}_job", selection=roots)
    return dg.ScheduleDefinition(
        name=name, job=job, cron_schedule=cron_schedule, default_status=default_status
    )
