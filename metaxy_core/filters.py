"""Filters that limit an increment (or a read) to some samples, e.g. to one partition.

A filter is either a Narwhals predicate on id or user columns (``nw.col("dataset") == "a"``)
or a :class:`HashShard`, which splits samples evenly by a hash of their id columns, the same in
every engine.

>>> HashShard(count=4, index=1)
HashShard(count=4, index=1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import narwhals as nw

__all__ = ["HashShard", "SampleFilter"]


@dataclass(frozen=True)
class HashShard:
    """Samples whose id hash, modulo ``count``, equals ``index``.

    The id hash is xxhash64 (seed 42, a signed 64-bit integer) of the canonical string of the
    id values cast to strings, in id-column order; its shard is the floored remainder, never
    negative (``hash_string(id) % count`` in Python, ``pmod`` in Spark).
    """

    count: int
    index: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"HashShard needs count >= 1 and 0 <= index < count, got count={self.count}, "
                f"index={self.index}."
            )


SampleFilter: TypeAlias = "nw.Expr | HashShard"
