"""``count_update_by_column``: the counts of every value of a partition column in one pass.

They must equal one ``count_update(filter=nw.col(column) == value)`` per value, on every store
and engine, including samples whose value changed (orphaned under the old value, new under the
new one), samples whose value became null (in no value), and values no sample has.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import narwhals as nw
import polars as pl

from metaxy_core import IncrementCounts, MetadataStore
from metaxy_core.testing import make_store
from tests.reference import reference_graph
from tests.test_increments import N, _compute, _raw
from tests.test_lineage import VIDEOS, _write_increment, kind, make_chunks, video_graph, videos

__all__ = ["kind"]  # the store-kind fixture, shared with test_lineage

VALUES = ["train", "eval", "test"]  # no sample is in "test"


def split_of(i: int, moved: frozenset[int] = frozenset()) -> str | None:
    if i % 50 == 0:
        return None  # in no partition
    value = "train" if i % 3 else "eval"
    if i in moved:
        value = "eval" if value == "train" else "train"
    return value


def raw(moved: frozenset[int] = frozenset(), **edits: set[int]) -> pl.DataFrame:
    return _raw(**edits).with_columns(
        split=pl.Series([split_of(i, moved) for i in range(N)], dtype=pl.String)
    )


def check(store: MetadataStore, feature: str, values: list[str]) -> dict[str, IncrementCounts]:
    together = store.count_update_by_column(feature, "split", values)
    one_each = {v: store.count_update(feature, filter=nw.col("split") == v) for v in values}
    assert together == one_each
    return together


def test_identity_lineage_with_moved_and_null_values(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, reference_graph(), tmp_path)
    store.write("video/raw", raw())
    first = check(store, "video/crop", VALUES)
    nulls = len([i for i in range(N) if i % 50 == 0])
    assert first["train"].new + first["eval"].new == N - nulls
    assert first["test"] == IncrementCounts(0, 0, 0)
    for feature in ("video/crop", "vision/faces", "audio/transcript", "train/manifest"):
        _compute(store, feature)
    assert all(c.total == 0 for c in check(store, "video/crop", VALUES).values())

    moved = frozenset({1, 2, 4, 5})  # 1, 2, 4 and 5 swap train <-> eval
    audio = {i for i in range(0, N, 7) if i not in moved}
    store.write("video/raw", raw(moved, audio_edit=audio))
    store.delete("video/raw", pl.DataFrame({"video_id": ["v0010", "v0011"]}))
    counts = check(store, "video/crop", VALUES)
    edited = [split_of(i) for i in audio if i not in (10, 11) and split_of(i)]
    assert counts["train"].stale == edited.count("train")
    assert counts["eval"].stale == edited.count("eval")
    # Each moved sample is new under its new value and orphaned under its old one.
    assert counts["train"].new + counts["eval"].new == len(moved)
    assert counts["train"].orphaned + counts["eval"].orphaned == len(moved) + 2
    for feature in ("vision/faces", "audio/transcript"):
        check(store, feature, VALUES)


def test_an_id_column_can_be_the_partition_column(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, reference_graph(), tmp_path)
    store.write("video/raw", raw())
    ids = ["v0001", "v0002", "nope"]
    counts = store.count_update_by_column("video/crop", "video_id", ids)
    assert counts == {
        v: store.count_update("video/crop", filter=nw.col("video_id") == v) for v in ids
    }
    assert [c.new for c in counts.values()] == [1, 1, 0]


def test_root_compared_with_given_samples(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, reference_graph(), tmp_path)
    store.write("video/raw", raw().head(900))
    given = raw(frozenset({3}), frames_edit={5, 6})
    counts = store.count_update_by_column("video/raw", "split", VALUES, samples=given)
    assert counts == {
        v: store.count_update("video/raw", samples=given, filter=nw.col("split") == v)
        for v in VALUES
    }
    assert counts["train"].stale + counts["eval"].stale == 2


def test_expansions_and_other_types_count_value_by_value(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, video_graph(), tmp_path)
    store.write("video/raw", videos())
    paths = [f"/videos/{v}.mp4" for v in VIDEOS[:3]]
    chunks = store.count_update_by_column("video/chunks", "path", paths)
    assert chunks == {
        p: store.count_update("video/chunks", filter=nw.col("path") == p) for p in paths
    }
    assert [c.new for c in chunks.values()] == [1, 1, 1]  # one row per new parent
    _write_increment(store, "video/chunks", make_chunks(store.resolve_update("video/chunks").new))
    chunks = store.count_update_by_column("video/chunks", "path", paths)
    assert all(c.total == 0 for c in chunks.values())

    dated = make_store(kind, reference_graph(), tmp_path / "dated")
    day = dt.date(2024, 1, 1)
    dated.write(
        "video/raw", _raw().with_columns(day=pl.lit(day)).head(10)
    )  # a date column: not a string, counted value by value
    counts = dated.count_update_by_column("video/crop", "day", ["2024-01-01"])
    as_text = nw.col("day").cast(nw.String()) == "2024-01-01"
    assert counts == {"2024-01-01": dated.count_update("video/crop", filter=as_text)}
    assert counts["2024-01-01"].new == 10
