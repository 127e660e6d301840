"""Graph snapshots and audit rows: the store's own records, next to the feature tables.

A **snapshot** is the whole feature graph's definitions (every :class:`FeatureSpec` as JSON)
under its graph version. A store records one when it is first written with definitions that
differ from its latest snapshot (and on ``metaxy snapshot``), so the definitions a store was
written with can be compared with the code of today (``metaxy diff``). An **audit** row records
an operation that changed versions without recompute (``metaxy accept``).

A backend keeps records with two primitives, ``_record`` and ``_records`` (see
:class:`~metaxy_core.store.base.MetadataStore`); everything else is here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metaxy_core.definitions import FeatureSpec
from metaxy_core.errors import MetaxyError, SnapshotNotFoundError
from metaxy_core.graph import FeatureGraph

if TYPE_CHECKING:
    from metaxy_core.store.base import MetadataStore

__all__ = [
    "ACCEPT",
    "SNAPSHOT",
    "Record",
    "Snapshot",
    "audits",
    "find_snapshot",
    "record_audit",
    "record_snapshot",
    "snapshots",
]

SNAPSHOT = "snapshot"
"""Record kind of a graph snapshot; its key is the graph version."""
ACCEPT = "accept"
"""Record kind of an accepted definition change; its key is the feature."""


@dataclass(frozen=True)
class Record:
    """One record: its sequence in the store, kind, key, JSON body and time."""

    seq: int
    kind: str
    key: str
    body: str
    recorded_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """The definitions of a graph as recorded in a store."""

    seq: int
    graph_version: str
    recorded_at: datetime
    graph: FeatureGraph


def snapshot_body(graph: FeatureGraph) -> str:
    """The graph's definitions as canonical JSON."""
    specs = [spec.model_dump(mode="json") for spec in graph]
    return json.dumps({"features": specs}, sort_keys=True, separators=(",", ":"))


def record_snapshot(
    store: MetadataStore, session: Any = None, *, force: bool = False, exact: bool = False
) -> bool:
    """Record the store's definitions unless its latest snapshot already holds them; returns
    whether a snapshot was recorded. A store that keeps no records is skipped unless ``force``.

    A store over part of a code location's graph (a Dagster asset's store holds its feature and
    those upstream of it) records the latest snapshot with its own definitions in place, so the
    writes of one code location's assets add one snapshot: the whole graph. ``exact`` records
    the store's graph as it is (``metaxy snapshot``: features removed from the code leave it).
    """
    if not store._keeps_records and not force:
        return False
    version = store.graph.versions.graph
    if store._latest_snapshot == version:
        return False
    with store._write_session() if session is None else _held(session) as con:
        latest = store._records(con, SNAPSHOT)
        graph = store.graph if exact or not latest else _updated(latest[-1], store.graph)
        recorded = not latest or latest[-1].key != graph.versions.graph
        if recorded:
            store._record(con, SNAPSHOT, graph.versions.graph, snapshot_body(graph))
    store._latest_snapshot = version
    return recorded


def _graph(record: Record) -> FeatureGraph:
    specs = json.loads(record.body)["features"]
    return FeatureGraph(FeatureSpec.model_validate(spec) for spec in specs)


def _updated(latest: Record, graph: FeatureGraph) -> FeatureGraph:
    """The definitions of ``latest`` with those of ``graph`` in place."""
    specs = {spec.key: spec for spec in _graph(latest)}
    specs.update((spec.key, spec) for spec in graph)
    try:
        return FeatureGraph(specs.values())
    except MetaxyError:
        # The code changed more than this store sees (e.g. a field removed that a feature
        # outside ``graph`` read): its own graph is the best record of it.
        return graph


class _held:
    """A session someone else opened, used as a context manager that does not close it."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def __enter__(self) -> Any:
        return self.session

    def __exit__(self, *exc: object) -> None:
        return None


def snapshots(store: MetadataStore) -> list[Snapshot]:
    """Every snapshot recorded in the store, oldest first."""
    with store._session() as con:
        found = store._records(con, SNAPSHOT)
    out = []
    for record in found:
        out.append(Snapshot(record.seq, record.key, record.recorded_at, _graph(record)))
    return out


def find_snapshot(store: MetadataStore, ref: str | None) -> Snapshot:
    """The snapshot whose graph version starts with ``ref`` (``None``: the latest)."""
    found = snapshots(store)
    if not found:
        raise SnapshotNotFoundError(
            f"store {store!r} has no graph snapshot yet: one is recorded on the first write "
            "with new definitions. Run `metaxy snapshot` to record the current definitions."
        )
    if ref is None:
        return found[-1]
    matches = {s.graph_version: s for s in found if s.graph_version.startswith(ref.lower())}
    if len(matches) != 1:
        known = ", ".join(s.graph_version[:12] for s in reversed(found))
        what = "matches no" if not matches else "matches more than one"
        raise SnapshotNotFoundError(
            f"{ref!r} {what} graph snapshot of store {store!r}; recorded (newest first): "
            f"{known}. Pass a longer prefix of one of them (`metaxy snapshots` lists them)."
        )
    # The latest record of that version (a graph may be recorded again after a revert).
    return [s for s in found if s.graph_version in matches][-1]


def record_audit(store: MetadataStore, kind: str, key: str, body: dict[str, Any]) -> None:
    """Append an audit row (e.g. an accepted definition change)."""
    with store._write_session() as con:
        store._record(con, kind, key, json.dumps(body, sort_keys=True, default=str))


def audits(store: MetadataStore, kind: str) -> list[tuple[Record, dict[str, Any]]]:
    """The audit rows of one kind, oldest first, with their parsed bodies."""
    with store._session() as con:
        return [(r, json.loads(r.body)) for r in store._records(con, kind)]
