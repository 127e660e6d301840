"""Partitions of metaxy assets: by hash shard of the sample ids, or by a column.

Never one partition per sample: Dagster's limits make that unusable at scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import narwhals as nw

from metaxy_core import HashShard, SampleFilter

__all__ = ["ColumnPartitions", "HashShardPartitions", "MetaxyPartitions"]


@dataclass(frozen=True)
class HashShardPartitions:
    """``count`` partitions ``shard-0`` ... by xxhash64 of the sample ids."""

    count: int

    @property
    def partitions_def(self) -> dg.PartitionsDefinition[str]:
        """The Dagster partitions."""
        return dg.StaticPartitionsDefinition([f"shard-{i}" for i in range(self.count)])

    def filter(self, partition_key: str) -> SampleFilter:
        """The samples of one partition."""
        return HashShard(self.count, int(partition_key.removeprefix("shard-")))

    def partition_of(self, index: int) -> str:
        """The partition key of shard ``index``."""
        return f"shard-{index}"


@dataclass(frozen=True)
class ColumnPartitions:
    """One partition per value of ``column`` (e.g. ``dataset``), as ``partitions_def`` lists."""

    column: str
    partitions_def: dg.PartitionsDefinition[str]

    def filter(self, partition_key: str) -> SampleFilter:
        """The samples of one partition: those whose column reads as the key, as text (so a
        date column matches the keys of a ``DailyPartitionsDefinition``)."""
        return nw.col(self.column).cast(nw.String()) == partition_key


MetaxyPartitions = HashShardPartitions | ColumnPartitions
