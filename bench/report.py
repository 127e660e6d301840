"""Summaries of a benchmark case, the printed tables, and machine information."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from typing import Any

from bench.children import ROOT

# The DuckDB engine is the store's default; the Polars engine is shown for comparison.
RATIOS = (
    ("peer/ours-dk", "peer", "ours-duckdb"),
    ("ours-dk/floor", "ours-duckdb", "floor"),
    ("peer/ours-pl", "peer", "ours-polars"),
    ("ours-pl/floor", "ours-polars", "floor"),
)

CPU_RATIO = "ours-dk/floor"


def summarize(case: dict[str, Any]) -> None:
    """Add medians, peak memory and ratios to ``case`` from its raw runs."""
    medians: dict[str, float] = {}
    cpu: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for impl, runs in case["runs"].items():
        ok = [r for r in runs if "seconds" in r]
        if ok:
            medians[impl] = round(statistics.median(r["seconds"] for r in ok), 4)
            peaks[impl] = max(r["peak_rss_mb"] for r in ok)
        if ok and all("cpu_seconds" in r for r in ok):
            cpu[impl] = round(statistics.median(r["cpu_seconds"] for r in ok), 4)
    case["median_seconds"] = medians
    case["median_cpu_seconds"] = cpu
    case["peak_rss_mb"] = peaks
    case["ratios"] = {
        name: round(medians[a] / medians[b], 3)
        for name, a, b in RATIOS
        if a in medians and b in medians and medians[b] > 0
    }
    # CPU seconds (all threads) of the timed section: on a shared machine, what each run
    # computed, whatever the waits for a core or the disk added to its wall time.
    case["cpu_ratios"] = {
        name: round(cpu[a] / cpu[b], 3)
        for name, a, b in RATIOS
        if a in cpu and b in cpu and cpu[b] > 0
    }


def size_label(n: int) -> str:
    """10000 -> '10k', 1000000 -> '1M'."""
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        # identity columns left-aligned, figures right-aligned
        return "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [line(r) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def tables(cases: Sequence[dict[str, Any]], impls: Sequence[str], rounds: int) -> str:
    """The printed report: times and ratios, peak memory, setup of our store."""
    key = ("graph", "n", "phase")
    times = []
    memory = []
    setups = []
    for case in cases:
        ident = [case["graph"], size_label(case["n"]), case["phase"]]
        med, peak, ratios = case["median_seconds"], case["peak_rss_mb"], case["ratios"]
        cpu_ratio = case.get("cpu_ratios", {}).get(CPU_RATIO)
        times.append(
            ident
            + [_fmt(med.get(i), ".3f") if i not in case["skipped"] else "skip" for i in impls]
            + [_fmt(ratios.get(name), ".2f", "x") for name, _, _ in RATIOS]
            + [_fmt(cpu_ratio, ".2f", "x")]
        )
        memory.append(ident + [_fmt(peak.get(i), ".0f") for i in impls])
        ours = case["setup"].get("ours") or {}
        writes = ours.get("root_writes", {})
        peer = case["setup"].get("peer") or {}
        setups.append(
            [
                *ident,
                " + ".join(f"{w['write_seconds']:.1f}" for w in writes.values()) or "-",
                _fmt(ours.get("peak_rss_mb_after_roots"), ".0f"),
                _fmt(ours.get("leaf_write_seconds"), ".1f"),
                _fmt((ours.get("changed_write") or {}).get("write_seconds"), ".1f"),
                _fmt(ours.get("total_seconds"), ".1f"),
                _fmt(ours.get("peak_rss_mb"), ".0f"),
                _fmt(peer.get("setup_seconds"), ".1f"),
            ]
        )
    ratio_names = [name for name, _, _ in RATIOS] + [f"{CPU_RATIO} cpu"]
    setup_header = [
        "root write s (1 call each)",
        "RSS after roots",
        "leaf write s",
        "changed write s",
        "total s",
        "peak RSS",
        "peer setup s",
    ]
    return "\n\n".join(
        [
            f"resolve_update: median seconds of {rounds} round(s), each run a fresh process on a "
            "fresh store copy",
            _table([*key, *impls, *ratio_names], times),
            "peak RSS of the timed process, MiB (max over rounds)",
            _table([*key, *impls], memory),
            "setup of our store (seconds; RSS in MiB)",
            _table([*key, *setup_header], setups),
        ]
    )


def write_table(writes: Sequence[dict[str, Any]], rounds: int) -> str:
    """The printed write report: ours against a plain insert of the same columns."""
    rows = [
        [
            w["graph"],
            size_label(w["n"]),
            "write",
            _fmt(w["median_seconds"].get("ours"), ".3f"),
            _fmt(w["median_seconds"].get("insert"), ".3f"),
            _fmt(w.get("ratio_ours_insert"), ".2f", "x"),
            _fmt(w["peak_rss_mb"].get("ours"), ".0f"),
            _fmt(w["peak_rss_mb"].get("insert"), ".0f"),
        ]
        for w in writes
    ]
    header = ["graph", "n", "what", "ours", "insert", "ours/insert", "ours MiB", "insert MiB"]
    return "\n\n".join(
        [
            f"write of N root rows in one call: median seconds of {rounds} round(s), each a fresh "
            "process and a new file (peak RSS in MiB)",
            _table(header, rows),
        ]
    )


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _proc_field(path: str, name: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """Where and with what the benchmark ran."""
    packages = ("duckdb", "polars", "polars-hash", "pyarrow", "narwhals")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "memory_total": _proc_field("/proc/meminfo", "MemTotal"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: importlib.metadata.version(p) for p in packages},
        "git_commit": _git("rev-parse", "HEAD"),
        "metaxy_core_changed_since_commit": bool(_git("status", "--porcelain", "metaxy_core")),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
