"""The one hash of metaxy, in Python, Polars and DuckDB.

Every hash is XXH64 with seed 42 of ONE canonical UTF-8 string, held as a **signed 64-bit
integer** (the unsigned digest's bits read as ``int64``). A canonical string joins its parts
with :data:`SEPARATOR`; a missing part is written as :data:`NULL_SENTINEL`; a part that is
itself a hash (a 64-bit integer: a data version, a provenance) is written as its 16 lowercase
hex digits (:func:`to_hex`), the same text people read. Neither character can appear in a hex
digest, so distinct part lists of versions never collide by concatenation.

Engines with a native XXH64-seed-42-over-one-string compute the same bits without Python:
Spark's ``xxhash64(s)`` and ClickHouse's ``xxHash64Spark(s)`` (26.7+) return exactly this
signed value, and both render a 64-bit integer as 16 hex digits natively
(``lower(lpad(hex(x), 16, '0'))``). Polars uses the ``polars-hash`` plugin; DuckDB has no XXH64
built in, so its rows are hashed in Polars (or, off the hot path, in a vectorized Arrow
function, see :func:`register_duckdb_hash`).

Sample-level hashes (provenance, data versions) are stored as these integers; definition-level
versions (recipes, field, feature and graph versions) are few and shown in UIs, so they are kept
as their hex text.

>>> hash_parts(["a", "b"])
7675078895925983902
>>> to_hex(hash_parts(["a", "b"]))
'6a835b976ec3fa9e'
>>> hash_parts(["a", None]) == hash_parts(["a", NULL_SENTINEL])
True
>>> hash_parts(["x", -7444071767201028348]) == hash_parts(["x", "98b1582b0977e704"])
True
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Final, cast

import numpy as np
import polars as pl
import polars_hash as plh
import pyarrow as pa
import xxhash

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "HASH_ALGORITHM",
    "NULL_SENTINEL",
    "SEED",
    "SEPARATOR",
    "canonical",
    "from_hex",
    "hash_parts",
    "hash_stream",
    "hash_string",
    "hash_versions",
    "int64_series",
    "polars_hash",
    "polars_hash_text",
    "polars_hash_texts",
    "polars_hex",
    "polars_id_text",
    "register_duckdb_hash",
    "sql_hash",
    "sql_hex",
    "sql_id_text",
    "to_hex",
]

SEED: Final = 42
SEPARATOR: Final = "\x1f"  # ASCII unit separator
NULL_SENTINEL: Final = "\x1e"  # ASCII record separator
HASH_ALGORITHM: Final = "xxhash64-seed42-int64"
DUCKDB_FUNCTION: Final = "metaxy_xxh64"

_SIGN: Final = 1 << 63
_MASK: Final = (1 << 64) - 1
# The four ASCII hex digits of every 16-bit value, packed little-endian so that viewing a
# uint32 array as bytes yields the digits in reading order.
_HEX_QUADS: Final = np.frombuffer("".join(f"{v:04x}" for v in range(1 << 16)).encode(), dtype="<u4")


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


def canonical(parts: Sequence[str | int | None]) -> str:
    """Join parts into the canonical string that is hashed (hashes as their hex text)."""
    return SEPARATOR.join(
        NULL_SENTINEL if p is None else to_hex(p) if isinstance(p, int) else p for p in parts
    )


def _signed(unsigned: int) -> int:
    return unsigned - (1 << 64) if unsigned & _SIGN else unsigned


def hash_string(value: str) -> int:
    """Hash one string: XXH64 (seed 42) of its UTF-8 bytes, as a signed 64-bit integer.

    >>> hash_string("abc")
    1423657621850124518
    >>> hash_string("")
    -7444071767201028348
    """
    return _signed(xxhash.xxh64_intdigest(value.encode("utf-8"), seed=SEED))


def hash_parts(parts: Sequence[str | int | None]) -> int:
    """Hash the canonical string of ``parts``."""
    return hash_string(canonical(parts))


def to_hex(value: int) -> str:
    """A hash as people read it: the 16 lowercase hex digits of its unsigned bits.

    >>> to_hex(-7444071767201028348)
    '98b1582b0977e704'
    """
    return f"{value & _MASK:016x}"


def from_hex(text: str) -> int:
    """The hash that :func:`to_hex` rendered as ``text``.

    >>> from_hex("98b1582b0977e704")
    -7444071767201028348
    """
    return _signed(int(text, 16))


def _hex_digits(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The 16 hex digits of each 64-bit value, as an ``(n, 16)`` array of ASCII bytes (written
    into ``out``, an ``(n, 4)`` ``uint32`` array, when given)."""
    n = len(values)
    # The four 16-bit words of each little-endian value, most significant first.
    words = values.astype("<i8", copy=False).view("<u2").reshape(n, 4)[:, ::-1]
    quads: np.ndarray = np.take(_HEX_QUADS, words, out=out)
    return quads.view(np.uint8).reshape(n, 16)


