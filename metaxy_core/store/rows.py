"""Turning a user's frame into rows a store appends: validation and system columns.

Validation runs over the whole frame before anything is written, so a bad frame writes nothing.

Provenance and data versions are stored as signed 64-bit integers (see
:mod:`metaxy_core.hashing`). A data version a user gives is stored by one rule
(:func:`stored_data_version`): a string is replaced by :func:`~metaxy_core.hashing.hash_string`
of its text, an integer is taken as it is.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import narwhals as nw
import polars as pl
import pyarrow as pa

from metaxy_core import columns as c
from metaxy_core.definitions import FeatureSpec, FieldRef
from metaxy_core.errors import (
    ColumnTypeError,
    DuplicateColumnError,
    DuplicateIdError,
    MissingColumnError,
    MissingDataVersionError,
    NullIdError,
    UnknownColumnError,
    UnknownSampleError,
)
from metaxy_core.graph import FeatureGraph
from metaxy_core.hashing import polars_hash, polars_hash_text

__all__ = [
    "check_key_types",
    "check_provenance",
    "check_stored_names",
    "prepare_rows",
    "stored_data_version",
    "to_polars",
    "tombstones",
    "validate_ids",
    "validate_samples",
    "validate_write",
]

_EXAMPLES = 3


def to_polars(frame: Any, what: str) -> pl.DataFrame:
    """Any Narwhals-supported frame (Polars, pandas, Arrow; eager or lazy) as a Polars frame."""
    if isinstance(frame, pa.RecordBatch):
        frame = pa.Table.from_batches([frame])
    try:
        native = nw.from_native(frame)
    except TypeError:
        raise TypeError(
            f"{what}: expected a frame (Polars DataFrame or LazyFrame, pandas DataFrame, Arrow "
            f"Table or RecordBatch), got {type(frame).__name__}."
        ) from None
    if isinstance(native, nw.LazyFrame):
        native = native.collect("polars")
    try:
        result: pl.DataFrame = native.to_polars()
    except (pa.ArrowException, pl.exceptions.PolarsError, TypeError) as exc:
        # e.g. a pandas object column holding strings and numbers (which older Polars
        # versions convert themselves, raising TypeError)
        raise ColumnTypeError(
            f"{what}: the frame cannot be converted to Polars ({type(exc).__name__}: {exc}). "
            "Give each column one type (e.g. cast mixed id columns to strings)."
        ) from None
    return result


def _examples(frame: pl.DataFrame) -> str:
    return ", ".join(str(row) for row in frame.head(_EXAMPLES).iter_rows(named=True))


def validate_ids(spec: FeatureSpec, frame: pl.DataFrame) -> None:
    """Id columns present, without nulls, unique."""
    ids = list(spec.id_columns)
    for name in ids:
        if name not in frame.columns:
            raise MissingColumnError(
                f"feature {spec.key!r}: id column {name!r} is missing; the frame has "
                f"columns: {', '.join(frame.columns) or 'none'}. Add {name!r} to the frame."
            )
    for name in ids:
        dtype = frame.schema[name]
        if not _id_type(dtype):
            raise ColumnTypeError(
                f"feature {spec.key!r}: id column {name!r} has type {dtype}; ids must be "
                "strings, integers, booleans, dates or datetimes, whose text is the same in "
                f"every engine. Cast {name!r} to one of those (e.g. a string)."
            )
    for name in ids:
        nulls = frame.get_column(name).null_count()
        if nulls:
            raise NullIdError(
                f"feature {spec.key!r}: id column {name!r} has {nulls} null value(s). "
                "Every sample needs a non-null id: drop or fill those rows."
            )
    if frame.select(ids).n_unique() == frame.height:  # the common case, without a row mask
        return
    dupes = frame.filter(pl.struct(ids).is_duplicated())
    if dupes.height:
        raise DuplicateIdError(
            f"feature {spec.key!r}: {dupes.select(ids).n_unique()} sample(s) appear more "
            f"than once in id columns {ids}, e.g. {_examples(dupes.select(ids).unique())}. "
            "Write each sample once per call (deduplicate the frame)."
        )


def _id_type(dtype: pl.DataType) -> bool:
    """Whether ids of this type have one canonical text (see ``hashing.polars_id_text``);
    all-null columns pass here and fail the null check."""
    exact = (pl.String, pl.Categorical, pl.Enum, pl.Boolean, pl.Date, pl.Datetime, pl.Null)
    return (dtype.is_integer() and dtype not in _WIDE) or isinstance(dtype, exact)


# Types no store holds: 128-bit integers (Arrow has none), Python objects (their bytes are
# pointers).
_WIDE = (pl.Int128, pl.UInt128)


def _check_columns(spec: FeatureSpec, frame: pl.DataFrame) -> None:
    """Every column of a type the stores hold, and no two names that differ only in case
    (DuckDB, ClickHouse and Spark SQL resolve column names without case)."""
    for name, dtype in frame.schema.items():
        if dtype in _WIDE or dtype == pl.Object:
            why = (
                "Arrow has no 128-bit integers"
                if dtype in _WIDE
                else ("it holds Python objects, which would be stored as memory addresses")
            )
            raise ColumnTypeError(
                f"feature {spec.key!r}: column {name!r} has type {dtype}, which no store can "
                f"hold ({why}). Convert {name!r} to a column type such as a string, an "
                "integer or a list of those, or drop it."
            )
    seen: dict[str, str] = {}
    for name in frame.columns:
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise DuplicateColumnError(
                f"feature {spec.key!r}: columns {other!r} and {name!r} differ only in case; "
                "stores resolve column names without case, so one would overwrite the other. "
                "Rename one of them."
            )


def check_key_types(what: str, frame: pl.DataFrame, other: pl.DataFrame, where: str) -> None:
    """The columns of ``other`` (key columns: ids, parent ids) have the same types in
    ``frame``; ``what`` names ``frame`` and ``where`` names ``other`` in the error."""
    for name, dtype in other.schema.items():
        given = frame.schema.get(name, dtype)
        if given != dtype and pl.Null not in (given, dtype):
            raise ColumnTypeError(
                f"{what}: column {name!r} has type {given}, but {where} have it as {dtype}. "
                f"Cast {name!r} to {dtype}, as the increment gives it."
            )


def check_stored_names(spec: FeatureSpec, frame: pl.DataFrame, stored: list[str]) -> None:
    """No column of ``frame`` differs only in case from a column the store already has for
    ``spec`` (stores resolve names without case: the new one would clash with the old)."""
    by_case = {name.lower(): name for name in stored}
    for name in frame.columns:
        other = by_case.get(name.lower(), name)
        if other != name:
            raise DuplicateColumnError(
                f"feature {spec.key!r}: column {name!r} differs only in case from the stored "
                f"column {other!r}; stores resolve column names without case. Rename {name!r} "
                f"to {other!r}, or give it another name."
            )


def _check_type(spec: FeatureSpec, frame: pl.DataFrame, name: str, *, text: bool) -> None:
    """A hash column must hold 64-bit integers; a data version may also hold strings."""
    dtype = frame.schema[name]
    if dtype in (pl.Int64, pl.Null) or (text and (dtype.is_integer() or dtype == pl.String)):
        return
    if text:
        raise ColumnTypeError(
            f"feature {spec.key!r}: column {name!r} must hold strings or integers, got {dtype}. "
            "Cast it to a string (e.g. a hex digest of the content) or to an integer."
        )
    raise ColumnTypeError(
        f"feature {spec.key!r}: column {name!r} must hold 64-bit integers (Int64), as "
        f"increments give it, got {dtype}. Pass the column as the increment returned it, or "
        "drop it to let metaxy compute it."
    )


def stored_data_version(name: str, dtype: pl.DataType) -> pl.Expr:
    """A user's data version column as it is stored: a string is replaced by the hash of its
    text; an integer is taken as it is (``UInt64`` as the signed integer of the same bits, so
    an unsigned XXH64 digest stays the same bits); null stays null."""
    if dtype == pl.String:
        return polars_hash_text(pl.col(name)).alias(name)
    if dtype == pl.UInt64:
        return pl.col(name).reinterpret(signed=True).alias(name)
    return pl.col(name).cast(pl.Int64).alias(name)


def _check_data_versions(spec: FeatureSpec, frame: pl.DataFrame) -> None:
    dv_cols = [c.data_version_column(f) for f in sorted(spec.field_keys)]
    for field, name in zip(sorted(spec.field_keys), dv_cols, strict=True):
        if name not in frame.columns:
            raise MissingDataVersionError(
                f"root feature {spec.key!r}: column {name!r} (the data version of field "
                f"{field!r}) is missing. Add it, e.g. a content hash of the {field} of each "
                f"sample; expected one column per field: {', '.join(dv_cols)}."
            )
        _check_type(spec, frame, name, text=True)
        nulls = frame.get_column(name).null_count()
        if nulls:
            raise MissingDataVersionError(
                f"root feature {spec.key!r}: column {name!r} has {nulls} null value(s). Give "
                f"every sample a data version of field {field!r}."
            )


def validate_samples(spec: FeatureSpec, frame: pl.DataFrame) -> None:
    """Samples given for a root feature: valid ids, a data version per field, and no
    ``metaxy_`` column that names nothing of the feature."""
    validate_ids(spec, frame)
    _check_known(spec, frame)
    _check_data_versions(spec, frame)


def _allowed(spec: FeatureSpec) -> set[str]:
    """The system columns a user's frame may carry into a write."""
    fields = spec.field_keys
    return {
        *(c.provenance_column(f) for f in fields),
        *(c.data_version_column(f) for f in fields),
        *(c.upstream_data_version_column(d.feature) for d in spec.deps),
    }


