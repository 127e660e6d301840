"""The one hash of metaxy, in Python, Polars and DuckDB.

Every version and every provenance is ``xxhash64`` (seed 42) of a canonical UTF-8 string,
rendered as 16 lowercase hex characters. A canonical string joins its parts with
:data:`SEPARATOR`; a missing part is written as :data:`NULL_SENTINEL`. Neither character can
appear in a hex digest, so distinct part lists never collide by concatenation.

Seed 42 is Spark's: Spark's native ``xxhash64`` over one string column is XXH64 with seed 42,
so a Spark engine can stay native.

>>> hash_parts(["a", "b"])
'6a835b976ec3fa9e'
>>> hash_parts(["a", None]) == hash_parts(["a", NULL_SENTINEL])
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Final, cast

import numpy as np
import polars as pl
import polars_hash as plh
import pyarrow as pa
import xxhash

from metaxy_core import native_hash

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "HASH_ALGORITHM",
    "NULL_SENTINEL",
    "SEED",
    "SEPARATOR",
    "arrow_hash",
    "canonical",
    "hash_parts",
    "hash_string",
    "polars_hash",
    "polars_hash_u64",
    "polars_id_text",
    "register_duckdb_hash",
    "sql_hash",
    "sql_id_text",
]

SEED: Final = 42
SEPARATOR: Final = "\x1f"  # ASCII unit separator
NULL_SENTINEL: Final = "\x1e"  # ASCII record separator
HASH_ALGORITHM: Final = "xxhash64-seed42-hex16"
DUCKDB_FUNCTION: Final = "metaxy_xxh64"
DUCKDB_U64: Final = "metaxy_xxh64_u64"

# The four ASCII hex digits of every 16-bit value, packed little-endian so that viewing a
# uint32 array as bytes yields the digits in reading order.
_HEX_QUADS = np.frombuffer("".join(f"{v:04x}" for v in range(1 << 16)).encode(), dtype="<u4")


def polars_id_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """The canonical text of an id column's values (see :func:`sql_id_text`), in Polars.

    Strings are themselves; integers decimal; booleans ``true``/``false``; dates ISO; and
    datetimes the decimal count of nanoseconds since the Unix epoch, because engines render
    timestamps differently. Other types are refused as ids when written.
    """
    if isinstance(dtype, pl.Datetime):
        return pl.col(name).dt.epoch("ns").cast(pl.String)
    return pl.col(name).cast(pl.String)


def sql_id_text(name: str, sql_type: str) -> str:
    """The canonical text of an id column's values in DuckDB SQL; ``sql_type`` is its type."""
    if sql_type.upper().startswith("TIMESTAMP"):
        return f"CAST(epoch_ns({name}) AS VARCHAR)"
    return f"CAST({name} AS VARCHAR)"


def canonical(parts: Sequence[str | None]) -> str:
    """Join parts into the canonical string that is hashed."""
    return SEPARATOR.join(NULL_SENTINEL if p is None else p for p in parts)


def hash_string(value: str) -> str:
    """Hash one string: xxhash64 with seed 42 as 16 lowercase hex characters.

    >>> hash_string("")
    '98b1582b0977e704'
    """
    return xxhash.xxh64_hexdigest(value.encode("utf-8"), seed=SEED)


def hash_parts(parts: Sequence[str | None]) -> str:
    """Hash the canonical string of ``parts``."""
    return hash_string(canonical(parts))


def _u64_to_hex(values: np.ndarray) -> pa.Array:
    """Render unsigned 64-bit integers as 16-character lowercase hex strings, vectorized."""
    n = len(values)
    # The four 16-bit words of each little-endian value, most significant first.
    words = values.astype("<u8", copy=False).view("<u2").reshape(n, 4)[:, ::-1]
    digits = _HEX_QUADS[words].view(np.uint8)
    if n * 16 < 2**31:
        offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits))
    offsets64 = np.arange(0, 16 * (n + 1), 16, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets64), pa.py_buffer(digits))


def _hex_series(hashes: pl.Series) -> pl.Series:
    return pl.Series(hashes.name, _u64_to_hex(hashes.to_numpy()), dtype=pl.String)


