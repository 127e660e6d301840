"""A store in Polars frames, in this process only: the test seam, run by the Polars engine."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone

import polars as pl

from metaxy_core import columns as c
from metaxy_core.engines.polars import PolarsEngine
from metaxy_core.errors import ColumnTypeError
from metaxy_core.graph import FeatureGraph
from metaxy_core.store.base import Engine, MetadataStore
from metaxy_core.store.snapshots import Record

__all__ = ["InMemoryMetadataStore"]


class InMemoryMetadataStore(MetadataStore):
    """Feature metadata in Polars frames; nothing touches the disk.

    >>> from metaxy_core import FeatureGraph, FeatureSpec
    >>> store = InMemoryMetadataStore(FeatureGraph([FeatureSpec(key="t", id_columns=["id"])]))
    >>> store.write("t", pl.DataFrame({"id": [1], "metaxy_data_version__default": ["x"]})).rows
    1
    """

    def __init__(self, graph: FeatureGraph) -> None:
        super().__init__(graph)
        self._history: dict[str, pl.DataFrame] = {}
        self._current: dict[str, pl.DataFrame] = {}
        self._versions: dict[str, dict[str, dict[str, str]]] = {}
        self._seq = 0
        self._seq_by_feature: dict[str, int] = {}
        self._id_columns: dict[str, tuple[str, ...]] = {}
        self._log: list[Record] = []

    def __repr__(self) -> str:
        return f"InMemoryMetadataStore({len(self._history)} features)"

    @contextmanager
    def _session(self) -> Iterator[None]:
        yield None

    def _engine(self, session: None) -> Engine:
        return PolarsEngine(lambda f, cols: self._scan(None, f, history=False, columns=cols))

    def _stored_columns(self, session: None, feature: str) -> list[str] | None:
        if feature not in self._current:
            return None
        return self._current[feature].columns

    def _stored_id_columns(self, session: None) -> dict[str, tuple[str, ...]]:
        return dict(self._id_columns)

    def _recipes_by_version(self, session: None, feature: str) -> dict[str, dict[str, str]]:
        return self._versions.get(feature, {})

    def _scan(
        self, session: None, feature: str, *, history: bool, columns: Sequence[str] | None
    ) -> pl.LazyFrame | None:
        frames = self._history if history else self._current
        if feature not in frames:
            return None
        frame = frames[feature]
        if columns is not None:
            frame = frame.select([n for n in columns if n in frame.columns])
        return frame.lazy()

    _keeps_records = True

    def _record(self, session: None, kind: str, key: str, body: str) -> None:
        now = datetime.now(timezone.utc)
        self._log.append(Record(len(self._log) + 1, kind, key, body, now))

    def _records(self, session: None, kind: str) -> list[Record]:
        return [r for r in self._log if r.kind == kind]

    def last_write_seq(self, feature: str | None = None) -> int:
        return self._seq if feature is None else self._seq_by_feature.get(feature, 0)

    def _append(
        self,
        session: None,
        feature: str,
        chunks: Iterable[pl.DataFrame],
        recipes: Mapping[str, str],
    ) -> int:
        seq = self._seq + 1
        frames = list(chunks)
        if frames:
            self._add_rows(feature, pl.concat(frames, how="diagonal_relaxed"), seq)
        self._id_columns.setdefault(feature, self.graph[feature].id_columns)
        self._versions.setdefault(feature, {})[self.graph.versions.features[feature]] = dict(
            recipes
        )
        self._seq = self._seq_by_feature[feature] = seq
        return seq

    def _add_rows(self, feature: str, rows: pl.DataFrame, seq: int) -> None:
        """Append ``rows`` to the history and the current rows; leaves both as they were if
        a column's type differs from the stored one."""
        rows = rows.with_columns(pl.lit(seq, dtype=pl.Int64).alias(c.WRITE_SEQ))
        history = self._history.get(feature)
        if history is not None:
            for name, dtype in rows.schema.items():
                stored = history.schema.get(name)
                if (
                    stored is not None
                    and stored != dtype
                    and dtype != pl.Null
                    and stored != pl.Null
                ):
                    raise ColumnTypeError(
                        f"feature {feature!r}: column {name!r} has type {dtype}, but the store "
                        f"holds it as {stored}. Cast the column to {stored} before writing."
                    )
        ids = list(self.graph[feature].id_columns)
        live = rows.filter(~pl.col(c.DELETED))
        current = self._current.get(feature)
        if current is not None:
            current = current.join(rows.select(ids), on=ids, how="anti")
        # Build both frames before assigning either: a failure leaves the store as it was.
        new_current = pl.concat(
            [f for f in (current, live) if f is not None], how="diagonal_relaxed"
        )
        new_history = pl.concat(
            [f for f in (history, rows) if f is not None], how="diagonal_relaxed"
        )
        self._current[feature], self._history[feature] = new_current, new_history
