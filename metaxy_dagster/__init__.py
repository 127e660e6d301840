"""metaxy_dagster: metaxy features as Dagster assets.

>>> import dagster as dg
>>> store = MetaxyStoreResource(path="metaxy.duckdb")
>>> resources = {"metaxy_store": store, "metaxy_io_manager": MetaxyIOManager(store=store)}
"""

from metaxy_dagster.asset import metaxy_asset
from metaxy_dagster.io_manager import MetaxyIOManager, MetaxyWrite
from metaxy_dagster.metadata import asset_key
from metaxy_dagster.partitions import ColumnPartitions, HashShardPartitions, MetaxyPartitions
from metaxy_dagster.registry import feature_graph
from metaxy_dagster.resource import MetaxyStoreResource

__all__ = [
    "ColumnPartitions",
    "HashShardPartitions",
    "MetaxyIOManager",
    "MetaxyPartitions",
    "MetaxyStoreResource",
    "MetaxyWrite",
    "asset_key",
    "feature_graph",
    "metaxy_asset",
]
