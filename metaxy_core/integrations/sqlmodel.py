"""Features as SQLModel classes: typed columns, a ``FeatureSpec`` from the class, typed rows.

The class holds what a feature is: its id columns are the fields marked
``Field(primary_key=True)``, its other fields are the user columns with their Python types,
and ``__metaxy__`` gives the rest of the :class:`~metaxy_core.FeatureSpec` (key, fields,
deps). Writes check every column's type (and nulls) against the class before anything is
written; reads return instances of the class. Install with
``pip install 'metaxy-dagster[sqlmodel]'``.

>>> from typing import ClassVar
>>> from sqlmodel import Field, SQLModel
>>> class Clip(SQLModel):
...     __metaxy__: ClassVar[FeatureOptions] = {"key": "clips", "fields": ["audio"]}
...     clip_id: str = Field(primary_key=True)
...     seconds: float
>>> feature_spec(Clip).id_columns
('clip_id',)
>>> model_schema(Clip)
{'clip_id': String, 'seconds': Float64}
"""

from __future__ import annotations

import datetime as dt
import decimal
import types
import typing
from collections.abc import Sequence
from typing import Any, TypedDict, TypeVar

import polars as pl
from pydantic import BaseModel, ValidationError

from metaxy_core.definitions import FeatureDep, FeatureSpec, FieldSpec
from metaxy_core.errors import ColumnTypeError, EmptyIdColumnsError, MissingColumnError
from metaxy_core.filters import SampleFilter
from metaxy_core.store.base import MetadataStore, WriteResult
from metaxy_core.store.rows import to_polars

__all__ = [
    "FeatureOptions",
    "feature_spec",
    "model_schema",
    "read_models",
    "validate_rows",
    "write_models",
]

Model = TypeVar("Model", bound=BaseModel)

OPTIONS = "__metaxy__"
"""The class attribute holding the feature's key, fields and deps."""


class _FeatureKey(TypedDict):
    key: str


class FeatureOptions(_FeatureKey, total=False):
    """What ``__metaxy__`` of a model class gives: the feature key and, optionally, its fields,
    deps and description (the class docstring by default)."""

    fields: Sequence[FieldSpec | str]
    deps: Sequence[FeatureDep | str]
    description: str


# Python type -> (the dtype a frame built from instances gets, dtypes a frame may bring).
_TYPES: dict[type, tuple[pl.DataType, tuple[type[pl.DataType], ...]]] = {
    bool: (pl.Boolean(), (pl.Boolean,)),
    int: (pl.Int64(), (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)),
    float: (pl.Float64(), (pl.Float32, pl.Float64)),
    str: (pl.String(), (pl.String, pl.Categorical, pl.Enum)),
    bytes: (pl.Binary(), (pl.Binary,)),
    dt.datetime: (pl.Datetime("us"), (pl.Datetime,)),
    dt.date: (pl.Date(), (pl.Date,)),
    dt.time: (pl.Time(), (pl.Time,)),
    dt.timedelta: (pl.Duration("us"), (pl.Duration,)),
    decimal.Decimal: (pl.Decimal(), (pl.Decimal,)),
}


def _options(model: type[BaseModel]) -> FeatureOptions:
    options = getattr(model, OPTIONS, None)
    if not isinstance(options, dict) or "key" not in options:
        raise TypeError(
            f"{model.__name__} has no {OPTIONS} naming its feature: add e.g. "
            f"`{OPTIONS}: ClassVar[FeatureOptions] = {{'key': 'video/crop', "
            "'deps': ['video/raw']}` to the class."
        )
    return typing.cast(FeatureOptions, options)


def _id_columns(model: type[BaseModel]) -> list[str]:
    # SQLModel keeps primary_key on its FieldInfo; a plain pydantic model has none.
    return [n for n, f in model.model_fields.items() if getattr(f, "primary_key", False) is True]


def feature_spec(model: type[BaseModel]) -> FeatureSpec:
    """The :class:`~metaxy_core.FeatureSpec` a model class declares.

    Id columns are the fields with ``Field(primary_key=True)``, in class order; key, fields
    and deps come from ``__metaxy__`` (a :class:`FeatureOptions`), the description from it
    or the class docstring.
    """
    options = _options(model)
    ids = _id_columns(model)
    if not ids:
        raise EmptyIdColumnsError(
            f"feature {options['key']!r} ({model.__name__}) has no id column: mark the "
            "field(s) identifying a sample with Field(primary_key=True), e.g. "
            "`video_id: str = Field(primary_key=True)`."
        )
    model_schema(model)  # refuses field types a store cannot hold, when declared
    given: dict[str, Any] = {k: v for k, v in options.items() if k != "key"}
    given.setdefault("description", _docstring(model))
    return FeatureSpec.model_validate({"key": options["key"], "id_columns": ids, **given})


