"""Names of the system columns metaxy adds to every feature table.

>>> provenance_column("audio"), data_version_column("audio")
('metaxy_provenance__audio', 'metaxy_data_version__audio')
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHANGED_FIELDS",
    "DATA_VERSION",
    "DELETED",
    "FEATURE_VERSION",
    "GRAPH_VERSION",
    "PREFIX",
    "PROVENANCE",
    "RUN_ID",
    "STALE_REASON",
    "UPSTREAM_DATA_VERSION",
    "WRITE_SEQ",
    "WRITTEN_AT",
    "data_version_column",
    "provenance_column",
    "upstream_data_version_column",
]

PREFIX: Final = "metaxy_"
PROVENANCE: Final = "metaxy_provenance"
DATA_VERSION: Final = "metaxy_data_version"
FEATURE_VERSION: Final = "metaxy_feature_version"
GRAPH_VERSION: Final = "metaxy_graph_version"
RUN_ID: Final = "metaxy_run_id"
WRITTEN_AT: Final = "metaxy_written_at"
WRITE_SEQ: Final = "metaxy_write_seq"
DELETED: Final = "metaxy_deleted"
UPSTREAM_DATA_VERSION: Final = "metaxy_upstream_data_version"
# Increment-only columns.
CHANGED_FIELDS: Final = "metaxy_changed_fields"
STALE_REASON: Final = "metaxy_stale_reason"


def provenance_column(field: str) -> str:
    """Column holding the provenance of one field."""
    return f"{PROVENANCE}__{field}"


def data_version_column(field: str) -> str:
    """Column holding the data version of one field."""
    return f"{DATA_VERSION}__{field}"


def upstream_data_version_column(upstream: str) -> str:
    """Column holding the sample data version of upstream feature ``upstream`` that a sample
    was computed from; an unchanged value proves unchanged inputs without hashing."""
    return f"{UPSTREAM_DATA_VERSION}__{upstream.replace('/', '__')}"