def _strings(rows: np.ndarray) -> pl.Series:
    """Equal-width rows of ASCII bytes as a Polars string series.

    Handed over as plain Arrow strings over the rows' buffer (offsets every ``width`` bytes):
    Polars imports those faster than string views built in numpy (measured: about 4 against
    39 ms per million 50-byte rows).
    """
    n, width = rows.shape
    large = width * n >= 1 << 31
    offsets = np.arange(0, width * (n + 1), width, dtype="<i8" if large else "<i4")
    data = np.ascontiguousarray(rows)
    kind = pa.large_string() if large else pa.string()
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    series = pl.from_arrow(pa.Array.from_buffers(kind, n, buffers))
    assert isinstance(series, pl.Series)
    return series


def int64_series(name: str, values: np.ndarray) -> pl.Series:
    """An ``int64`` array as a Polars ``Int64`` series, without a copy.

    Through Arrow: ``pl.Series(array)`` imports ``numpy.ma`` on first use (30-100 ms).
    """
    array = np.ascontiguousarray(values, dtype=np.int64)
    series = pl.from_arrow(
        pa.Array.from_buffers(pa.int64(), len(array), [None, pa.py_buffer(array)])
    )
    assert isinstance(series, pl.Series)
    return series.alias(name)


def _hex_series(values: pl.Series) -> pl.Series:
    """:func:`to_hex` of every value of an ``Int64`` series; null stays null."""
    filled = values.cast(pl.Int64).fill_null(0).to_numpy()
    text = _strings(_hex_digits(filled)).alias(values.name)
    return text if not values.has_nulls() else text.zip_with(values.is_not_null(), text.clear(1))


def polars_hex(expr: pl.Expr) -> pl.Expr:
    """:func:`to_hex` of each value of an ``Int64`` expression, as a string; null stays null.

    >>> pl.select(polars_hex(pl.lit(-7444071767201028348))).item()
    '98b1582b0977e704'
    """
    return expr.map_batches(_hex_series, return_dtype=pl.String)


def _hash_rows(prefix: tuple[str, ...], parts: pl.Series) -> pl.Series:
    """Hash ``[*prefix, *row]`` for every row of a struct of ``Int64`` hashes."""
    columns = [parts.struct.field(name) for name in parts.struct.fields]
    if any(col.has_nulls() for col in columns):
        texts = [pl.lit(p) for p in prefix] + [
            polars_hex(pl.lit(col)).fill_null(NULL_SENTINEL) for col in columns
        ]
        joined = plh.concat_str(*texts, separator=SEPARATOR)
        return pl.select(polars_hash_text(joined)).to_series().alias(parts.name)
    values = {str(i): col.cast(pl.Int64).to_numpy() for i, col in enumerate(columns)}
    (hashed,) = hash_versions([(prefix, tuple(values))], values, parts.len())
    return int64_series(parts.name, hashed)


def hash_versions(
    hashes: Sequence[tuple[Sequence[str], Sequence[str]]],
    columns: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    rows: int,
) -> list[np.ndarray]:
    """Several hashes of every row in one pass: for each ``(prefix, names)``, the hash of
    ``[*prefix, *(columns[n][row] for n in names)]``; the columns are ``int64`` arrays of
    ``rows`` hashes, without nulls, or a list of such mappings holding consecutive rows (e.g.
    the record batches of an Arrow table), read where they are, without concatenating.

    >>> ones = np.array([1, 1], dtype=np.int64)
    >>> [list(h) for h in hash_versions([(["a"], ["v"]), (["b"], ["v"])], {"v": ones}, 2)] == [
    ...     [hash_parts(["a", 1])] * 2, [hash_parts(["b", 1])] * 2]
    True
    """
    pieces = [columns] if isinstance(columns, Mapping) else list(columns)
    sizes = [len(next(iter(p.values()))) if p else rows for p in pieces]
    if any(names for _, names in hashes) and sum(sizes) != rows:
        raise ValueError(f"hash_versions: the columns hold {sum(sizes)} rows, not {rows}")
    return hash_stream(hashes, zip(pieces, sizes, strict=True))


