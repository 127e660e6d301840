"""The implementations compared, and how each one's timed child is started."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.children import PEER_RUNNER


@dataclass(frozen=True)
class Impl:
    """One implementation: its timed command and which counts must equal the expected ones."""

    name: str
    store: str
    """Which prepared store it reads: ``ours`` (our DuckDB file) or ``peer`` (metaxy 0.1.11's)."""
    checked: tuple[str, ...]
    note: str = ""

    def command(self, graph: str, directory: Path, peer_python: Path) -> list[str]:
        """The child command timing one run on the store copy in ``directory``."""
        where = ["--graph", graph, "--dir", str(directory)]
        if self.name in ("ours-polars", "ours-duckdb"):
            engine = self.name.removeprefix("ours-")
            return [sys.executable, "-m", "bench.ours", "time", *where, "--engine", engine]
        if self.name == "floor":
            return [sys.executable, "-m", "bench.floor", "time", *where]
        if self.name == "peer":
            return [str(peer_python), str(PEER_RUNNER), "time", *where]
        raise ValueError(f"unknown implementation {self.name!r}")


ALL_COUNTS: Final = ("new", "stale", "orphaned")

IMPLS: Final[dict[str, Impl]] = {
    impl.name: impl
    for impl in (
        Impl("ours-polars", "ours", ALL_COUNTS, 'DuckDBMetadataStore(engine="polars")'),
        Impl("ours-duckdb", "ours", ALL_COUNTS, 'DuckDBMetadataStore(engine="duckdb")'),
        Impl(
            "floor",
            "ours",
            ("new", "orphaned"),
            "one hand-written DuckDB query, DuckDB's built-in hash() over the typed values, "
            "integer outputs, hashing only candidates; other bits, so in the stale phase every "
            "candidate counts as stale (N/10 for pruned too)",
        ),
        Impl(
            "peer",
            "peer",
            ("new", "stale"),
            "metaxy 0.1.11 (PyPI) DuckDB store; xxh64 macros = DuckDB native hash() (offline)",
        ),
    )
}
"""In the order each round runs them."""
