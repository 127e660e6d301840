"""Accepting a definition change without recompute.

When a field's code version is bumped for a change that does not change its outputs (a
refactor, a faster implementation), every stored sample of the field is stale by
``code_version``. Accepting the change rewrites those samples' provenance under the new
definitions while keeping their data versions, so they are fresh again and nothing downstream
sees a change. It is refused when a sample is also stale because its upstream data changed
(that needs a recompute), or because of a field that was not accepted. Each accept appends an
audit row to the store (:mod:`metaxy_core.store.snapshots`).

>>> from metaxy_core import FeatureGraph, FeatureSpec, FieldSpec, InMemoryMetadataStore
>>> import polars as pl
>>> v1 = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"], fields=["audio"])])
>>> store = InMemoryMetadataStore(v1)
>>> _ = store.write("clips", pl.DataFrame({"id": ["a"], "metaxy_data_version__audio": ["1"]}))
>>> v2 = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"],
...                                fields=[FieldSpec(key="audio", code_version="2")])])
>>> store.graph = v2
>>> accept_change(store, "clips").samples
1
>>> accept_change(store, "clips").samples  # already accepted: nothing left
0
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from metaxy_core import columns as c
from metaxy_core.errors import AcceptRefusedError
from metaxy_core.increment import StaleReason
from metaxy_core.store.base import MetadataStore
from metaxy_core.store.snapshots import ACCEPT, record_audit, snapshots

__all__ = ["AcceptResult", "accept_change"]

_SHOWN = 3


@dataclass(frozen=True)
class AcceptResult:
    """What one accept rewrote."""

    feature: str
    fields: tuple[str, ...]
    samples: int
    write_seq: int | None
    run_id: str | None


def _root_samples(store: MetadataStore, feature: str) -> pl.DataFrame | None:
    spec = store.graph[feature]
    versions = [c.data_version_column(f) for f in spec.field_keys]
    stored = store.read(feature, columns=[*spec.id_columns, *versions])
    return stored if set(versions) <= set(stored.columns) else None


def _examples(frame: pl.DataFrame, ids: Sequence[str]) -> str:
    return ", ".join(str(r) for r in frame.select(ids).head(_SHOWN).iter_rows(named=True))


def _upstream_changed(
    store: MetadataStore,
    feature: str,
    stale: pl.DataFrame,
    stored: pl.DataFrame,
    inputs: Sequence[str],
) -> pl.DataFrame:
    """Ids of the stale samples whose upstream data changed since they were computed.

    A field whose definition changed is reported stale by ``code_version`` even when its
    inputs changed too. So compare the change inputs each sample was computed from with
    today's; where they were not stored, resolve the sample under the definitions it was
    written with (its graph snapshot): stale there means its upstream data changed.
    """
    ids = list(store.graph[feature].id_columns)
    by_reason = stale.filter(pl.col(c.STALE_REASON).str.contains(StaleReason.INPUT_DATA))
    if not inputs:
        return by_reason.select(ids)
    then = stored.select(*ids, c.FEATURE_VERSION, *(pl.col(n).alias(f"{n}__then") for n in inputs))
    joined = stale.select(*ids, *inputs).join(then, on=ids, how="left")
    unknown = pl.any_horizontal(pl.col(f"{n}__then").is_null() for n in inputs)
    differs = pl.any_horizontal(pl.col(n).ne_missing(pl.col(f"{n}__then")) for n in inputs)
    found = [by_reason.select(ids), joined.filter(~unknown & differs).select(ids)]
    unchecked = joined.filter(unknown)
    if unchecked.height:
        recorded = list(reversed(snapshots(store)))
        for (version,), rows in unchecked.group_by([c.FEATURE_VERSION]):
            snap = next(
                (s for s in recorded if s.graph.versions.features.get(feature) == version), None
            )
            if snap is None:  # nothing to prove them unchanged with
                found.append(rows.select(ids))
                continue
            then_store = copy.copy(store)  # the same data, seen through the old definitions
            then_store.graph = snap.graph
            moved = then_store.resolve_update(feature).to_compute().select(ids)
            found.append(moved.join(rows.select(ids), on=ids, how="semi"))
    return pl.concat(found).unique(maintain_order=True)


def accept_change(
    store: MetadataStore, feature: str, fields: Sequence[str] | None = None
) -> AcceptResult:
    """Give the samples of ``feature`` that are stale only by a definition change of
    ``fields`` (default: any field) the current versions, keeping their data versions.

    Raises:
        AcceptRefusedError: some stale sample also has changed upstream data, or a changed
            field outside ``fields``; nothing is written.
    """
    spec = store.graph[feature]
    accepted = tuple(spec.field(f).key for f in fields) if fields else spec.field_keys
    ids = list(spec.id_columns)
    if spec.is_root:
        samples = _root_samples(store, feature)
        if samples is None:
            return AcceptResult(feature, accepted, 0, None, None)
        increment = store.resolve_update(feature, samples=samples)
    else:
        increment = store.resolve_update(feature)
    stale = increment.stale
    inputs = [n for n in stale.columns if n.startswith(c.UPSTREAM_DATA_VERSION + "__")]
    stored = store.read(feature).join(stale.select(ids), on=ids, how="semi")
    by_input = _upstream_changed(store, feature, stale, stored, inputs)
    if by_input.height:
        raise AcceptRefusedError(
            f"cannot accept the change of {feature!r}: {by_input.height} of its stale samples "
            f"also have changed upstream data (e.g. {_examples(by_input, ids)}), which needs a "
            f"recompute. Materialize {feature!r} first (it recomputes them), or accept once "
            "upstream data is unchanged."
        )
    others = stale.filter(
        pl.col(c.CHANGED_FIELDS).list.set_difference(pl.lit(list(accepted))).list.len() > 0
    )
    if others.height:
        extra = sorted(set(others.get_column(c.CHANGED_FIELDS).explode()) - set(accepted))
        raise AcceptRefusedError(
            f"cannot accept only {', '.join(accepted)} of {feature!r}: {others.height} stale "
            f"samples also changed field(s) {', '.join(extra)}. Accept those too "
            f"(`metaxy accept {feature}`), or recompute {feature!r}."
        )
    if stale.is_empty():
        return AcceptResult(feature, accepted, 0, None, None)
    changed = set(stale.get_column(c.CHANGED_FIELDS).explode())
    accepted = tuple(f for f in accepted if f in changed)
    # The stored rows as they are (user columns and data versions), with the provenance and
    # change inputs the current definitions expect.
    carried = [n for n in stale.columns if n.startswith(c.PROVENANCE + "__")] + inputs
    keep = [
        n
        for n in stored.columns
        if not n.startswith(c.PREFIX) or n.startswith(c.DATA_VERSION + "__")
    ]
    rows = stored.select(keep)
    if not spec.is_root:
        rows = rows.join(stale.select(*ids, *carried), on=ids, how="left")
    run_id = f"metaxy-accept-{uuid.uuid4().hex[:12]}"
    written = store.write(feature, rows, run_id=run_id)
    record_audit(
        store,
        ACCEPT,
        feature,
        {
            "fields": list(accepted),
            "samples": written.rows,
            "write_seq": written.write_seq,
            "run_id": run_id,
            "feature_version": store.graph.versions.features[feature],
            "graph_version": store.graph.versions.graph,
        },
    )
    return AcceptResult(feature, accepted, written.rows, written.write_seq, run_id)
