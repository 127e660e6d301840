"""The metadata store interface, shared by every backend.

A store keeps one append-only history per feature and the current row of every sample (its
latest write by write sequence). Backends implement a handful of primitives; validation,
system columns and increments are computed here and in the engines, once for all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import narwhals as nw
import polars as pl

from metaxy_core import columns as c
from metaxy_core.definitions import FeatureSpec, FieldRef
from metaxy_core.engines.polars import apply_filter
from metaxy_core.errors import (
    FeatureNotFoundError,
    IdColumnsChangedError,
    StoreError,
    UpstreamFieldNotWrittenError,
)
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.graph import FeatureGraph
from metaxy_core.hashing import hash_parts, polars_hash_texts, polars_hex, polars_id_text, to_hex
from metaxy_core.increment import Increment, IncrementCounts
from metaxy_core.plan import ResolvePlan, build_plan
from metaxy_core.store.failures import (
    SampleRetryPolicy,
    check_not_both,
    failure_rows,
    forget_failures,
    held_back,
    held_counts,
    load_failures,
    read_failures,
    record_failures,
)
from metaxy_core.store.rows import (
    check_key_types,
    check_stored_names,
    prepare_rows,
    stored_data_version,
    to_polars,
    tombstones,
    validate_ids,
    validate_samples,
    validate_write,
)
from metaxy_core.store.snapshots import Record, record_snapshot

__all__ = ["WRITE_CHUNK_ROWS", "Engine", "MetadataStore", "WriteResult", "recipes_by_version"]

WRITE_CHUNK_ROWS = 1_000_000
"""Rows prepared and appended at a time within one write's transaction."""


