"""An observable source for a root feature: Dagster sees its sources change, cheaply.

A root metaxy asset scans its sources (a folder of videos) and writes the samples that are new
or changed. :func:`build_root_source` makes the scan alone an observable source asset: each
observation records a ``DataVersion`` of the scanned samples (their ids and per-field data
versions), and nothing else. Put it in the root's ``deps`` and give the root
``AutomationCondition.eager()``: Dagster runs the root only when an observation finds the
sources changed, and a schedule or sensor of observations is all a pipeline needs to follow
its sources.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from metaxy_core import columns, hash_string, to_hex, to_polars
from metaxy_dagster.metadata import asset_key

__all__ = ["build_root_source"]


def build_root_source(
    key: str,
    scan: Callable[[], Any],
    *,
    id_columns: Sequence[str],
    description: str | None = None,
    group_name: str | None = None,
) -> dg.SourceAsset:
    """An observable source asset ``key`` whose observations run ``scan``.

    Args:
        key: the source's asset key, e.g. ``"video/source"`` (not a feature).
        scan: returns the samples as the root would see them now: the id columns and a
            ``metaxy_data_version__<field>`` column per field (Polars, pandas or Arrow).
        id_columns: the samples' id columns.
        description: shown in the UI.
        group_name: the Dagster asset group.

    Example:
        .. code-block:: python

            source = build_root_source("video/source", scan_clips, id_columns=["clip_id"])

            @metaxy_asset(key="video/raw", id_columns=["clip_id"], fields=["audio", "frames"],
                          deps=[source], automation_condition=dg.AutomationCondition.eager())
            def raw(context):
                return scan_clips()
    """
    ids = list(id_columns)

    @dg.observable_source_asset(
        key=asset_key(key),
        description=description or f"The sources scanned by its root feature ({key}).",
        group_name=group_name,
    )
    def _source() -> dg.ObserveResult:
        samples = to_polars(scan(), f"samples scanned for {key!r}")
        versions = sorted(c for c in samples.columns if c.startswith(columns.DATA_VERSION + "__"))
        # Sorted, so the version depends on the samples only, never on the scan's order.
        canonical = samples.select(*ids, *versions).sort(ids).write_csv()
        return dg.ObserveResult(
            data_version=dg.DataVersion(to_hex(hash_string(canonical))),
            metadata={"metaxy/samples": samples.height, "metaxy/fields": len(versions)},
        )

    return _source