def _docstring(model: type[BaseModel]) -> str | None:
    # pydantic and SQLModel give every class a docstring of their own base when it has none.
    doc = model.__dict__.get("__doc__")
    return typing.cast(str, doc).strip() if doc else None


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``Optional``, and whether it admits ``None``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _dtype(annotation: Any) -> pl.DataType | None:
    if isinstance(annotation, type) and annotation in _TYPES:
        return _TYPES[annotation][0]
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (None,)
        inner = _dtype(_unwrap(item)[0])
        return None if inner is None else pl.List(inner)
    return None


def model_schema(model: type[BaseModel]) -> dict[str, pl.DataType]:
    """Column name -> Polars type of every field of the class (``int`` is ``Int64``,
    ``float`` ``Float64``, ``list[str]`` ``List(String)``, ...)."""
    schema: dict[str, pl.DataType] = {}
    for name, info in model.model_fields.items():
        dtype = _dtype(_unwrap(info.annotation)[0])
        if dtype is None:
            raise ColumnTypeError(
                f"column {name!r} of {model.__name__} is typed {info.annotation!r}, which a "
                "metadata store cannot hold: use str, int, float, bool, bytes, date, datetime, "
                "time, timedelta, Decimal or a list of them."
            )
        schema[name] = dtype
    return schema


def _accepts(expected: object, actual: object) -> bool:
    """Whether a column of type ``actual`` holds what a field of type ``expected`` does."""
    if isinstance(expected, pl.List):
        return isinstance(actual, pl.List) and _accepts(expected.inner, actual.inner)
    allowed = next(kinds for canonical, kinds in _TYPES.values() if canonical == expected)
    return actual == pl.Null or isinstance(actual, allowed)


def validate_rows(model: type[BaseModel], frame: Any) -> pl.DataFrame:
    """``frame`` as Polars, checked against the class: every field is a column of its type,
    and only ``Optional`` fields hold nulls. Other columns (e.g. ``metaxy_data_version__...``)
    pass through. Raises :class:`~metaxy_core.errors.MissingColumnError` or
    :class:`~metaxy_core.errors.ColumnTypeError` naming the feature and the column."""
    key = _options(model)["key"]
    data = to_polars(frame, f"write of {key!r}")
    for name, expected in model_schema(model).items():
        if name not in data.columns:
            raise MissingColumnError(
                f"feature {key!r}: column {name!r} of {model.__name__} is missing; the frame "
                f"has columns: {', '.join(data.columns) or 'none'}. Add {name!r}."
            )
        actual = data.schema[name]
        annotation, optional = _unwrap(model.model_fields[name].annotation)
        shown = getattr(annotation, "__name__", str(annotation))
        if not _accepts(expected, actual):
            raise ColumnTypeError(
                f"feature {key!r}: column {name!r} has type {actual}, but {model.__name__} "
                f"declares it {shown} ({expected}). Cast it, e.g. "
                f"pl.col({name!r}).cast(pl.{expected}), or change the field's type."
            )
        nulls = data.get_column(name).null_count()
        if nulls and not optional:
            raise ColumnTypeError(
                f"feature {key!r}: column {name!r} holds {nulls} null(s), but "
                f"{model.__name__} declares it {shown}, not Optional. Fill the nulls, or "
                f"declare it `{name}: {shown} | None = None`."
            )
    return data


def write_models(
    store: MetadataStore,
    model: type[Model],
    rows: Sequence[Model] | Any,
    *,
    run_id: str | None = None,
) -> WriteResult:
    """Write instances of the class (a list or tuple), or a frame checked by
    :func:`validate_rows`, as rows of its feature; a frame may add
    ``metaxy_data_version__<field>`` columns (a root feature needs one per field)."""
    frame = rows
    if isinstance(rows, (list, tuple)) and all(isinstance(r, BaseModel) for r in rows):
        frame = _instances_frame(model, rows)
    data = validate_rows(model, frame)
    return store.write(_options(model)["key"], data, run_id=run_id)


def _instances_frame(model: type[BaseModel], rows: Sequence[BaseModel]) -> pl.DataFrame:
    """Instances as a frame of the class's schema, each checked strictly against the class
    first (a SQLModel table class does not validate on construction)."""
    schema = model_schema(model)
    values = []
    for index, row in enumerate(rows):
        given = {n: getattr(row, n, None) for n in schema}
        try:
            model.model_validate(given, strict=True)
        except ValidationError as error:
            first = error.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise ColumnTypeError(
                f"feature {_options(model)['key']!r}: column {name!r} of row {index} "
                f"({given!r}) is refused by {model.__name__}: {first['msg']}. Give it a value "
                "of the field's type."
            ) from None
        values.append(given)
    return pl.DataFrame(values, schema=schema)


def read_models(
    store: MetadataStore, model: type[Model], *, filter: SampleFilter | None = None
) -> list[Model]:
    """The current rows of the class's feature (within ``filter``) as instances, by id."""
    spec = feature_spec(model)
    names = list(model.model_fields)
    frame = store.read(spec.key, filter=filter, columns=names)
    if frame.is_empty():
        return []
    frame = frame.sort(list(spec.id_columns))
    # One object per row is what the caller asks for; the frame is built at the edge.
    return [model.model_validate(row) for row in frame.iter_rows(named=True)]
