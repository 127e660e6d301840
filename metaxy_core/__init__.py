"""metaxy_core: per-sample, per-field versioning of feature metadata.

Declare features with fields and field-level dependencies, build a validated
:class:`FeatureGraph`, and ask a metadata store which samples are new, stale or orphaned.
"""

from metaxy_core import errors
from metaxy_core.definitions import (
    DEFAULT_FIELD,
    FeatureDep,
    FeatureSpec,
    FieldDep,
    FieldRef,
    FieldSpec,
    Lineage,
)
from metaxy_core.filters import HashShard, SampleFilter
from metaxy_core.graph import FeatureGraph
from metaxy_core.hashing import hash_parts, hash_string, to_hex
from metaxy_core.increment import Increment, IncrementCounts, StaleReason
from metaxy_core.store.base import MetadataStore, WriteResult
from metaxy_core.store.clickhouse import ClickHouseMetadataStore
from metaxy_core.store.copy import copy_store
from metaxy_core.store.duckdb import DuckDBMetadataStore
from metaxy_core.store.failures import SampleRetryPolicy
from metaxy_core.store.memory import InMemoryMetadataStore
from metaxy_core.store.rows import to_polars, validate_ids
from metaxy_core.store.uri import open_store
from metaxy_core.versions import GraphVersions

__all__ = [
    "ClickHouseMetadataStore",
    "DEFAULT_FIELD",
    "DuckDBMetadataStore",
    "FeatureDep",
    "FeatureGraph",
    "FeatureSpec",
    "FieldDep",
    "FieldRef",
    "FieldSpec",
    "GraphVersions",
    "HashShard",
    "InMemoryMetadataStore",
    "Increment",
    "IncrementCounts",
    "Lineage",
    "MetadataStore",
    "SampleFilter",
    "SampleRetryPolicy",
    "StaleReason",
    "WriteResult",
    "copy_store",
    "errors",
    "hash_parts",
    "hash_string",
    "open_store",
    "to_hex",
    "to_polars",
    "validate_ids",
]
