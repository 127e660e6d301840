"""The row hash in C (``_native/row_hash.c``), over Arrow string columns, without copying them.

``pip install`` compiles ``_native/row_hash.c`` into a shared library in the same folder (see
``setup.py``), loaded here with ctypes. Without a C compiler the install still succeeds and
:mod:`metaxy_core.hashing` falls back to Polars expressions with the same bits, only slower.
Set ``METAXY_NATIVE_HASH=0`` to use that fallback on purpose.

The canonical form (separator, null sentinel, seed) is the caller's:
:func:`metaxy_core.hashing.arrow_hash` passes metaxy's.

>>> import pyarrow as pa
>>> column = pa.chunked_array([["b"]])
>>> if available():
...     print(hash_columns(["a"], [column], separator="|", sentinel="~", seed=42).to_pylist())
... else:
...     print(["1adbc9b2628d52d7"])
['1adbc9b2628d52d7']
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

__all__ = ["available", "hash_columns", "reads"]

# Rows per call into C: small enough to spread a column over the cores, large enough that the
# call costs nothing; and at most this many rows in one output chunk (32-bit view offsets).
_STEP: Final = 1 << 16
_MAX_CHUNK: Final = 1 << 26
_LAYOUTS: Final = {
    pa.string(): 0,
    pa.binary(): 0,
    pa.large_string(): 1,
    pa.large_binary(): 1,
    pa.string_view(): 2,
    pa.binary_view(): 2,
}


class _Column(ctypes.Structure):
    _fields_ = [  # ctypes reads this class attribute
        ("layout", ctypes.c_int32),
        ("offset", ctypes.c_int64),
        ("validity", ctypes.c_void_p),
        ("index", ctypes.c_void_p),
        ("data", ctypes.POINTER(ctypes.c_void_p)),
    ]


def _load() -> ctypes.CDLL | None:
    folder = Path(__file__).parent / "_native"
    paths = [folder / f"row_hash{s}" for s in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((p for p in paths if p.is_file()), None)
    if os.environ.get("METAXY_NATIVE_HASH", "1") == "0" or path is None:
        return None
    lib = ctypes.CDLL(str(path))
    lib.metaxy_hash_rows.restype = ctypes.c_int
    lib.metaxy_hash_rows.argtypes = [
        ctypes.c_int64,  # rows
        ctypes.POINTER(_Column),  # columns
        ctypes.c_int32,  # number of columns
        ctypes.c_char_p,  # prefix
        ctypes.c_int64,  # its length
        ctypes.c_int32,  # whether there is a prefix (it may be empty)
        ctypes.c_uint8,  # separator
        ctypes.c_uint8,  # null sentinel
        ctypes.c_uint64,  # seed
        ctypes.c_void_p,  # hex digits out
        ctypes.c_void_p,  # string views out
        ctypes.c_int64,  # offset of the first row's digits in the views' buffer
    ]
    return lib


_LIB: Final = _load()
_EMPTY: Final = ctypes.create_string_buffer(1)  # stands in for the missing buffer of "" values
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock: Final = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """This process's worker threads (a forked child gets its own: threads do not survive a
    fork)."""
    pid = os.getpid()
    with _pools_lock:
        if pid not in _pools:
            _pools.clear()
            _pools[pid] = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))
        return _pools[pid]


def available() -> bool:
    """True when the C library was built and loaded."""
    return _LIB is not None


def reads(type: pa.DataType) -> bool:
    """True for the Arrow types :func:`hash_columns` reads in place (strings and binaries)."""
    return type in _LAYOUTS


def _column(array: pa.Array, start: int, keep: list[object]) -> _Column:
    """The C view of ``array`` from row ``start``; ``keep`` holds what must outlive the call."""
    layout = _LAYOUTS.get(array.type)
    if layout is None:
        raise TypeError(f"cannot hash a column of Arrow type {array.type}; cast it to string")
    buffers = array.buffers()
    data = buffers[2:] if layout == 2 else buffers[2:3]
    empty = ctypes.addressof(_EMPTY)
    pointers = (ctypes.c_void_p * max(1, len(data)))(*[b.address if b else empty for b in data])
    keep.append(pointers)
    validity = buffers[0].address if buffers[0] is not None and array.null_count else None
    return _Column(layout, array.offset + start, validity, buffers[1].address, pointers)


@dataclass(frozen=True)
class _Job:
    """One call into C: ``rows`` rows of ``columns`` from output row ``first``."""

    rows: int
    columns: ctypes.Array[_Column]
    prefix: bytes
    has_prefix: bool
    canonical: tuple[int, int, int]
    """The separator byte, the null sentinel byte and the seed."""
    first: int
    view_offset: int
    memory: tuple[object, ...]
    """The inputs and outputs the call reads and writes through raw addresses: a job holds
    them, so they outlive a caller interrupted while the job still runs."""


def _call(job: _Job, hexes: np.ndarray, views: np.ndarray) -> None:
    assert _LIB is not None
    status = _LIB.metaxy_hash_rows(
        job.rows,
        job.columns,
        len(job.columns),
        job.prefix,
        len(job.prefix),
        int(job.has_prefix),
        *job.canonical,
        hexes.ctypes.data + 16 * job.first,
        views.ctypes.data + 16 * job.first,
        job.view_offset,
    )
    if status != 0:
        raise MemoryError("out of memory while hashing rows")


def _run(jobs: list[_Job], hexes: np.ndarray, views: np.ndarray) -> None:
    """Run the jobs on the worker threads; return (or raise the first error) only once none
    is running any more."""
    if len(jobs) == 1:
        _call(jobs[0], hexes, views)
        return
    futures: list[Future[None]] = []
    try:
        futures = [_pool().submit(_call, job, hexes, views) for job in jobs]
    finally:
        wait(futures)
    for future in futures:
        future.result()


def hash_columns(
    prefix: Sequence[str],
    columns: Sequence[pa.ChunkedArray],
    *,
    separator: str,
    sentinel: str,
    seed: int,
) -> pa.ChunkedArray:
    """XXH64 (``seed``) as 16 hex digits of each row's ``prefix`` and values of ``columns``
    (Arrow strings; at least one column), joined by ``separator``, a null written as
    ``sentinel`` (one ASCII character each); Arrow string views chunked like the input."""
    if _LIB is None:
        raise RuntimeError("the native hash library is not built; use metaxy_core.hashing")
    if not (len(separator) == len(sentinel) == 1 and (separator + sentinel).isascii()):
        raise ValueError("the separator and the null sentinel must be one ASCII character each")
    joined = separator.join(prefix).encode("utf-8")
    canonical = (ord(separator), ord(sentinel), seed)
    # Batches of a table are its columns' chunks, sliced where their boundaries differ.
    table = pa.Table.from_arrays(list(columns), names=[str(i) for i in range(len(columns))])
    n = table.num_rows
    hexes = np.empty(16 * n, dtype=np.uint8)
    views = np.empty(16 * n, dtype=np.uint8)
    keep: list[object] = []
    memory = (table, keep)
    jobs = []
    bounds: list[tuple[int, int]] = []  # (first row, rows) of each output chunk
    row = 0
    for batch in table.to_batches():
        chunk = batch.columns
        keep.append(batch)
        for at in range(0, batch.num_rows, _MAX_CHUNK):
            rows = min(_MAX_CHUNK, batch.num_rows - at)
            bounds.append((row + at, rows))
            for step in range(0, rows, _STEP):
                cols = (_Column * len(chunk))(*(_column(a, at + step, keep) for a in chunk))
                first = row + at + step
                m = min(_STEP, rows - step)
                job = _Job(m, cols, joined, bool(prefix), canonical, first, 16 * step, memory)
                jobs.append(job)
        row += batch.num_rows
    if jobs:
        _run(jobs, hexes, views)
    hex_buffer, view_buffer = pa.py_buffer(hexes), pa.py_buffer(views)
    return pa.chunked_array(
        [
            pa.Array.from_buffers(
                pa.string_view(),
                rows,
                [
                    None,
                    view_buffer.slice(16 * first, 16 * rows),
                    hex_buffer.slice(16 * first, 16 * rows),
                ],
            )
            for first, rows in bounds
        ],
        pa.string_view(),
    )