def recipes_by_version(rows: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """``(feature_version, field, recipe)`` rows as feature version -> {field: recipe}."""
    out: dict[str, dict[str, str]] = {}
    for version, field, recipe in rows:
        out.setdefault(version, {})[field] = recipe
    return out


class Engine(Protocol):
    """What an engine does with a plan (see :mod:`metaxy_core.engines`)."""

    name: str

    def expected(self, plan: ResolvePlan, samples: pl.LazyFrame | None = None) -> Any:
        """The expected provenance of every sample upstream produces (engine-native frame)."""

    def resolve(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> Increment:
        """New, stale and orphaned samples."""

    def count(
        self,
        plan: ResolvePlan,
        samples: pl.LazyFrame | None = None,
        filter: SampleFilter | None = None,
    ) -> IncrementCounts:
        """Counts of new, stale and orphaned samples."""

    def count_by_shard(
        self, plan: ResolvePlan, samples: pl.LazyFrame | None, shards: int
    ) -> list[IncrementCounts]:
        """The counts of each hash shard of the plan's key."""

    def count_by_column(
        self, plan: ResolvePlan, samples: pl.LazyFrame | None, column: str
    ) -> dict[Any, IncrementCounts] | None:
        """The counts of each value of a string column, or ``None`` if it cannot group so."""


@dataclass(frozen=True)
class WriteResult:
    """What one write appended."""

    feature: str
    rows: int
    write_seq: int
    failed: int = 0
    """Failed samples recorded with the write (see :mod:`metaxy_core.store.failures`)."""


def _scan_columns(wanted: list[str] | None, filter: SampleFilter | None) -> list[str] | None:
    """Columns to scan: ``wanted`` (``None``: all), or all when a predicate may name any column.

    A hash shard reads only id columns, which ``wanted`` always holds.
    """
    if wanted is None or (filter is not None and not isinstance(filter, HashShard)):
        return None
    return list(dict.fromkeys(wanted))


def _multiset_version(versions: pl.Series) -> str:
    """Hash of a multiset of 64-bit versions, in hex: sums of the 32-bit halves of their
    unsigned bits, so order is irrelevant."""
    value = versions.reinterpret(signed=False)
    high = (value // (1 << 32)).sum()
    low = (value % (1 << 32)).sum()
    return to_hex(hash_parts(["multiset/v1", str(versions.len()), str(high), str(low)]))


class MetadataStore(ABC):
    """An append-only store of feature metadata, with increments.

    Use it as a context manager to keep one connection for several operations.

    A store records each feature's id columns when the feature is first written; every
    operation on a feature (or reading it as an upstream) whose graph declares other id
    columns raises :class:`~metaxy_core.errors.IdColumnsChangedError`.
    """

    _keeps_records = False
    """Whether the backend implements ``_record``/``_records`` (snapshots, audit rows)."""
    _latest_snapshot: str | None = None
    """The graph version this object last found as the store's latest snapshot."""
    engine_name: str = "polars"
    """The engine resolving increments (shown by Dagster as a kind and in metadata)."""
    sample_retry: SampleRetryPolicy | None = None
    """How failed samples come back by themselves when a call passes no ``retry`` (default:
    never; see :class:`~metaxy_core.SampleRetryPolicy`)."""

    def __init__(self, graph: FeatureGraph) -> None:
        self.graph = graph

    # -- backend primitives ---------------------------------------------------------------------

    @abstractmethod
    @contextmanager
    def _session(self) -> Iterator[Any]:
        """A handle held for one operation (a connection, or nothing)."""

    def _write_session(self) -> AbstractContextManager[Any]:
        """A handle for one operation that writes (and reads first): by default ``_session``;
        a backend that tells readers from writers (file locks) holds the writer's here."""
        return self._session()

    @abstractmethod
    def _engine(self, session: Any) -> Engine:
        """The engine resolving increments in this session."""

    @abstractmethod
    def _stored_columns(self, session: Any, feature: str) -> list[str] | None:
        """Columns of a feature's stored rows, or ``None`` if never written."""

    @abstractmethod
    def _stored_id_columns(self, session: Any) -> dict[str, tuple[str, ...]]:
        """Feature -> the id columns it had when first written (each write records them)."""

    @abstractmethod
    def _recipes_by_version(self, session: Any, feature: str) -> dict[str, dict[str, str]]:
        """Stored feature version -> {field: recipe} for every version ever written."""

    @abstractmethod
    def _append(
        self,
        session: Any,
        feature: str,
        chunks: Iterable[pl.DataFrame],
        recipes: Mapping[str, str],
    ) -> int:
        """Append the chunks' rows (with system columns) in one transaction: all or nothing,
        even when preparing a later chunk raises; record the feature's id columns if not yet
        recorded. Returns the write sequence. No chunks: log the write, change no table."""

    @abstractmethod
    def _scan(
        self, session: Any, feature: str, *, history: bool, columns: Sequence[str] | None
    ) -> pl.LazyFrame | None:
        """Current (or all) rows of a feature, or ``None`` if never written."""

    @abstractmethod
    def last_write_seq(self, feature: str | None = None) -> int:
        """The latest write sequence of one feature or of the whole store (0 when none)."""

    def _record(self, session: Any, kind: str, key: str, body: str) -> None:
        """Append one of the store's own records (a graph snapshot, an audit row)."""
        raise StoreError(
            f"{type(self).__name__} keeps no records ({kind}): use a DuckDB or in-memory store."
        )

    def _records(self, session: Any, kind: str) -> list[Record]:
        """The records of one kind, oldest first."""
        return []

    # -- public API -----------------------------------------------------------------------------

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(
        self, feature: str, frame: Any, *, run_id: str | None = None, failed: Any = None
    ) -> WriteResult:
        """Append samples of ``feature``; returns what was written.

        ``failed`` names the samples that could not be computed: their key columns (id
        columns; the parent ids of an expansion) and an ``error`` column with each message,
        plus their ``metaxy_provenance__<field>`` columns if the frame comes from the
        increment. They are recorded with the provenance they were attempted under, and
        increments hold them back until that changes (see :mod:`metaxy_core.store.failures`).

        Root features need a ``metaxy_data_version__<field>`` column per field. Other features
        take their provenance from the frame's ``metaxy_provenance__<field>`` columns (as an
        increment gives them) or, when absent, from the current upstream rows; a
        ``metaxy_data_version__<field>`` column overrides a field's data version. Any other
        ``metaxy_`` column raises :class:`~metaxy_core.errors.UnknownColumnError` (e.g. a
        misspelt field), except the system columns of a read or an increment, which the
        write replaces.

        An empty frame appends no rows and changes no column: its columns may carry no type
        (a scan of an empty folder gives all-``Null`` columns), and the first write with
        rows decides the column types.
        """
        spec = self._spec(feature)
        data = to_polars(frame, f"write of {feature!r}")
        validate_write(spec, data)
        with self, self._write_session() as session:  # one connection to prepare and append
            self._check_id_columns(session, [feature])
            check_stored_names(spec, data, self._stored_columns(session, feature) or [])
            failures = None
            if failed is not None:  # prepared first: a bad frame of failures writes nothing
                given = to_polars(failed, f"failed samples of {feature!r}")
                failures = failure_rows(self, session, spec, given, run_id)
                check_not_both(self.graph, spec, data, failures)
            seq = self._append_rows(session, spec, data, run_id)
            if failures is not None:
                record_failures(self, session, feature, failures)
        return WriteResult(feature, data.height, seq, 0 if failures is None else failures.height)

    def _append_rows(self, session: Any, spec: FeatureSpec, data: pl.DataFrame, run_id: Any) -> int:
        """Prepare and append the rows of a validated write; returns its write sequence."""
        feature = spec.key
        if data.height == 0:
            return self._append(session, feature, [], self._current_recipes(feature))
        expected = self._expected_lookup(session, spec, data)
        # Prepared and appended chunk by chunk, in one transaction: memory stays bounded
        # by a chunk, whatever the size of the write.
        chunks = (
            prepare_rows(
                self.graph,
                spec,
                data.slice(start, WRITE_CHUNK_ROWS),
                run_id=run_id,
                expected=expected,
                validate=False,
            )
            for start in range(0, data.height, WRITE_CHUNK_ROWS)
        )
        seq = self._append(session, feature, chunks, self._current_recipes(feature))
        record_snapshot(self, session)
        return seq

    def read_failures(self, feature: str) -> pl.DataFrame:
        """Every failure recorded for ``feature``, oldest first: key columns, the provenance
        of each field it was attempted under, ``error``, ``run_id`` and ``failed_at``."""
        return read_failures(self, self._spec(feature).key)

    def forget_failures(self, feature: str) -> int:
        """Let the samples of ``feature`` that failed come back in its increments, as if they
        had never failed (their failures stay recorded); returns how many samples had failed
        since failures were last forgotten."""
        return forget_failures(self, self._spec(feature).key)

    def prepare_write(self, feature: str, frame: Any, *, run_id: str | None = None) -> pl.DataFrame:
        """The rows :meth:`write` would append, with every system column; nothing is written.

        Raises the same errors as :meth:`write`.
        """
        spec = self._spec(feature)
        data = to_polars(frame, f"write of {feature!r}")
        with self._session() as session:
            self._check_id_columns(session, [feature])
            expected = self._expected_lookup(session, spec, data)
            return prepare_rows(self.graph, spec, data, run_id=run_id, expected=expected)

    def data_version(
        self,
        feature: str,
        *,
        filter: SampleFilter | None = None,
        pending: pl.DataFrame | None = None,
        deleting: pl.DataFrame | None = None,
    ) -> str:
        """One version of all current samples' data versions (within ``filter``).

        Each sample counts as its ids with its data version, so swapping two samples' data
        versions changes it; independent of row order, so it changes only when some sample's
        data version changes or samples come or go. ``pending`` (prepared rows) and
        ``deleting`` (ids) give the version the feature will have once they are written.
        """
        spec = self._spec(feature)
        ids = list(spec.id_columns)
        with self._session() as session:
            self._check_id_columns(session, [feature])
            wanted = [*ids, c.DATA_VERSION]
            current = self._scan(
                session, feature, history=False, columns=_scan_columns(wanted, filter)
            )
            if current is not None and filter is not None:
                current = apply_filter(current, filter, self.graph.expected_key(feature))
            frames = []
            if current is not None:
                current = current.select(*ids, c.DATA_VERSION)
                for replaced in (pending, deleting):
                    if replaced is not None:
                        current = current.join(replaced.lazy().select(ids), on=ids, how="anti")
                frames.append(current.collect())
        if pending is not None:
            frames.append(pending.select(*ids, c.DATA_VERSION))
        if not frames:
            return _multiset_version(pl.Series(c.DATA_VERSION, [], pl.Int64))
        rows = pl.concat(frames)
        # Each sample's ids hashed with its data version: swapping two samples' contents
        # changes the multiset, and so the version.
        texts = [polars_id_text(i, rows.schema[i]) for i in ids]
        keyed = polars_hash_texts(
            [pl.lit("sample-data-version/v1"), *texts, polars_hex(pl.col(c.DATA_VERSION))]
        )
        return _multiset_version(rows.select(keyed).to_series())

    def delete(self, feature: str, ids: Any, *, run_id: str | None = None) -> WriteResult:
        """Soft-delete samples: append tombstones; history keeps every earlier row."""
        spec = self._spec(feature)
        data = to_polars(ids, f"delete from {feature!r}")
        validate_ids(spec, data)  # names a missing id column before selecting it
        rows = tombstones(self.graph, spec, data.select(spec.id_columns), run_id)
        with self._write_session() as session:
            self._check_id_columns(session, [feature])
            chunks = [rows] if rows.height else []  # an empty delete changes no table
            seq = self._append(session, feature, chunks, self._current_recipes(feature))
        return WriteResult(feature, rows.height, seq)

    def read(
        self,
        feature: str,
        *,
        history: bool = False,
        filter: SampleFilter | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """The current rows of ``feature`` (every row ever written with ``history``, in write
        order); ``columns`` limits the columns returned."""
        self._spec(feature)
        wanted = None
        if columns is not None:
            wanted = [
                *self.graph[feature].id_columns,
                *columns,
                *([c.WRITE_SEQ] if history else []),
            ]
        with self._session() as session:
            self._check_id_columns(session, [feature])
            scanned = self._scan(
                session, feature, history=history, columns=_scan_columns(wanted, filter)
            )
            if scanned is None:
                return pl.DataFrame(schema={k: pl.String for k in self.graph[feature].id_columns})
            if filter is not None:
                scanned = apply_filter(scanned, filter, self.graph.expected_key(feature))
            if history:
                scanned = scanned.sort(c.WRITE_SEQ, maintain_order=True)
            if columns is not None:
                scanned = scanned.select(columns)
            return scanned.collect()

    def resolve_update(
        self,
        feature: str,
        *,
        samples: Any = None,
        filter: SampleFilter | None = None,
        retry_failed: bool = False,
        retry: SampleRetryPolicy | None = None,
    ) -> Increment:
        """Which samples of ``feature`` are new, stale and orphaned.

        Args:
            feature: the feature key.
            samples: for a root feature, the samples as they are now (id columns and a
                ``metaxy_data_version__<field>`` column per field).
            filter: a Narwhals predicate on id or user columns limiting the increment, e.g.
                to one partition.
            retry_failed: include samples that failed under their current provenance (see
                :mod:`metaxy_core.store.failures`); by default they are held back in
                :attr:`Increment.failed`.
            retry: the policy that lets failed samples come back by themselves (default:
                never).

        A field added to an upstream feature after its rows were written concerns only the
        fields that read it: the others resolve as before. Resolving a field that reads it
        raises :class:`~metaxy_core.errors.UpstreamFieldNotWrittenError` until the upstream
        is written again (its samples are stale there), rather than hashing a data version
        that does not exist yet.
        """
        with self._session() as session:
            plan, lazy_samples = self._plan(session, feature, samples)
            increment = self._engine(session).resolve(plan, lazy_samples, filter)
            failures = None if retry_failed else load_failures(self, session, feature)
        return held_back(self.graph, increment, failures, retry or self.sample_retry)

    def count_update(
        self,
        feature: str,
        *,
        samples: Any = None,
        filter: SampleFilter | None = None,
        retry_failed: bool = False,
        retry: SampleRetryPolicy | None = None,
    ) -> IncrementCounts:
        """Counts of :meth:`resolve_update`, without materializing rows (unless some samples
        of ``feature`` failed: then the increment is resolved to hold them back)."""
        with self._session() as session:
            plan, lazy_samples = self._plan(session, feature, samples)
            engine = self._engine(session)
            failures = None if retry_failed else load_failures(self, session, feature)
            if failures is None:
                return engine.count(plan, lazy_samples, filter)
            increment = engine.resolve(plan, lazy_samples, filter)
        return held_back(self.graph, increment, failures, retry or self.sample_retry).counts

    def count_update_by_shard(
        self,
        feature: str,
        shards: int,
        *,
        samples: Any = None,
        retry_failed: bool = False,
        retry: SampleRetryPolicy | None = None,
    ) -> list[IncrementCounts]:
        """``count_update(feature, filter=HashShard(shards, i))`` for every shard ``i``, in one
        pass over the samples instead of one per shard (what a partitioned sensor needs)."""
        HashShard(shards, 0)  # validates ``shards``
        with self._session() as session:
            plan, lazy_samples = self._plan(session, feature, samples)
            counts = self._engine(session).count_by_shard(plan, lazy_samples, shards)
            if retry_failed:
                return counts
            filters = {i: HashShard(shards, i) for i in range(shards)}
            held = held_counts(
                self,
                session,
                plan,
                lazy_samples,
                dict(enumerate(counts)),
                filters,
                retry or self.sample_retry,
            )
            return [held[i] for i in range(shards)]

    def count_update_by_column(
        self,
        feature: str,
        column: str,
        values: Sequence[str],
        *,
        samples: Any = None,
        retry_failed: bool = False,
        retry: SampleRetryPolicy | None = None,
    ) -> dict[str, IncrementCounts]:
        """``count_update(feature, filter=nw.col(column).cast(nw.String()) == v)`` for every
        ``v`` of ``values``: the counts of the samples whose ``column`` reads ``v`` as text.

        For a string ``column`` of a feature that is not an expansion, every value is counted
        in one pass over the samples (what a sensor over column partitions needs); otherwise
        one value at a time.
        """
        with self._session() as session:
            plan, lazy_samples = self._plan(session, feature, samples)
            engine = self._engine(session)
            grouped = engine.count_by_column(plan, lazy_samples, column)
            text = nw.col(column).cast(nw.String())
            if grouped is not None:
                none = IncrementCounts(0, 0, 0)
                counts = {v: grouped.get(v, none) for v in values}
            else:
                counts = {v: engine.count(plan, lazy_samples, text == v) for v in values}
            if retry_failed:
                return counts
            filters = {v: text == v for v in values}
            on_key = column in self.graph.expected_key(feature)
            return held_counts(
                self,
                session,
                plan,
                lazy_samples,
                counts,
                filters,
                retry or self.sample_retry,
                on_key,
            )

    # -- helpers --------------------------------------------------------------------------------

    def _spec(self, feature: str) -> Any:
        if feature not in self.graph:
            raise FeatureNotFoundError(
                f"feature {feature!r} is not in the store's graph; known features: "
                f"{', '.join(self.graph.topological_order()) or 'none'}. Add its FeatureSpec to "
                "the graph the store was built with."
            )
        return self.graph[feature]

    def _current_recipes(self, feature: str) -> dict[str, str]:
        recipes = self.graph.versions.recipes
        return {f: recipes[FieldRef(feature, f)] for f in self.graph[feature].field_keys}

    def _plan(
        self, session: Any, feature: str, samples: Any
    ) -> tuple[ResolvePlan, pl.LazyFrame | None]:
        spec = self._spec(feature)
        lazy_samples = None
        sample_columns: list[str] = []
        if spec.is_root:
            if samples is None:
                raise ValueError(
                    f"{feature!r} is a root feature: pass samples=<frame> with its id columns "
                    "and a metaxy_data_version__<field> column per field, to compare with the "
                    "store."
                )
            frame = to_polars(samples, f"samples of {feature!r}")
            validate_samples(spec, frame)
            lazy_samples = frame.lazy().with_columns(
                stored_data_version(n, frame.schema[n])
                for n in map(c.data_version_column, spec.field_keys)
            )
            sample_columns = frame.columns
        elif samples is not None:
            raise ValueError(
                f"{feature!r} is not a root feature: its samples come from its upstream "
                f"({', '.join(d.feature for d in spec.deps)}), so samples= would be ignored. "
                f"Call it without samples=; to limit the increment, pass filter=."
            )
        self._check_id_columns(session, [feature, *(d.feature for d in spec.deps)])
        stored = {
            d.feature: columns
            for d in spec.deps
            if (columns := self._stored_columns(session, d.feature)) is not None
        }
        self._check_upstream_fields(spec, stored)
        plan = build_plan(
            self.graph,
            feature,
            upstream_columns={
                f: [n for n in columns if not n.startswith(c.PREFIX)]
                for f, columns in stored.items()
            },
            sample_columns=sample_columns,
            recipes_by_version=self._recipes_by_version(session, feature),
        )
        return plan, lazy_samples

    def _check_id_columns(self, session: Any, features: Sequence[str]) -> None:
        """Refuse features whose declared id columns differ from those the store has them
        under: rows would be written with null ids and joined on the wrong columns."""
        recorded = self._stored_id_columns(session)
        for feature in features:
            declared = self.graph[feature].id_columns
            stored = recorded.get(feature)
            if stored is None:
                # Written before the store recorded id columns (or never): its rows must at
                # least have every declared id column.
                columns = self._stored_columns(session, feature)
                lacking = [i for i in declared if columns is not None and i not in columns]
                if not lacking:
                    continue
                found = f"rows without id column {lacking[0]!r}"
            elif stored == declared:
                continue
            else:
                found = f"id columns {list(stored)}"
            raise IdColumnsChangedError(
                f"feature {feature!r} is stored with {found}, but the graph declares id columns "
                f"{list(declared)}. A store keeps the id columns a feature was first written "
                "with: declare those again, or use a new feature key (or a new store file) for "
                "the new id columns."
            )

    def _check_upstream_fields(self, spec: FeatureSpec, stored: Mapping[str, list[str]]) -> None:
        """Refuse to resolve a field that reads an upstream field no stored upstream row has
        (added upstream after its rows were written): its provenance would hash a data
        version that does not exist yet, and its samples be computed from nothing. Fields
        that do not read it resolve as before."""
        for field in spec.field_keys:
            for ref in self.graph.field_deps(spec.key, field):
                columns = stored.get(ref.feature)
                if columns is None or c.data_version_column(ref.field) in columns:
                    continue
                raise UpstreamFieldNotWrittenError(
                    f"field {field!r} of {spec.key!r} reads field {ref.field!r} of "
                    f"{ref.feature!r}, which no stored row of {ref.feature!r} has yet (column "
                    f"{c.data_version_column(ref.field)!r}; the field was added after its rows "
                    f"were written). Write {ref.feature!r} first: its resolve_update lists "
                    "the samples to recompute."
                )

    def _expected_lookup(
        self, session: Any, spec: FeatureSpec, data: pl.DataFrame
    ) -> Callable[[pl.DataFrame], pl.DataFrame] | None:
        """For a non-root write without provenance: the expected rows of its samples, computed
        once for the whole frame and looked up by the key columns of each chunk."""
        provenance = {c.provenance_column(f) for f in spec.field_keys}
        if spec.is_root or provenance <= set(data.columns):
            return None
        key = list(self.graph.expected_key(spec.key))
        what = f"write of {spec.key!r}"
        everything = self._expected_for(session, spec.key, data.select(key).unique(), what)
        return lambda ids: everything.join(ids.unique(), on=key, how="semi")

    def _expected_for(
        self, session: Any, feature: str, ids: pl.DataFrame, what: str
    ) -> pl.DataFrame:
        """Expected provenance and change inputs of the samples (parents, for an expansion)
        that ``ids`` (their key columns, from what ``what`` names) name."""
        plan, _ = self._plan(session, feature, None)
        expected = to_polars(self._engine(session).expected(plan), f"expected rows of {feature!r}")
        key = list(plan.key)
        check_key_types(what, ids, expected.select(key), f"the upstream rows of {feature!r}")
        return expected.join(ids, on=key, how="semi").select(*key, *plan.carried)
