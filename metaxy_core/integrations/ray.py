"""Ray Data over a metadata store: increments in, computed rows out, from many workers.

:class:`MetaxyDatasource` reads a feature's increment (its new and stale samples) or its
current rows as a ``ray.data.Dataset``. Each read task resolves one hash shard of the
samples itself, on a Ray worker, so the rows never pass through the driver (e.g. the Dagster
process). :class:`MetaxyDatasink` writes what Ray computed back through the store, with every
system column: each write task appends its blocks in one write.

Both take any :class:`~metaxy_core.MetadataStore` that other processes can open (they pickle
it to the workers): a DuckDB file (writers take its exclusive lock one at a time), or a store
of another backend built on the same API. A store held in this process only (in-memory) is
refused. Install with ``pip install 'metaxy-dagster[ray]'``.

Example:
    .. code-block:: python

        increment = read_increment(store, "video/crop")
        computed = increment.map_batches(crop_batch, batch_format="pyarrow")
        computed.write_datasink(MetaxyDatasink(store, "video/crop"))
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
import ray
from ray.data import Dataset, Datasink, Datasource, ReadTask
from ray.data.block import Block, BlockMetadata
from ray.data.datasource import WriteResult as RayWriteResult

from metaxy_core import columns as c
from metaxy_core.engines.polars import apply_filter
from metaxy_core.errors import StoreError
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.store.base import MetadataStore
from metaxy_core.store.duckdb import DuckDBMetadataStore
from metaxy_core.store.memory import InMemoryMetadataStore
from metaxy_core.store.rows import to_polars

__all__ = ["BlockWrite", "MetaxyDatasink", "MetaxyDatasource", "read_current", "read_increment"]

_INCREMENT_ONLY = (c.CHANGED_FIELDS, c.STALE_REASON)
"""Columns of an increment that describe it, not the sample: never written."""


def _shareable(store: MetadataStore, what: str) -> MetadataStore:
    """The store as Ray tasks in other processes can open it."""
    if isinstance(store, InMemoryMetadataStore) or getattr(store, "path", None) == ":memory:":
        raise StoreError(
            f"{what}: {store!r} lives in this process only, and Ray tasks run in other "
            "processes. Use a store they can open, e.g. DuckDBMetadataStore(graph, "
            "'/data/metaxy.duckdb')."
        )
    if isinstance(store, DuckDBMetadataStore) and not os.path.isabs(store.path):
        # Workers may run in another working directory.
        return DuckDBMetadataStore(
            store.graph,
            os.path.abspath(store.path),
            engine="polars" if store.engine_name == "polars" else "duckdb",
            lock_timeout=store.lock_timeout,
        )
    return store


class MetaxyDatasource(Datasource):
    """The increment (new and stale samples) or the current rows of a feature, for Ray.

    Args:
        store: the store, opened by each read task on its worker.
        feature: the feature key.
        current: read the current rows instead of the increment.
        samples: for the increment of a root feature, its samples as they are now.
        filter: limit the samples (a Narwhals predicate or one :class:`HashShard`).

    Ray's read parallelism ``n`` (``override_num_blocks=``) gives ``n`` read tasks, one hash
    shard each: task ``i`` resolves ``HashShard(n, i)``; of ``HashShard(count, index)``, it
    resolves ``HashShard(count * n, index + count * i)``, which together are exactly that
    shard. With a predicate, each task resolves the predicate's samples and keeps its shard
    (so the predicate's samples are resolved ``n`` times: keep ``n`` small). Increment rows
    carry the expected provenance; orphaned samples are not read (deleting them is the
    caller's choice).
    """

    def __init__(
        self,
        store: MetadataStore,
        feature: str,
        *,
        current: bool = False,
        samples: Any = None,
        filter: SampleFilter | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Ray leaves it unannotated
        self._store = _shareable(store, f"reading {feature!r} on Ray")
        self._store.graph[feature]  # an unknown feature fails here, not on a worker
        self._feature = feature
        self._current = current
        self._samples = None if samples is None else to_polars(samples, f"samples of {feature!r}")
        self._filter = filter

    def get_name(self) -> str:
        return f"Metaxy({self._feature})"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        n = max(1, parallelism)
        return [
            ReadTask(
                _ReadShard(self, i, n),
                BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None),
                per_task_row_limit=per_task_row_limit,
            )
            for i in range(n)
        ]

    def read_shard(self, index: int, count: int) -> pl.DataFrame:
        """The rows of read task ``index`` of ``count`` (what a worker runs)."""
        store, feature = self._store, self._feature
        key = list(store.graph.expected_key(feature)) if not self._current else None
        user = self._filter
        if user is None or isinstance(user, HashShard):
            scope: SampleFilter = (
                HashShard(count, index)
                if user is None
                else HashShard(user.count * count, user.index + user.count * index)
            )
            return self._rows(scope)
        rows = self._rows(user)
        # A predicate and a hash shard make no single filter: resolve the predicate, keep
        # this task's shard.
        ids = key or list(store.graph[feature].id_columns)
        return apply_filter(rows.lazy(), HashShard(count, index), ids).collect()

    def _rows(self, scope: SampleFilter) -> pl.DataFrame:
        if self._current:
            return self._store.read(self._feature, filter=scope)
        increment = self._store.resolve_update(self._feature, samples=self._samples, filter=scope)
        return increment.to_compute()


@dataclass(frozen=True)
class _ReadShard:
    """One read task: a shard of the datasource, as an Arrow block."""

    source: MetaxyDatasource
    index: int
    count: int

    def __call__(self) -> Iterator[Block]:
        yield self.source.read_shard(self.index, self.count).to_arrow()


@dataclass(frozen=True)
class BlockWrite:
    """What one write task of :class:`MetaxyDatasink` appended."""

    rows: int
    write_seq: int | None
    """The store's write sequence of the write; ``None`` when the task had no rows."""
    worker: str
    """``host:pid`` of the Ray worker that wrote."""
    seconds: float
    """Wall time of the store write, waiting for the store's lock included."""


class MetaxyDatasink(Datasink[BlockWrite]):
    """Writes computed rows of a feature through the store, from many Ray workers.

    Each write task concatenates its blocks and appends them in one store write, so a task
    writes all of its rows or none; the store adds every system column (provenance from the
    rows' ``metaxy_provenance__<field>`` columns, as an increment from
    :class:`MetaxyDatasource` gives them, or from the current upstream rows). On a DuckDB
    file, tasks write one at a time, each waiting for the file's exclusive lock.

    After ``write_datasink`` returns, :attr:`writes` lists what each task wrote.

    Args:
        store: the store, opened by each write task on its worker.
        feature: the feature key.
        run_id: recorded on every row (e.g. the Dagster run id).
        rows_per_write: rows Ray aims to give each write task (``None``: Ray's choice).
    """

    def __init__(
        self,
        store: MetadataStore,
        feature: str,
        *,
        run_id: str | None = None,
        rows_per_write: int | None = None,
    ) -> None:
        self._store = _shareable(store, f"writing {feature!r} from Ray")
        self._store.graph[feature]
        self._feature = feature
        self._run_id = run_id
        self._rows_per_write = rows_per_write
        self.writes: list[BlockWrite] = []

    def get_name(self) -> str:
        return f"Metaxy({self._feature})"

    @property
    def min_rows_per_write(self) -> int | None:
        return self._rows_per_write

    def write(self, blocks: Iterable[Block], ctx: Any) -> BlockWrite:
        worker = f"{socket.gethostname()}:{os.getpid()}"
        frames = [to_polars(b, f"rows of {self._feature!r} from Ray") for b in blocks]
        frames = [f for f in frames if f.width]  # Ray's empty blocks may carry no columns
        rows = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        if rows.height == 0:
            return BlockWrite(0, None, worker, 0.0)
        rows = rows.drop([n for n in _INCREMENT_ONLY if n in rows.columns])
        start = time.perf_counter()
        result = self._store.write(self._feature, rows, run_id=self._run_id)
        return BlockWrite(result.rows, result.write_seq, worker, time.perf_counter() - start)

    def on_write_complete(self, write_result: RayWriteResult[BlockWrite]) -> None:
        self.writes = list(write_result.write_returns)

    @property
    def rows_written(self) -> int:
        """Rows all write tasks appended."""
        return sum(w.rows for w in self.writes)


def _blocks(blocks: int | None) -> int:
    """Read tasks: as asked, else one per CPU of the Ray cluster."""
    if blocks is not None:
        return blocks
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return max(1, int(resources.get("CPU", 1)))


def read_increment(
    store: MetadataStore,
    feature: str,
    *,
    samples: Any = None,
    filter: SampleFilter | None = None,
    blocks: int | None = None,
) -> Dataset:
    """The new and stale samples of ``feature`` as a Dataset of ``blocks`` read tasks (one
    per CPU of the cluster by default); see :class:`MetaxyDatasource`."""
    source = MetaxyDatasource(store, feature, samples=samples, filter=filter)
    dataset: Dataset = ray.data.read_datasource(source, override_num_blocks=_blocks(blocks))
    return dataset


def read_current(
    store: MetadataStore,
    feature: str,
    *,
    filter: SampleFilter | None = None,
    blocks: int | None = None,
) -> Dataset:
    """The current rows of ``feature`` as a Dataset; see :class:`MetaxyDatasource`."""
    source = MetaxyDatasource(store, feature, current=True, filter=filter)
    dataset: Dataset = ray.data.read_datasource(source, override_num_blocks=_blocks(blocks))
    return dataset