# System columns a frame may carry and a write replaces: those of a read or an increment.
_REPLACED = frozenset(
    {
        c.PROVENANCE,
        c.DATA_VERSION,
        c.FEATURE_VERSION,
        c.GRAPH_VERSION,
        c.RUN_ID,
        c.WRITTEN_AT,
        c.WRITE_SEQ,
        c.DELETED,
        c.CHANGED_FIELDS,
        c.STALE_REASON,
    }
)


def _check_known(spec: FeatureSpec, frame: pl.DataFrame) -> None:
    """Refuse a ``metaxy_`` column that is neither one a write takes nor one it replaces: it
    would be dropped, e.g. a misspelt data version column whose override would be lost."""
    allowed = _allowed(spec)
    unknown = [
        n for n in frame.columns if n.lower().startswith(c.PREFIX) and n not in allowed | _REPLACED
    ]
    if not unknown:
        return
    fields = ", ".join(spec.field_keys)
    deps = ", ".join(d.feature for d in spec.deps) or "none"
    close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
    guess = f"Did you mean {close[0]!r}? " if close else ""
    raise UnknownColumnError(
        f"feature {spec.key!r}: column {unknown[0]!r} names no field or dependency of "
        f"{spec.key!r} (fields: {fields}; dependencies: {deps}), so its values would be lost. "
        f"{guess}Rename it to {c.data_version_column('<field>')} or "
        f"{c.provenance_column('<field>')} for one of those fields, or drop it: columns "
        f"starting with {c.PREFIX!r} are metaxy's own."
    )


