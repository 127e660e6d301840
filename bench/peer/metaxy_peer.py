"""Benchmark runner for the peer: the published ``metaxy==0.1.11`` package (PyPI).

Run it with the python of the peer's own virtual environment (see ``README.md`` beside this file),
never with ours: it imports ``metaxy``, which is not installed next to ``metaxy_core``.

Two sub-commands::

    python bench/peer/metaxy_peer.py setup --graph simple --n 1000000 --phase stale --dir DIR
    python bench/peer/metaxy_peer.py time --graph simple --dir DIR

``setup`` builds a fresh DuckDB store in DIR. ``time`` (meant for a fresh process on a fresh copy
of DIR) opens the store, resolves the leaf's increment, collects ``new``/``stale``/``orphaned``
into memory and prints one line of JSON:
``{"seconds", "new", "stale", "orphaned", "peak_rss_mb"}``.

Offline workaround: metaxy's ``DuckDBMetadataStore`` installs the DuckDB community extension
``hashfuncs`` whenever it opens, which needs the internet. ``OfflineDuckDBStore`` below skips the
install and defines temporary macros ``xxh64``/``xxh32``/``xxh3_64`` as DuckDB's native
``hash(x)``: the same class of cost (one 64-bit non-cryptographic hash per value), different bits.
Setup and timing both use it, so the stored provenance is self-consistent.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import resource
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import metaxy as mx
import narwhals as nw
import polars as pl
from metaxy.ext.duckdb import DuckDBMetadataStore

GRAPHS = ("simple", "pruned", "wide")
PHASES = ("new", "stale")
DB_FILE = "metaxy.duckdb"
SETUP_FILE = "peer_setup.json"  # what `setup` built; `time` checks the graph against it
ID_COLUMN = "sample_id"
PROJECT = "bench"
# A single write() of 10M rows was killed for memory at 24 GiB; 1M-row chunks are fine.
WRITE_CHUNK = 1_000_000
# Offset mixed into the data version of the field that changes in the stale phase.
CHANGE_SALT = 0x9E3779B97F4A7C15

PROVENANCE_BY_FIELD = "metaxy_provenance_by_field"

# Modules metaxy/ibis import lazily on the first open/resolve (ibis pulls in pandas, ~0.3 s).
# `time` imports them before starting the clock, so the figure is store work, not imports;
# `time --cold` skips this. Names are for the pinned versions; missing ones are skipped.
WARM_IMPORTS = (
    "pandas",
    "ibis",
    "ibis.backends.duckdb",
    "ibis.backends.duckdb.converter",
    "ibis.formats.pyarrow",
    "narwhals._ibis.dataframe",
    "narwhals._arrow.dataframe",
    "narwhals_map",
    "polars_map",
    "metaxy.metadata_store.fallback",
    "metaxy.versioning.lineage_handler",
    "metaxy.versioning.upstream_preparer",
)


class OfflineDuckDBStore(DuckDBMetadataStore):
    """``DuckDBMetadataStore`` that works without the internet.

    The parent's ``__init__`` always appends the community extension ``hashfuncs`` to
    ``self.extensions``; we keep it listed, because ``_create_hash_functions`` only registers the
    xxhash functions when it is, and replace the install/load step with temporary macros of the
    same names backed by DuckDB's built-in ``hash()`` (UBIGINT, like the real ``xxh64``).
    """

    def _load_extensions(self) -> None:
        con = self._duckdb_raw_connection()
        for name in ("xxh64", "xxh32", "xxh3_64"):
            con.execute(f"CREATE OR REPLACE TEMP MACRO {name}(x) AS hash(x)")


# --------------------------------------------------------------------------- graphs


@dataclass(frozen=True)
class Graph:
    """The declared features of one benchmark graph."""

    roots: dict[str, type[mx.BaseFeature]]  # root feature key -> class
    root_fields: dict[str, list[str]]  # root feature key -> its field names
    leaf: type[mx.BaseFeature]
    changed: tuple[str, str]  # (root key, field) given a new data version in the stale phase


def declare(graph: str) -> Graph:
    """Declare the features of ``graph`` in metaxy's (global) active feature graph.

    Call once per process: metaxy registers feature classes when they are defined.
    """
    if graph in ("simple", "pruned"):

        class Root(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="bench/root", id_columns=[ID_COLUMN], fields=["audio", "frames"]
            ),
        ):
            __metaxy_project__ = PROJECT
            sample_id: str

        out_inputs = ["audio", "frames"] if graph == "simple" else ["frames"]

        class Leaf(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="bench/leaf",
                id_columns=[ID_COLUMN],
                deps=[mx.FeatureDep(feature=Root)],
                fields=[
                    mx.FieldSpec(key="out", deps=[mx.FieldDep(feature=Root, fields=out_inputs)])
                ],
            ),
        ):
            __metaxy_project__ = PROJECT
            sample_id: str

        return Graph(
            roots={"bench/root": Root},
            root_fields={"bench/root": ["audio", "frames"]},
            leaf=Leaf,
            changed=("bench/root", "audio"),
        )

    if graph == "wide":
        fields = ["f0", "f1", "f2", "f3"]

        class RootA(
            mx.BaseFeature,
            spec=mx.FeatureSpec(key="bench/root_a", id_columns=[ID_COLUMN], fields=fields),
        ):
            __metaxy_project__ = PROJECT
            sample_id: str

        class RootB(
            mx.BaseFeature,
            spec=mx.FeatureSpec(key="bench/root_b", id_columns=[ID_COLUMN], fields=fields),
        ):
            __metaxy_project__ = PROJECT
            sample_id: str

        all_inputs = [
            mx.FieldDep(feature=RootA, fields=list(fields)),
            mx.FieldDep(feature=RootB, fields=list(fields)),
        ]

        class WideLeaf(
            mx.BaseFeature,
            spec=mx.FeatureSpec(
                key="bench/leaf",
                id_columns=[ID_COLUMN],
                deps=[mx.FeatureDep(feature=RootA), mx.FeatureDep(feature=RootB)],
                fields=[
                    mx.FieldSpec(key="x", deps=all_inputs),
                    mx.FieldSpec(key="y", deps=all_inputs),
                ],
            ),
        ):
            __metaxy_project__ = PROJECT
            sample_id: str

        return Graph(
            roots={"bench/root_a": RootA, "bench/root_b": RootB},
            root_fields={"bench/root_a": fields, "bench/root_b": fields},
            leaf=WideLeaf,
            changed=("bench/root_a", "f0"),
        )

    raise ValueError(f"unknown graph {graph!r}")


# --------------------------------------------------------------------------- store


def configure() -> None:
    """Activate the metaxy configuration of a fair run (set before any store is built)."""
    mx.MetaxyConfig.set(
        mx.MetaxyConfig(project=PROJECT, enable_map_datatype=True, auto_create_tables=True)
    )


def make_store(directory: Path) -> OfflineDuckDBStore:
    return OfflineDuckDBStore(
        directory / DB_FILE,
        hash_algorithm=mx.HashAlgorithm.XXHASH64,
        auto_create_tables=True,
    )


# --------------------------------------------------------------------------- root data


def root_rows(
    fields: list[str], start: int, stop: int, step: int = 1, changed: str | None = None
) -> pl.DataFrame:
    """Root samples ``range(start, stop, step)``: the id column and a provenance struct.

    The data version of field ``j`` for sample ``i`` is ``format((i * 2654435761 + j * 97) %
    2**64, '016x')``; the field named by ``changed`` also gets ``CHANGE_SALT`` added (mod 2**64),
    i.e. a new data version. Generated in DuckDB for speed (HUGEINT arithmetic, so no overflow
    before the modulo); ``printf('s%09d')`` matches Python's ``f"s{i:09d}"``.
    """

    def version(j: int, field: str) -> str:
        salt = CHANGE_SALT if field == changed else 0
        value = f"(range::HUGEINT * 2654435761 + {j * 97 + salt}) % 18446744073709551616"
        return f"format('{{:016x}}', ({value})::UBIGINT) AS \"{field}\""

    sql = (
        f"SELECT printf('s%09d', range) AS {ID_COLUMN}, "
        + ", ".join(version(j, f) for j, f in enumerate(fields))
        + f" FROM range({start}, {stop}, {step})"
    )
    con = duckdb.connect()
    try:
        flat = con.sql(sql).pl()
    finally:
        con.close()
    return flat.select(ID_COLUMN, pl.struct(fields).alias(PROVENANCE_BY_FIELD))


def write_roots(store: OfflineDuckDBStore, graph: Graph, n: int) -> None:
    """Write samples ``0..n-1`` of every root, in ``WRITE_CHUNK``-row writes."""
    for key, feature in graph.roots.items():
        for lo in range(0, n, WRITE_CHUNK):
            store.write(feature, root_rows(graph.root_fields[key], lo, min(lo + WRITE_CHUNK, n)))


def write_changed_roots(store: OfflineDuckDBStore, graph: Graph, n: int) -> int:
    """Write a new version of root rows ``i % 10 == 0`` with ``graph.changed``'s field changed.

    Only the root owning the changed field is rewritten (all of its fields; the others keep
    their values). Returns the number of rows written.
    """
    key, field = graph.changed
    written = 0
    span = WRITE_CHUNK * 10  # one write per WRITE_CHUNK written rows
    for lo in range(0, n, span):
        rows = root_rows(graph.root_fields[key], lo, min(lo + span, n), step=10, changed=field)
        store.write(graph.roots[key], rows)
        written += rows.height
    return written


def write_in_chunks(
    store: OfflineDuckDBStore, feature: type[mx.BaseFeature], df: nw.DataFrame[Any]
) -> None:
    """Write an eager narwhals frame in ``WRITE_CHUNK``-row slices.

    The eager increment is Arrow-backed with ``map<string, string>`` provenance columns; slice
    it as is (converting to Polars would turn the maps into ``List(Struct)``, which metaxy's
    schema check rejects).
    """
    for lo in range(0, len(df), WRITE_CHUNK):
        store.write(feature, df[lo : lo + WRITE_CHUNK])


# --------------------------------------------------------------------------- commands


def cmd_setup(graph_name: str, n: int, phase: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (DB_FILE, DB_FILE + ".wal", SETUP_FILE):
        (directory / stale).unlink(missing_ok=True)

    configure()
    graph = declare(graph_name)
    store = make_store(directory)
    t0 = time.perf_counter()
    with store.open("w"):
        write_roots(store, graph, n)
        expected_stale = 0
        if phase == "stale":
            # Materialise the leaf with the provenance metaxy itself computes.
            increment = store.resolve_update(graph.leaf)
            if len(increment.new) != n:
                raise RuntimeError(f"expected {n} new leaf rows, got {len(increment.new)}")
            write_in_chunks(store, graph.leaf, increment.new)
            del increment
            changed = write_changed_roots(store, graph, n)
            # The pruned leaf does not read the changed field, so nothing goes stale there.
            expected_stale = 0 if graph_name == "pruned" else changed
        store._duckdb_raw_connection().execute("CHECKPOINT")  # self-contained file for copying
    meta = {
        "peer": f"metaxy=={mx.__version__}",
        "graph": graph_name,
        "n": n,
        "phase": phase,
        "expected": {
            "new": n if phase == "new" else 0,
            "stale": expected_stale,
            "orphaned": 0,
        },
        "setup_seconds": round(time.perf_counter() - t0, 3),
    }
    (directory / SETUP_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta), file=sys.stderr)


def warm_imports() -> None:
    for name in WARM_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def cmd_time(graph_name: str, directory: Path, cold: bool) -> None:
    setup = json.loads((directory / SETUP_FILE).read_text())
    if setup["graph"] != graph_name:
        raise SystemExit(f"{directory} holds graph {setup['graph']!r}, not {graph_name!r}")

    configure()
    graph = declare(graph_name)
    if not cold:
        warm_imports()

    t0 = time.perf_counter()
    store = make_store(directory)
    with store.open("r"):
        # lazy=False (the default) collects new, stale and orphaned into memory.
        increment = store.resolve_update(graph.leaf)
        counts = {
            "new": len(increment.new),
            "stale": len(increment.stale),
            "orphaned": len(increment.orphaned),
        }
        seconds = time.perf_counter() - t0

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {"seconds": round(seconds, 4), **counts, "peak_rss_mb": round(peak_rss_mb, 1)}
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p_setup = sub.add_parser("setup", help="build a fresh store in DIR")
    p_setup.add_argument("--graph", choices=GRAPHS, required=True)
    p_setup.add_argument("--n", type=int, required=True)
    p_setup.add_argument("--phase", choices=PHASES, required=True)
    p_setup.add_argument("--dir", type=Path, required=True)

    p_time = sub.add_parser("time", help="time resolve_update on the leaf of the store in DIR")
    p_time.add_argument("--graph", choices=GRAPHS, required=True)
    p_time.add_argument("--dir", type=Path, required=True)
    p_time.add_argument(
        "--cold", action="store_true", help="don't pre-import lazily imported modules"
    )

    args = parser.parse_args(argv)
    if args.command == "setup":
        if args.n <= 0:
            parser.error("--n must be positive")
        # Setup writes Polars frames into auto-created tables, which metaxy warns about on
        # every write. `time` keeps warnings on: a PolarsMaterializationWarning there would mean
        # the resolve left DuckDB (none is raised with these stores).
        warnings.simplefilter("ignore")
        cmd_setup(args.graph, args.n, args.phase, args.dir)
    else:
        cmd_time(args.graph, args.dir, args.cold)


if __name__ == "__main__":
    main()
