"""Prepared stores, cached under ``bench/work/<ours|peer>/<graph>-<n>-<phase>/``."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

import metaxy_core
from bench.children import PEER_RUNNER, WORK, run_child
from bench.graphs import build_graph, spec
from bench.ours import SETUP_FILE
from metaxy_core.hashing import HASH_ALGORITHM
from metaxy_core.store.duckdb import FORMAT_VERSION

PEER_SETUP_FILE = "peer_setup.json"
CORE = Path(metaxy_core.__file__).parent


def store_dir(kind: str, graph: str, n: int, phase: str) -> Path:
    """Where the prepared store of ``kind`` (``ours`` or ``peer``) lives."""
    return WORK / kind / f"{graph}-{n}-{phase}"


def core_source_hash() -> str:
    """SHA-1 of metaxy_core's source files: which code built a store or ran a benchmark."""
    digest = hashlib.sha1()
    for path in sorted(CORE.rglob("*.py")):
        digest.update(path.relative_to(CORE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_key(graph: str) -> dict[str, str]:
    """What must not have changed for a cached store of ours to be reused.

    Any change to metaxy_core rebuilds the stores: what a write stores may have changed.
    """
    return {
        "metaxy_core_sources": core_source_hash(),
        "graph_version": build_graph(spec(graph)).versions.graph,
        "store_format": FORMAT_VERSION,
        "hash_algorithm": HASH_ALGORITHM,
        "duckdb": duckdb.__version__,
    }


def prepare_ours(graph: str, n: int, phase: str, *, fresh: bool, log: Path) -> dict[str, Any]:
    """Our prepared store (built in a child process unless cached); returns its setup record."""
    directory = store_dir("ours", graph, n, phase)
    setup_file = directory / SETUP_FILE
    key = _cache_key(graph)
    if not fresh and setup_file.is_file():
        info: dict[str, Any] = json.loads(setup_file.read_text())
        if info.get("cache_key") == key and (info["n"], info["phase"]) == (n, phase):
            return {**info, "cached": True}
    print(f"  setting up our store: {graph} n={n:,} {phase} ...", flush=True)
    cmd = [sys.executable, "-m", "bench.ours", "setup", "--graph", graph, "--n", str(n)]
    result = run_child([*cmd, "--phase", phase, "--dir", str(directory)], log)
    info = {**result.data, "cache_key": key, "child_maxrss_mb": result.maxrss_mb}
    setup_file.write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "cached": False}


def prepare_peer(
    graph: str, n: int, phase: str, *, python: Path, fresh: bool, log: Path
) -> dict[str, Any]:
    """The peer's prepared store (built with its runner unless cached); its setup record."""
    directory = store_dir("peer", graph, n, phase)
    setup_file = directory / PEER_SETUP_FILE
    if not fresh and setup_file.is_file():
        info: dict[str, Any] = json.loads(setup_file.read_text())
        if (info.get("graph"), info.get("n"), info.get("phase")) == (graph, n, phase):
            return {**info, "cached": True}
    print(f"  setting up the peer's store: {graph} n={n:,} {phase} ...", flush=True)
    cmd = [str(python), str(PEER_RUNNER), "setup", "--graph", graph, "--n", str(n)]
    t0 = time.perf_counter()
    result = run_child([*cmd, "--phase", phase, "--dir", str(directory)], log, expect_json=False)
    info = json.loads(setup_file.read_text())
    info.update(wall_seconds=round(time.perf_counter() - t0, 3), child_maxrss_mb=result.maxrss_mb)
    setup_file.write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "cached": False}