def validate_write(spec: FeatureSpec, frame: pl.DataFrame) -> None:
    """Every check of a frame to write, over the whole frame: ids, types, data versions, and
    no ``metaxy_`` column that names nothing of the feature."""
    validate_ids(spec, frame)
    _check_columns(spec, frame)
    _check_known(spec, frame)
    versions = {c.data_version_column(f) for f in spec.field_keys}
    for name in set(frame.columns) & _allowed(spec):
        _check_type(spec, frame, name, text=name in versions)
    if spec.is_root:
        _check_data_versions(spec, frame)
        return
    if {c.provenance_column(f) for f in spec.field_keys} <= set(frame.columns):
        check_provenance(spec, frame)
    # else: computed by the write, from the current upstream rows


def check_provenance(spec: FeatureSpec, frame: pl.DataFrame) -> None:
    """The ``metaxy_provenance__<field>`` columns of ``frame``, as an increment gives them:
    64-bit integers without nulls."""
    for name in (c.provenance_column(f) for f in sorted(spec.field_keys)):
        _check_type(spec, frame, name, text=False)
        nulls = frame.get_column(name).null_count()
        if nulls:
            raise MissingColumnError(
                f"feature {spec.key!r}: column {name!r} has {nulls} null value(s); a sample's "
                "provenance says what it was computed from. Pass the column as the increment "
                "gave it, or drop the provenance columns to let the write compute them."
            )


