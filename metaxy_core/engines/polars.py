"""The Polars engine: the SQL of :mod:`metaxy_core.engines.sql` over frames a store scans.

A store that keeps its rows as Polars frames (in memory, or Delta tables behind
``pl.scan_delta``) hands the engine each feature's current rows as a ``LazyFrame``. The engine
registers them in a private in-memory DuckDB connection and runs the DuckDB dialect
(:class:`~metaxy_core.engines.duckdb.DuckDBEngine`) unchanged: the increment is defined once,
in :mod:`metaxy_core.engines.sql`, and nothing of it is written here. DuckDB pushes the columns
a query reads and its filters down into each ``LazyFrame``, so a Delta scan still reads only
those columns and files; the candidates leave as Arrow and are hashed in Polars, as for DuckDB.

Also here: :func:`apply_filter` and :func:`shard_of`, a sample filter over a Polars frame, for
the rows a store writes or a worker reads (not part of the increment).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import duckdb
import narwhals as nw
import polars as pl

from metaxy_core.engines.duckdb import NO_DOWNLOADS, DuckDBEngine
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.hashing import polars_hash_texts, polars_id_text

__all__ = ["PolarsEngine", "Scan", "apply_filter", "shard_of"]

Scan = Callable[[str, Sequence[str] | None], pl.LazyFrame | None]
"""``scan(feature, columns)``: the current rows of a feature, with those of ``columns`` that it
has (all columns when ``None``), or ``None`` when nothing was ever written for it."""


def shard_of(frame: pl.LazyFrame, ids: Sequence[str], shards: int) -> pl.Expr:
    """The hash shard (of ``shards``) of each row of ``frame``, from its ``ids`` columns: the
    hash of their canonical text modulo ``shards``, never negative (Polars' ``%`` floors, like
    Python's and Spark's ``pmod``)."""
    schema = frame.collect_schema()
    return polars_hash_texts([polars_id_text(i, schema[i]) for i in ids]) % shards


def apply_filter(frame: pl.LazyFrame, filter: SampleFilter, ids: Sequence[str]) -> pl.LazyFrame:
    """Rows of ``frame`` that ``filter`` keeps."""
    if isinstance(filter, HashShard):
        return frame.filter(shard_of(frame, ids, filter.count) == filter.index)
    return nw.from_native(frame).filter(filter).to_native()


class PolarsEngine(DuckDBEngine):
    """Resolves increments with the DuckDB dialect over the ``LazyFrame`` of each feature a
    store scans."""

    name = "polars"

    def __init__(self, scan: Scan) -> None:
        """``scan(feature, columns)`` gives a feature's current rows, or ``None``."""
        # A connection of its own per engine, i.e. per store operation, dropped with it.
        connection = duckdb.connect(config=dict(NO_DOWNLOADS))
        super().__init__(connection, lambda feature: self._read(feature, None))
        self._scan = scan
        self._scans: dict[tuple[str, tuple[str, ...] | None], str | None] = {}

    def _read(self, feature: str, columns: Sequence[str] | None) -> str | None:
        """The name of a feature's scanned rows (only ``columns``, when given) in the
        connection, registered once per query. DuckDB pushes what it reads down into a lazy
        scan by itself; ``columns`` spares a store that reads eagerly (DuckDB files) the rest."""
        key = (feature, None if columns is None else tuple(dict.fromkeys(columns)))
        if key not in self._scans:
            frame = self._scan(feature, key[1])
            name = None if frame is None else self._register(frame)
            if name is not None:
                self._views.append(name)
            self._scans[key] = name
        return self._scans[key]

    def _drop_views(self) -> None:
        # The next query scans again: the store may have been written in between.
        self._scans.clear()
        super()._drop_views()
