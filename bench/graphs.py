"""The three benchmark graphs and their data, shared by the setup, timing and floor children.

Every graph has one leaf, ``bench/leaf``, over one or two roots; ids are ``sample_id`` strings
``f"s{i:09d}"``. The data version of root field ``j`` (index in the root's field list) of sample
``i`` is ``format((i * 2654435761 + j * 97) % 2**64, "016x")``. In the ``stale`` phase the rows
``i % 10 == 0`` of :attr:`GraphSpec.changed`'s root get a new data version of that one field:
the same formula plus :data:`CHANGE_SALT` (mod 2**64), as the peer runner does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import duckdb
import polars as pl

from metaxy_core import FeatureDep, FeatureGraph, FeatureSpec, FieldDep, FieldSpec
from metaxy_core.columns import data_version_column

__all__ = [
    "CHANGE_SALT",
    "GRAPHS",
    "ID",
    "LEAF",
    "PHASES",
    "GraphSpec",
    "build_graph",
    "expected_counts",
    "root_rows",
    "spec",
]

ID: Final = "sample_id"
LEAF: Final = "bench/leaf"
CHANGE_SALT: Final = 0x9E3779B97F4A7C15
PHASES: Final = ("new", "stale")


@dataclass(frozen=True)
class GraphSpec:
    """One benchmark graph."""

    name: str
    roots: dict[str, tuple[str, ...]]
    """root key -> its field keys (in declaration order: field index ``j``)."""
    leaf_fields: dict[str, tuple[tuple[str, tuple[str, ...]], ...]]
    """leaf field -> ((root key, root fields it reads), ...)."""
    changed: tuple[str, str]
    """(root key, field) that gets a new data version on 10% of samples in the stale phase."""

    def leaf_reads(self, root: str, field: str) -> bool:
        """Whether any leaf field reads ``root.field``."""
        return any(
            r == root and field in fields
            for deps in self.leaf_fields.values()
            for r, fields in deps
        )


_WIDE_FIELDS = ("f0", "f1", "f2", "f3")
_WIDE_INPUTS = (("bench/root_a", _WIDE_FIELDS), ("bench/root_b", _WIDE_FIELDS))

GRAPHS: Final[dict[str, GraphSpec]] = {
    "simple": GraphSpec(
        name="simple",
        roots={"bench/root": ("audio", "frames")},
        leaf_fields={"out": (("bench/root", ("audio", "frames")),)},
        changed=("bench/root", "audio"),
    ),
    "pruned": GraphSpec(
        name="pruned",
        roots={"bench/root": ("audio", "frames")},
        leaf_fields={"out": (("bench/root", ("frames",)),)},
        changed=("bench/root", "audio"),
    ),
    "wide": GraphSpec(
        name="wide",
        roots={"bench/root_a": _WIDE_FIELDS, "bench/root_b": _WIDE_FIELDS},
        leaf_fields={"x": _WIDE_INPUTS, "y": _WIDE_INPUTS},
        changed=("bench/root_a", "f0"),
    ),
}


def spec(name: str) -> GraphSpec:
    """The graph called ``name``."""
    try:
        return GRAPHS[name]
    except KeyError:
        raise SystemExit(f"unknown graph {name!r}; choose from {', '.join(GRAPHS)}") from None


def build_graph(graph: GraphSpec) -> FeatureGraph:
    """The metaxy_core feature graph of ``graph`` (explicit field dependencies)."""
    roots = [
        FeatureSpec(key=k, id_columns=(ID,), fields=tuple(FieldSpec(key=f) for f in fields))
        for k, fields in graph.roots.items()
    ]
    leaf = FeatureSpec(
        key=LEAF,
        id_columns=(ID,),
        deps=tuple(FeatureDep(feature=root) for root in graph.roots),
        fields=tuple(
            FieldSpec(key=name, deps=tuple(FieldDep(root, fields) for root, fields in deps))
            for name, deps in graph.leaf_fields.items()
        ),
    )
    return FeatureGraph([*roots, leaf])


def root_rows(
    graph: GraphSpec, root: str, start: int, stop: int, step: int = 1, *, changed: bool = False
) -> pl.DataFrame:
    """Samples ``range(start, stop, step)`` of ``root``: ``sample_id`` and a data version per field.

    With ``changed``, the field named by ``graph.changed`` gets its new data version. Generated in
    DuckDB (HUGEINT arithmetic, so nothing overflows before the modulo).
    """
    salted = graph.changed[1] if changed and graph.changed[0] == root else None
    columns = [f"printf('s%09d', range) AS {ID}"]
    for j, field in enumerate(graph.roots[root]):
        offset = j * 97 + (CHANGE_SALT if field == salted else 0)
        value = f"(range::HUGEINT * 2654435761 + {offset}) % 18446744073709551616"
        columns.append(f"format('{{:016x}}', ({value})::UBIGINT) AS {data_version_column(field)}")
    con = duckdb.connect()
    try:
        query = f"SELECT {', '.join(columns)} FROM range({start}, {stop}, {step})"
        frame: pl.DataFrame = con.sql(query).pl()
        return frame
    finally:
        con.close()


def expected_counts(graph: GraphSpec, n: int, phase: str) -> dict[str, int]:
    """What a correct ``resolve_update("bench/leaf")`` finds."""
    if phase == "new":
        return {"new": n, "stale": 0, "orphaned": 0}
    changed = len(range(0, n, 10))
    return {"new": 0, "stale": changed if graph.leaf_reads(*graph.changed) else 0, "orphaned": 0}