def hash_stream(
    hashes: Sequence[tuple[Sequence[str], Sequence[str]]],
    pieces: Iterable[tuple[Mapping[str, np.ndarray], int]],
) -> list[np.ndarray]:
    """:func:`hash_versions` of consecutive pieces ``(columns, rows)`` as they arrive: each
    piece's blocks are hashed on the pool of threads while the next piece is produced (e.g.
    while DuckDB exports its next record batch), so hashing and producing overlap.

    Every canonical string of one ``(prefix, names)`` has the same width, so they are written
    side by side into one buffer, with the prefix and separators in place, and hashed there; in
    small blocks (fresh memory costs a page fault per 4 KiB), on every core (numpy and Polars
    release the GIL). Each column's hex digits are rendered once per block, whatever reads
    them, and hashes of the same columns with prefixes of one width share the buffer: only the
    prefix is rewritten. An exception raised by ``pieces`` is raised here once the blocks
    already started are done.

    >>> v = {"v": np.array([1, 2], dtype=np.int64)}
    >>> [list(h) for h in hash_stream([(["a"], ["v"])], [(v, 2), (v, 2)])] == [
    ...     [hash_parts(["a", 1]), hash_parts(["a", 2])] * 2]
    True
    """
    heads = ["".join(p + SEPARATOR for p in prefix).encode() for prefix, _ in hashes]
    shared: dict[tuple[tuple[str, ...], int], list[int]] = {}
    constant: dict[int, int] = {}
    for i, ((prefix, names), head) in enumerate(zip(hashes, heads, strict=True)):
        if names:
            shared.setdefault((tuple(names), len(head)), []).append(i)
        else:
            constant[i] = hash_parts(list(prefix))
    done: list[list[np.ndarray]] = [[] for _ in hashes]
    work: list[Future[None]] = []
    try:
        for piece, size in pieces:
            for lo in range(0, size, _BLOCK_ROWS):
                hi = min(lo + _BLOCK_ROWS, size)
                out = [
                    np.full(hi - lo, constant[i], dtype=np.int64)
                    if i in constant
                    else np.empty(hi - lo, dtype=np.int64)
                    for i in range(len(hashes))
                ]
                for i, block in enumerate(out):
                    done[i].append(block)
                if shared:
                    work.append(_pool().submit(_hash_block, heads, shared, out, piece, lo, hi))
    finally:
        wait(work)
    for future in work:
        future.result()
    return [np.concatenate(d) if d else np.empty(0, dtype=np.int64) for d in done]


def _hash_block(
    heads: list[bytes],
    shared: dict[tuple[tuple[str, ...], int], list[int]],
    out: list[np.ndarray],
    columns: Mapping[str, np.ndarray],
    lo: int,
    hi: int,
) -> None:
    digits: dict[str, np.ndarray] = {}
    for (names, width), members in shared.items():
        row_bytes = width + 17 * len(names) - 1
        rows = _scratch(f"rows{row_bytes}", (hi - lo, row_bytes), np.uint8)
        at = width
        for name in names:
            if name not in digits:
                quads = _scratch(f"digits{len(digits)}", (hi - lo, 4), np.uint32)
                digits[name] = _hex_digits(columns[name][lo:hi], quads)
            if at > width:
                rows[:, at - 1] = ord(SEPARATOR)
            rows[:, at : at + 16] = digits[name]
            at += 17
        for i in members:
            rows[:, :width] = np.frombuffer(heads[i], dtype=np.uint8)
            strings = _strings(rows).to_frame("s")
            out[i][:] = strings.select(polars_hash_text(pl.col("s"))).to_series().to_numpy()


_BLOCK_ROWS: Final = 1 << 15
_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, int], dtype: type[np.generic]) -> np.ndarray:
    """This thread's buffer ``name``, reused from block to block rather than allocated for
    each (measured: about 4 of 62 ms of one core per million rows of two inputs)."""
    buffers: dict[str, np.ndarray] = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.shape[0] < shape[0] or buffer.shape[1:] != shape[1:]:
        buffer = buffers[name] = np.empty((max(shape[0], _BLOCK_ROWS), shape[1]), dtype)
    return buffer[: shape[0]]