def prepare_rows(
    graph: FeatureGraph,
    spec: FeatureSpec,
    frame: pl.DataFrame,
    *,
    run_id: str | None,
    expected: Callable[[pl.DataFrame], pl.DataFrame] | None,
    validate: bool = True,
) -> pl.DataFrame:
    """Validate ``frame`` (unless the caller did, with :func:`validate_write`) and add every
    system column except the write sequence.

    Args:
        expected: for a non-root feature whose frame lacks provenance columns: given the
            key columns of the frame (:meth:`FeatureGraph.expected_key`: the parent
            ids of an expansion's children), the expected provenance of each field and the
            change inputs from current upstream.
    """
    if validate:
        validate_write(spec, frame)
    fields = sorted(spec.field_keys)
    prov_cols = [c.provenance_column(f) for f in fields]
    dv_cols = [c.data_version_column(f) for f in fields]
    input_cols = [c.upstream_data_version_column(d.feature) for d in spec.deps]
    allowed = _allowed(spec)
    frame = frame.select([n for n in frame.columns if not n.startswith(c.PREFIX) or n in allowed])
    frame = frame.with_columns(
        stored_data_version(dv, frame.schema[dv]) for dv in dv_cols if dv in frame.columns
    )

    versions = graph.versions
    if spec.is_root:
        provenance = [
            polars_hash([versions.recipes[FieldRef(spec.key, f)], pl.col(dv)]).alias(p)
            for f, dv, p in zip(fields, dv_cols, prov_cols, strict=True)
        ]
        frame = frame.with_columns(provenance)
    elif not set(prov_cols) <= set(frame.columns):
        assert expected is not None
        carried = set(prov_cols + input_cols) & set(frame.columns)
        frame = _join_expected(graph, spec, frame.drop(carried), expected)
    else:
        # Provenance from an increment without its change inputs: store nulls, so the next
        # resolve hashes these samples instead of trusting inputs it cannot check.
        absent = [pl.lit(None, pl.Int64).alias(n) for n in input_cols if n not in frame.columns]
        frame = frame.with_columns(absent)

    data_versions = [
        (pl.col(dv).fill_null(pl.col(p)) if dv in frame.columns else pl.col(p)).alias(dv)
        for dv, p in zip(dv_cols, prov_cols, strict=True)
    ]
    frame = frame.with_columns(data_versions)
    ids = list(spec.id_columns)
    user = [n for n in frame.columns if n not in ids and not n.startswith(c.PREFIX)]
    now = datetime.now(timezone.utc)
    return frame.select(
        *ids,
        *user,
        *prov_cols,
        *dv_cols,
        *input_cols,
        polars_hash([pl.col(p) for p in prov_cols]).alias(c.PROVENANCE),
        polars_hash([pl.col(d) for d in dv_cols]).alias(c.DATA_VERSION),
        pl.lit(versions.features[spec.key]).alias(c.FEATURE_VERSION),
        pl.lit(versions.graph).alias(c.GRAPH_VERSION),
        pl.lit(run_id, dtype=pl.String).alias(c.RUN_ID),
        pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias(c.WRITTEN_AT),
        pl.lit(False).alias(c.DELETED),
    )


def _join_expected(
    graph: FeatureGraph,
    spec: FeatureSpec,
    frame: pl.DataFrame,
    expected: Callable[[pl.DataFrame], pl.DataFrame],
) -> pl.DataFrame:
    # Children of an expansion take their parent's expected provenance, joined on its ids.
    key = list(graph.expected_key(spec.key))
    provenance = expected(frame.select(key))
    joined = frame.join(provenance, on=key, how="left", coalesce=True)
    first = c.provenance_column(spec.field_keys[0])
    unknown = joined.filter(pl.col(first).is_null()).select(spec.id_columns)
    if unknown.height:
        raise UnknownSampleError(
            f"cannot write {spec.key!r}: {unknown.height} sample(s) are not produced by its "
            f"upstream ({', '.join(d.feature for d in spec.deps)}), e.g. {_examples(unknown)}. "
            "Write only samples from the increment, or write the upstream samples first."
        )
    return joined


def tombstones(
    graph: FeatureGraph, spec: FeatureSpec, ids: pl.DataFrame, run_id: str | None
) -> pl.DataFrame:
    """Rows that soft-delete ``ids``: id columns, deleted flag, the current versions."""
    validate_ids(spec, ids)
    now = datetime.now(timezone.utc)
    return ids.select(
        *spec.id_columns,
        pl.lit(graph.versions.features[spec.key]).alias(c.FEATURE_VERSION),
        pl.lit(graph.versions.graph).alias(c.GRAPH_VERSION),
        pl.lit(run_id, dtype=pl.String).alias(c.RUN_ID),
        pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias(c.WRITTEN_AT),
        pl.lit(True).alias(c.DELETED),
    )
