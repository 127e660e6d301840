"""metaxy_dagster: metaxy features as Dagster assets.

>>> import dagster as dg
>>> store = MetaxyStoreResource(path="metaxy.duckdb")
>>> resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}
"""

from metaxy_dagster.asset import metaxy_asset
from metaxy_dagster.automation import MetaxyHasWork, metaxy_eager
from metaxy_dagster.checks import build_metaxy_checks
from metaxy_dagster.features import feature_graph
from metaxy_dagster.io_manager import MetaxyIOManager, MetaxyWrite
from metaxy_dagster.metadata import asset_key
from metaxy_dagster.multi_asset import metaxy_multi_asset
from metaxy_dagster.output import MetaxyOutput
from metaxy_dagster.partitions import ColumnPartitions, HashShardPartitions, MetaxyPartitions
from metaxy_dagster.resource import MetaxyStoreResource
from metaxy_dagster.schedules import build_root_schedule
from metaxy_dagster.sensors import build_metaxy_sensor
from metaxy_dagster.sources import build_root_source

__all__ = [
    "ColumnPartitions",
    "HashShardPartitions",
    "MetaxyHasWork",
    "MetaxyIOManager",
    "MetaxyOutput",
    "MetaxyPartitions",
    "MetaxyStoreResource",
    "MetaxyWrite",
    "asset_key",
    "build_metaxy_checks",
    "build_metaxy_sensor",
    "build_root_schedule",
    "build_root_source",
    "feature_graph",
    "metaxy_asset",
    "metaxy_eager",
    "metaxy_multi_asset",
]