_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool of threads per process, created on first use."""
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(os.cpu_count() or 1, "metaxy-hash"))
        return _POOL[0]


# A forked child has none of its parent's threads: it starts a pool of its own.
os.register_at_fork(after_in_child=_POOL.clear)


def polars_hash(parts: Sequence[pl.Expr | str]) -> pl.Expr:
    """A Polars ``Int64`` expression hashing the canonical string of ``parts``: string
    constants first, then ``Int64`` expressions of hashes (written as their hex text, null as
    :data:`NULL_SENTINEL`). For parts that are text, see :func:`polars_hash_texts`.

    >>> pl.select(h=polars_hash(["a", pl.lit(-7444071767201028348)])).item() == hash_parts(
    ...     ["a", "98b1582b0977e704"]
    ... )
    True
    """
    split = next((i for i, p in enumerate(parts) if not isinstance(p, str)), len(parts))
    prefix = tuple(p for p in parts[:split] if isinstance(p, str))
    columns = [p for p in parts[split:] if not isinstance(p, str)]
    if len(columns) != len(parts) - split:
        raise ValueError("polars_hash: string constants must come before the expressions")
    if not columns:
        return pl.lit(hash_parts(prefix), pl.Int64)
    fields = [e.alias(f"__metaxy_part{i}") for i, e in enumerate(columns)]
    # Not marked elementwise: Polars would then call it per small morsel.
    return pl.struct(fields).map_batches(
        lambda batch: _hash_rows(prefix, batch), return_dtype=pl.Int64
    )


def polars_hash_texts(parts: Sequence[pl.Expr]) -> pl.Expr:
    """A Polars ``Int64`` expression hashing the canonical string of text ``parts`` (each cast
    to a string; null as :data:`NULL_SENTINEL`).

    >>> pl.select(h=polars_hash_texts([pl.lit("a"), pl.lit("b")])).item()
    7675078895925983902
    """
    texts = [p.cast(pl.String).fill_null(NULL_SENTINEL) for p in parts]
    # One part is its own canonical string: no copy.
    joined = texts[0] if len(texts) == 1 else plh.concat_str(*texts, separator=SEPARATOR)
    return polars_hash_text(joined)


def polars_hash_text(expr: pl.Expr) -> pl.Expr:
    """:func:`hash_string` of each value of a string expression, as ``Int64``; null stays
    null.

    >>> pl.select(h=polars_hash_text(pl.lit("abc"))).item()
    1423657621850124518
    """
    hashed = cast("plh.HExpr", expr).nchash.xxhash64(seed=SEED)  # the plugin's namespace
    return hashed.reinterpret(signed=True)


def _duckdb_hash(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    strings = pl.Series("v", values, dtype=pl.String)
    return strings.to_frame().select(polars_hash_texts([pl.col("v")])).to_series().to_arrow()


def register_duckdb_hash(connection: duckdb.DuckDBPyConnection) -> None:
    """Register ``metaxy_xxh64(VARCHAR) -> BIGINT`` on a DuckDB connection.

    DuckDB has no XXH64 built in and extensions cannot be downloaded offline, so the function
    is a vectorized Arrow UDF backed by the same ``polars-hash`` as the Polars engine. It
    serves group versions and hash shards; provenance leaves DuckDB and is hashed in Polars.
    """
    import duckdb

    # Registering twice on one connection raises; the first registration is the same.
    with contextlib.suppress(duckdb.NotImplementedException):
        connection.create_function(
            DUCKDB_FUNCTION,
            _duckdb_hash,
            [duckdb.sqltype("VARCHAR")],
            duckdb.sqltype("BIGINT"),
            type="arrow",  # type: ignore[call-overload]  # the stubs type these as enums
            null_handling="special",
        )


def sql_hex(expr: str) -> str:
    """SQL rendering a ``BIGINT`` hash as :func:`to_hex` does."""
    return f"printf('%016x', {expr})"


def sql_hash(parts: Sequence[str]) -> str:
    """SQL hashing the canonical string of text ``parts`` (SQL expressions; a hash must be
    rendered with :func:`sql_hex` first) to a ``BIGINT``, with the function
    :func:`register_duckdb_hash` adds."""
    filled = [f"coalesce(CAST({p} AS VARCHAR), chr({ord(NULL_SENTINEL)}))" for p in parts]
    return f"{DUCKDB_FUNCTION}(concat_ws(chr({ord(SEPARATOR)}), {', '.join(filled)}))"
