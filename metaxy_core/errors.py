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
    │   ├── DependencyError                     a bad select, rename, filter or optional
    │   └── AssetDefinitionError(TypeError)     an orchestrator asset that cannot take a keyword
    ├── FeatureNotFoundError(KeyError)          an unknown feature key
    ├── FieldNotFoundError(KeyError)            an unknown field of a known feature
    ├── WriteError(ValueError)                  a frame that cannot be written; nothing is written
    │   ├── MissingColumnError                  a required column is absent
    │   ├── NullIdError                         an id column holds nulls
    │   ├── DuplicateIdError                    one sample appears twice in one write
    │   ├── MissingDataVersionError             a root write lacks a field's data version
    │   ├── ColumnTypeError(TypeError)          a column has the wrong type
    │   └── UnknownSampleError                  a sample that upstream does not produce
    └── StoreError(RuntimeError)                a store that cannot be used
        ├── StoreFormatError                    written by another format or hash algorithm
        └── StoreLockedError(TimeoutError)      another process held the file for too long

Messages name the feature, field or column, list what was valid and end with a hint.
"""

from __future__ import annotations

__all__ = [
    "AssetDefinitionError",
    "ColumnTypeError",
    "CycleError",
    "DependencyError",
    "DuplicateFeatureError",
    "DuplicateFieldError",
    "DuplicateIdError",
    "EmptyIdColumnsError",
    "FeatureNotFoundError",
    "FieldNotFoundError",
    "GraphError",
    "IdColumnsMismatchError",
    "InvalidKeyError",
    "MetaxyError",
    "MissingColumnError",
    "MissingDataVersionError",
    "NullIdError",
    "StoreError",
    "StoreFormatError",
    "StoreLockedError",
    "UnknownSampleError",
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


class DependencyError(GraphError):
    """How a dependency is read (``select``, ``rename``, ``filter``, ``optional``) is invalid,
    or names a column its upstream feature does not have."""


class AssetDefinitionError(GraphError, TypeError):
    """An asset declared with a keyword or a function signature it cannot take."""


class FeatureNotFoundError(MetaxyError, KeyError):
    """An unknown feature key."""


class FieldNotFoundError(MetaxyError, KeyError):
    """An unknown field of a known feature."""


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


class UnknownSampleError(WriteError):
    """A written sample is not produced by the feature's upstream."""


class StoreError(MetaxyError, RuntimeError):
    """The store cannot be used."""


class StoreFormatError(StoreError):
    """The store was written with another format version or hash algorithm."""


class StoreLockedError(StoreError, TimeoutError):
    """Another process held the store file for longer than the lock timeout."""
