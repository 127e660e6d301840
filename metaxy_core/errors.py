"""Every error metaxy raises.

One base class, specific subclasses that also inherit the matching builtin, so callers may
catch either ``MetaxyError`` or the builtin they already expect::

    MetaxyError(Exception)
    ├── GraphError(ValueError)                  an invalid feature graph, found when it is built
    │   ├── InvalidKeyError                     a feature or field key that is not a valid path
    │   ├── DuplicateFeatureError               two features with one key
    │   ├── DuplicateFieldError                 two fields with one key in a feature
    │   ├── EmptyIdColumnsError                 a feature without id columns
    │   ├── CycleError                          feature dependencies form a cycle
    │   ├── IdColumnsMismatchError              id columns that do not fit a dependency's lineage
    │   ├── ReservedColumnError                 an id column named like metaxy's own columns
    │   ├── DependencyError                     a bad select, rename, filter or optional
    │   └── AssetDefinitionError(TypeError)     an orchestrator asset that cannot take a keyword
    ├── FeatureNotFoundError(KeyError)          an unknown feature key
    ├── FieldNotFoundError(KeyError)            an unknown field of a known feature
    ├── UpstreamFieldNotWrittenError(LookupError)
    │                                           a field reads an upstream field no stored row has
    ├── WriteError(ValueError)                  a frame that cannot be written; nothing is written
    │   ├── MissingColumnError                  a required column is absent
    │   ├── NullIdError                         an id column holds nulls
    │   ├── DuplicateIdError                    one sample appears twice in one write
    │   ├── MissingDataVersionError             a root write lacks a field's data version
    │   ├── ColumnTypeError(TypeError)          a column has the wrong type
    │   ├── DuplicateColumnError                two column names that differ only in case
    │   ├── UnknownColumnError                  a metaxy_ column that names nothing of the feature
    │   └── UnknownSampleError                  a sample that upstream does not produce
    ├── StoreError(RuntimeError)                a store that cannot be used
    │   ├── StoreFormatError                    not a store, or another format or hash algorithm
    │   ├── StorePathError(OSError)             a store path that cannot be a file
    │   ├── IdColumnsChangedError               the graph declares other id columns than stored
    │   └── StoreLockedError(TimeoutError)      another process held the file for too long
    ├── ConfigError(ValueError)                 a project configuration that cannot be used
    ├── SnapshotNotFoundError(KeyError)         no recorded graph snapshot matches a reference
    └── AcceptRefusedError(ValueError)          a definition change that cannot be accepted

Messages name the feature, field or column, list what was valid and end with a hint.
"""

from __future__ import annotations

__all__ = [
    "AcceptRefusedError",
    "AssetDefinitionError",
    "ColumnTypeError",
    "ConfigError",
    "CycleError",
    "DependencyError",
    "DuplicateColumnError",
    "DuplicateFeatureError",
    "DuplicateFieldError",
    "DuplicateIdError",
    "EmptyIdColumnsError",
    "FeatureNotFoundError",
    "FieldNotFoundError",
    "GraphError",
    "IdColumnsChangedError",
    "IdColumnsMismatchError",
    "InvalidKeyError",
    "MetaxyError",
    "MissingColumnError",
    "MissingDataVersionError",
    "NullIdError",
    "ReservedColumnError",
    "SnapshotNotFoundError",
    "StoreError",
    "StoreFormatError",
    "StoreLockedError",
    "StorePathError",
    "UnknownColumnError",
    "UnknownSampleError",
    "UpstreamFieldNotWrittenError",
    "WriteError",
]


class MetaxyError(Exception):
    """Base class of every metaxy error."""

    def __str__(self) -> str:
        # KeyError quotes its message; render every metaxy error as the plain sentence.
        return str(self.args[0]) if self.args else ""


class GraphError(MetaxyError, ValueError):
    """The feature graph is invalid."""


class InvalidKeyError(GraphError):
    """A feature or field key is not a valid path."""


class DuplicateFeatureError(GraphError):
    """Two features share one key."""


class DuplicateFieldError(GraphError):
    """Two fields of one feature share one key."""


class EmptyIdColumnsError(GraphError):
    """A feature declares no id columns."""


class CycleError(GraphError):
    """Feature dependencies form a cycle."""


class IdColumnsMismatchError(GraphError):
    """A dependency's lineage does not fit the id columns of the two features (identity needs
    the same ones, expansion more downstream, aggregation fewer), or a feature's upstream
    features join on id columns that do not nest."""


class ReservedColumnError(GraphError):
    """An id column is named like metaxy's own columns (``metaxy_...`` or ``__metaxy...``)."""


class DependencyError(GraphError):
    """How a dependency is read (``select``, ``rename``, ``filter``, ``optional``) is invalid,
    or names a column its upstream feature does not have."""


class AssetDefinitionError(GraphError, TypeError):
    """An asset declared with a keyword or a function signature it cannot take."""


class FeatureNotFoundError(MetaxyError, KeyError):
    """An unknown feature key."""


class FieldNotFoundError(MetaxyError, KeyError):
    """An unknown field of a known feature."""


class UpstreamFieldNotWrittenError(MetaxyError, LookupError):
    """A field reads a field of an upstream feature that no stored row of that upstream has
    yet (the field was added to the upstream after its rows were written)."""


class WriteError(MetaxyError, ValueError):
    """A frame cannot be written. Nothing was written."""


class MissingColumnError(WriteError):
    """A required column is missing from a frame."""


class MissingDataVersionError(MissingColumnError):
    """A root feature's write lacks the data version of a declared field."""


class NullIdError(WriteError):
    """An id column holds nulls."""


class DuplicateIdError(WriteError):
    """One sample appears more than once in one write."""


class ColumnTypeError(WriteError, TypeError):
    """A column has a type the store cannot accept."""


class DuplicateColumnError(WriteError):
    """Two column names differ only in case: the stores resolve column names without case."""


class UnknownColumnError(WriteError):
    """A frame holds a ``metaxy_`` column that names no field or dependency of the feature, so
    its values would be lost (e.g. a misspelt ``metaxy_data_version__<field>``)."""


class UnknownSampleError(WriteError):
    """A written sample is not produced by the feature's upstream."""


class StoreError(MetaxyError, RuntimeError):
    """The store cannot be used."""


class StoreFormatError(StoreError):
    """The store file is not a metaxy store, or was written with another format version or
    hash algorithm."""


class StorePathError(StoreError, OSError):
    """The store path cannot be a file: a directory, or under a regular file."""


class IdColumnsChangedError(StoreError):
    """The graph declares other id columns for a feature than the store recorded when the
    feature was first written."""


class StoreLockedError(StoreError, TimeoutError):
    """Another process held the store file for longer than the lock timeout."""


class ConfigError(MetaxyError, ValueError):
    """The project configuration (``metaxy.toml``, ``[tool.metaxy]``, ``METAXY_*``) is invalid,
    or what it names cannot be loaded."""


class SnapshotNotFoundError(MetaxyError, KeyError):
    """No graph snapshot recorded in the store matches the given reference."""


class AcceptRefusedError(MetaxyError, ValueError):
    """A definition change cannot be accepted without recompute (e.g. upstream data changed
    too). Nothing was written."""