def polars_hash_u64(parts: Sequence[pl.Expr]) -> pl.Expr:
    """Like :func:`polars_hash`, as the unsigned 64-bit integer before hex rendering."""
    filled = [p.cast(pl.String).fill_null(NULL_SENTINEL) for p in parts]
    # One part is its own canonical string: no copy.
    joined = filled[0] if len(filled) == 1 else plh.concat_str(*filled, separator=SEPARATOR)
    return cast("plh.HExpr", joined).nchash.xxhash64(seed=SEED)  # the plugin's namespace


def polars_hash(parts: Sequence[pl.Expr | str]) -> pl.Expr:
    """A Polars expression hashing the canonical string of ``parts``: string constants, then
    expressions (cast to strings).

    The C row hash (:mod:`metaxy_core.native_hash`) reads the columns where they are and never
    builds the canonical string; without it, Polars joins and hashes them (the same bits).

    >>> pl.select(h=polars_hash(["a", pl.lit("b")])).item()
    '6a835b976ec3fa9e'
    """
    split = next((i for i, p in enumerate(parts) if not isinstance(p, str)), len(parts))
    prefix = [p for p in parts[:split] if isinstance(p, str)]
    columns = [pl.lit(p) if isinstance(p, str) else p for p in parts[split:]]
    if not columns:
        return pl.lit(hash_parts(prefix))
    if not native_hash.available():
        # Not marked elementwise: Polars would then call the renderer per small morsel, which
        # doubled the time of a 1M-row write.
        fallback = polars_hash_u64([*map(pl.lit, prefix), *columns])
        return fallback.map_batches(_hex_series, return_dtype=pl.String)
    fields = [e.cast(pl.String).alias(f"__metaxy_part{i}") for i, e in enumerate(columns)]
    return pl.struct(fields).map_batches(
        partial(_native_batch, tuple(prefix)), return_dtype=pl.String
    )


def arrow_hash(prefix: Sequence[str], columns: Sequence[pa.ChunkedArray]) -> pa.ChunkedArray:
    """``hash_parts([*prefix, *row])`` of every row of Arrow string ``columns``, by the C row
    hash (:mod:`metaxy_core.native_hash`; check ``native_hash.available()`` first)."""
    return native_hash.hash_columns(
        prefix, columns, separator=SEPARATOR, sentinel=NULL_SENTINEL, seed=SEED
    )


def _native_batch(prefix: tuple[str, ...], parts: pl.Series) -> pl.Series:
    """Hash the rows of a struct of string parts with the C row hash, without copying them."""
    table = parts.struct.unnest().to_arrow(compat_level=pl.CompatLevel.newest())
    hashed = pl.from_arrow(arrow_hash(prefix, table.columns), rechunk=False)
    assert isinstance(hashed, pl.Series)
    return hashed.alias(parts.name)


def _duckdb_u64(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    strings = pl.Series("v", values, dtype=pl.String)
    return strings.to_frame().select(plh.col("v").nchash.xxhash64(seed=SEED)).to_series().to_arrow()


def _duckdb_udf(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return _u64_to_hex(pl.Series(_duckdb_u64(values)).to_numpy())


def register_duckdb_hash(connection: duckdb.DuckDBPyConnection) -> None:
    """Register ``metaxy_xxh64(VARCHAR) -> VARCHAR`` on a DuckDB connection.

    DuckDB has no native xxhash64 and extensions cannot be downloaded offline, so the function
    is a vectorized Arrow UDF backed by the same Rust hash that the Polars engine uses.
    """
    import duckdb

    functions = {DUCKDB_FUNCTION: (_duckdb_udf, "VARCHAR"), DUCKDB_U64: (_duckdb_u64, "UBIGINT")}
    for name, (function, returns) in functions.items():
        # Registering twice on one connection raises; the first registration is the same.
        with contextlib.suppress(duckdb.NotImplementedException):
            connection.create_function(
                name,
                function,
                [duckdb.sqltype("VARCHAR")],
                duckdb.sqltype(returns),
                type="arrow",  # type: ignore[call-overload]  # the stubs type these as enums
                null_handling="special",
            )


def sql_hash(parts: Sequence[str], *, as_u64: bool = False) -> str:
    """SQL hashing the canonical string of ``parts`` (SQL string expressions)."""
    filled = [f"coalesce(CAST({p} AS VARCHAR), chr({ord(NULL_SENTINEL)}))" for p in parts]
    function = DUCKDB_U64 if as_u64 else DUCKDB_FUNCTION
    return f"{function}(concat_ws(chr({ord(SEPARATOR)}), {', '.join(filled)}))"
