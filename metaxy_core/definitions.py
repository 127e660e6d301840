"""Feature and field declarations: immutable Pydantic models, validated on construction.

>>> raw = FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio", "frames"])
>>> transcript = FeatureSpec(
...     key="audio/transcript",
...     id_columns=["video_id"],
...     deps=["video/raw"],
...     fields=[FieldSpec(key="text", code_version="2", deps=[FieldDep("video/raw", ["audio"])])],
... )
>>> [f.key for f in raw.fields], transcript.fields[0].deps[0].fields
(['audio', 'frames'], ('audio',))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any, NamedTuple

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from metaxy_core.columns import PREFIX
from metaxy_core.errors import (
    DependencyError,
    DuplicateFieldError,
    EmptyIdColumnsError,
    FieldNotFoundError,
    GraphError,
    InvalidKeyError,
    MetaxyError,
    ReservedColumnError,
)

__all__ = [
    "DEFAULT_FIELD",
    "FeatureDep",
    "FeatureSpec",
    "FieldDep",
    "FieldRef",
    "FieldSpec",
    "Lineage",
]

DEFAULT_FIELD = "default"
_SEGMENT = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
_FEATURE_KEY = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT})*$")
_FIELD_KEY = re.compile(rf"^{_SEGMENT}$")
_KEY_HINT = (
    "use lowercase segments of letters, digits and single underscores, starting with a letter, "
    "joined by '/'"
)


def _check_feature_key(key: str) -> str:
    if not isinstance(key, str) or not _FEATURE_KEY.fullmatch(key):
        raise InvalidKeyError(
            f"feature key {key!r} is not a valid path: {_KEY_HINT}, e.g. 'video/raw'."
        )
    return key


def _check_field_key(key: str, where: str) -> str:
    if not isinstance(key, str) or not _FIELD_KEY.fullmatch(key):
        raise InvalidKeyError(
            f"field key {key!r} of {where} is not valid: use one lowercase segment of letters, "
            "digits and single underscores, starting with a letter, e.g. 'audio'."
        )
    return key


class FieldRef(NamedTuple):
    """One field of one feature."""

    feature: str
    field: str

    def __str__(self) -> str:
        return f"{self.feature}.{self.field}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        # Pydantic wraps a ValueError raised by a validator in a ValidationError; give callers
        # our own error, which names the culprit and what to do.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            for detail in exc.errors():
                cause = detail.get("ctx", {}).get("error")
                if isinstance(cause, MetaxyError):
                    raise cause from None
            raise


class Lineage(str, Enum):
    """How the samples of a feature relate to the samples of one upstream feature.

    A feature always joins an upstream on the id columns the two share; the lineage says which
    side has more of them:

    - ``identity``: one sample per upstream sample; the same id columns.
    - ``expansion`` (1:N): each upstream sample (a parent, e.g. a video) yields several samples
      (children, e.g. chunks); the feature's id columns are the upstream's plus at least one
      more. Until its children exist, a parent is one **new** row of the increment.
    - ``aggregation`` (N:1): each sample groups several upstream samples (e.g. the utterances of
      a speaker); the feature's id columns are a subset of the upstream's. A group's data
      versions hash those of its members, so a changed, added or removed member makes the
      group stale.
    """

    IDENTITY = "identity"
    EXPANSION = "expansion"
    AGGREGATION = "aggregation"


class FieldDep(_Frozen):
    """Field ``fields`` of upstream feature ``feature``; ``None`` means all of its fields."""

    feature: str
    fields: tuple[str, ...] | None = None

    def __init__(self, feature: str | None = None, fields: Any = None, /, **data: Any) -> None:
        # Positional shorthand FieldDep("video/raw", ["audio"]) next to keywords and dicts.
        if feature is not None:
            data["feature"] = feature
        if fields is not None:
            data["fields"] = fields
        super().__init__(**data)

    @field_validator("feature")
    @classmethod
    def _feature_key(cls, value: str) -> str:
        return _check_feature_key(value)

    @field_validator("fields", mode="before")
    @classmethod
    def _field_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return value


class FieldSpec(_Frozen):
    """A named part of a sample's data.

    ``code_version`` is bumped by the author when the code that computes the field changes.
    ``deps`` lists the upstream fields it is computed from; ``None`` means the default: the
    same-named field of each upstream feature if it has one, else all of its fields.
    """

    key: str
    code_version: str = "1"
    deps: tuple[FieldDep, ...] | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _check_field_key(value, "a FieldSpec")


# Stores add and drop columns by the first prefix; engines name their working columns with the
# second. A user column named so would be dropped or overwritten.
_RESERVED = (PREFIX, f"__{PREFIX}")


def _check_column(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or name.startswith(_RESERVED):
        raise DependencyError(
            f"{what}: {name!r} is not a user column name: use a non-empty string that does not "
            f"start with {PREFIX!r} or '__{PREFIX}' (metaxy's own columns)."
        )
    return name


class FeatureDep(_Frozen):
    """Feature-level dependency on ``feature`` through ``lineage``, and how it is read.

    Args:
        feature: the upstream feature key.
        lineage: how its samples relate to this feature's (see :class:`Lineage`); the two are
            always joined on the id columns they share.
        select: the upstream user columns passed through to the increment (default: all).
        rename: upstream user column -> the name it is passed through under.
        filter: a static SQL boolean expression on the upstream rows, such as
            ``"duration > 10"``; rows it rejects do not exist for this feature. It runs as
            ``polars.sql_expr`` and as SQL in DuckDB, so keep to what both understand
            (comparisons, ``AND``/``OR``/``NOT``, ``IN``, ``IS NULL``, ``LIKE``).
        optional: a left join: samples exist without this upstream, and its missing data
            versions enter provenance as the null sentinel.

    Every one of these is part of the recipe of exactly the fields that read through this
    dependency, so changing, say, the filter changes their versions and nothing else.

    >>> dep = FeatureDep("video/raw", lineage="expansion", filter="duration > 10")
    >>> dep.lineage.value, dep.filter, dep.select
    ('expansion', 'duration > 10', None)
    >>> FeatureDep("audio/clean", rename={"path": "clean_path"}).rename
    (('path', 'clean_path'),)
    """

    feature: str
    lineage: Lineage = Lineage.IDENTITY
    select: tuple[str, ...] | None = None
    rename: tuple[tuple[str, str], ...] = ()
    filter: str | None = None
    optional: bool = False

    def __init__(self, feature: str | None = None, /, **data: Any) -> None:
        # Positional shorthand FeatureDep("video/raw", lineage=...) next to keywords and dicts.
        if feature is not None:
            data["feature"] = feature
        super().__init__(**data)

    @field_validator("feature")
    @classmethod
    def _feature_key(cls, value: str) -> str:
        return _check_feature_key(value)

    @field_validator("select", mode="before")
    @classmethod
    def _select(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("rename", mode="before")
    @classmethod
    def _rename(cls, value: Any) -> Any:
        # Stored as sorted pairs: hashable, and one spelling per mapping.
        pairs = value.items() if isinstance(value, Mapping) else value
        return tuple(sorted(tuple(pair) for pair in pairs))

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        return None if value is None else value.strip()

    @model_validator(mode="after")
    def _check(self) -> FeatureDep:
        where = f"dependency on {self.feature!r}"
        if self.filter is not None:
            try:
                pl.sql_expr(self.filter)
            except pl.exceptions.PolarsError as exc:
                raise DependencyError(
                    f"filter {self.filter!r} of the {where} is not one SQL boolean expression "
                    f"({exc}); write e.g. \"duration > 10 AND kind = 'speech'\"."
                ) from None
        for name in self.select or ():
            _check_column(name, f"select= of the {where}")
        if self.select is not None and len(set(self.select)) != len(self.select):
            raise DependencyError(f"select= of the {where} lists a column twice: list each once.")
        sources = [_check_column(a, f"rename= of the {where}") for a, _ in self.rename]
        targets = [_check_column(b, f"rename= of the {where}") for _, b in self.rename]
        if len(set(targets)) != len(targets) or len(set(sources)) != len(sources):
            raise DependencyError(
                f"rename= of the {where} maps two columns to one name, or one column twice: "
                f"{dict(self.rename)}. Give each passed-through column its own name."
            )
        unselected = sorted(set(sources) - set(self.select if self.select is not None else sources))
        if unselected:
            raise DependencyError(
                f"rename= of the {where} renames {unselected}, which select= does not pass "
                f"through; select= is {list(self.select or ())}. Add them to select=, or drop "
                "them from rename=."
            )
        return self


class FeatureSpec(_Frozen):
    """A per-sample metadata table: its key, id columns, fields and upstream features."""

    key: str
    id_columns: tuple[str, ...]
    fields: tuple[FieldSpec, ...] = (FieldSpec(key=DEFAULT_FIELD),)
    deps: tuple[FeatureDep, ...] = ()
    description: str | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _check_feature_key(value)

    @field_validator("id_columns", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        items = [value] if isinstance(value, (str, FieldSpec)) else list(value)
        return tuple(FieldSpec(key=f) if isinstance(f, str) else f for f in items)

    @field_validator("deps", mode="before")
    @classmethod
    def _deps(cls, value: Any) -> Any:
        items = [value] if isinstance(value, (str, FeatureDep)) else list(value)
        return tuple(FeatureDep(feature=d) if isinstance(d, str) else d for d in items)

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if not self.id_columns or any(not c for c in self.id_columns):
            raise EmptyIdColumnsError(
                f"feature {self.key!r} has no id columns: pass id_columns=[...] naming the "
                "column(s) that identify a sample, e.g. id_columns=['video_id']."
            )
        reserved = [i for i in self.id_columns if i.startswith(_RESERVED)]
        if reserved:
            raise ReservedColumnError(
                f"feature {self.key!r}: id column {reserved[0]!r} starts with {PREFIX!r} or "
                f"'__{PREFIX}', which name metaxy's own columns. Rename the column in your "
                f"data, e.g. {reserved[0].lstrip('_').removeprefix(PREFIX) or 'sample_id'!r}."
            )
        if len(set(self.id_columns)) != len(self.id_columns):
            raise EmptyIdColumnsError(
                f"feature {self.key!r} repeats an id column in {list(self.id_columns)}: "
                "list each id column once."
            )
        if not self.fields:
            raise GraphError(
                f"feature {self.key!r} has no fields: declare at least one, e.g. "
                f"fields=[{DEFAULT_FIELD!r}]."
            )
        seen: set[str] = set()
        for f in self.fields:
            if f.key in seen:
                raise DuplicateFieldError(
                    f"feature {self.key!r} declares field {f.key!r} twice: give each field "
                    "of a feature its own key."
                )
            seen.add(f.key)
        return self

    @property
    def field_keys(self) -> tuple[str, ...]:
        """The keys of the fields, in declaration order."""
        return tuple(f.key for f in self.fields)

    @property
    def is_root(self) -> bool:
        """True when the feature has no upstream features."""
        return not self.deps

    def field(self, key: str) -> FieldSpec:
        """The field ``key``; raises :class:`~metaxy_core.errors.FieldNotFoundError`."""
        for f in self.fields:
            if f.key == key:
                return f
        raise FieldNotFoundError(
            f"feature {self.key!r} has no field {key!r}; its fields are: "
            f"{', '.join(self.field_keys)}."
        )
