"""Moving a project to another store: copy the current rows of every feature.

>>> from metaxy_core import FeatureGraph, FeatureSpec, InMemoryMetadataStore
>>> from metaxy_core.testing import root_samples
>>> graph = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"], fields=["audio"])])
>>> source, target = InMemoryMetadataStore(graph), InMemoryMetadataStore(graph)
>>> _ = source.write("clips", root_samples("id", ["a", "b"], audio=["h1", "h2"]))
>>> copy_store(source, target)
{'clips': 2}
"""

from __future__ import annotations

from metaxy_core import columns as c
from metaxy_core.store.base import MetadataStore

__all__ = ["copy_store"]


def copy_store(source: MetadataStore, target: MetadataStore) -> dict[str, int]:
    """Write the current rows of every feature of ``target``'s graph that ``source`` holds
    into ``target``, upstream first; returns the rows copied per feature.

    Each sample keeps its provenance and data version of every field (so nothing resolves
    as new or stale in ``target``), and the run id when all rows share one; the copy is one
    write per feature, so write sequences and times are the target's, and the history of
    earlier rows stays in ``source``. Copy into an empty target: rows already there are
    replaced by the copies.
    """
    copied: dict[str, int] = {}
    for feature in target.graph.topological_order():
        if feature not in source.graph or source.last_write_seq(feature) == 0:
            continue
        rows = source.read(feature)
        if rows.height == 0:
            continue
        runs = rows.get_column(c.RUN_ID).unique() if c.RUN_ID in rows.columns else None
        run_id = runs[0] if runs is not None and runs.len() == 1 else None
        copied[feature] = target.write(feature, rows, run_id=run_id).rows
    return copied
