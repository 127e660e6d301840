"""``count_update_by_shard``: every shard's counts in one pass, equal to one count per shard.

Checked on every store and engine, for identity (the reference graph), expansion and
aggregation lineage, and for a root compared with given samples, in each state that matters:
nothing computed (all new), some samples stale, some orphaned.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from metaxy_core import HashShard, IncrementCounts, MetadataStore, errors
from metaxy_core.testing import make_store
from tests.reference import reference_graph
from tests.test_increments import _compute, _raw
from tests.test_lineage import (
    VIDEOS,
    _write_increment,
    kind,
    make_chunks,
    speaker_graph,
    utterances,
    video_graph,
    videos,
)

__all__ = ["kind"]  # the store-kind fixture, shared with test_lineage

SHARDS = 4


def one_per_shard(store: MetadataStore, feature: str, **kw: object) -> list[IncrementCounts]:
    return [
        store.count_update(feature, filter=HashShard(SHARDS, i), **kw)  # type: ignore[arg-type]
        for i in range(SHARDS)
    ]


def check(store: MetadataStore, feature: str, **kw: object) -> list[IncrementCounts]:
    """Assert one pass equals a count per shard and sums to the unsharded count."""
    together = store.count_update_by_shard(feature, SHARDS, **kw)  # type: ignore[arg-type]
    assert together == one_per_shard(store, feature, **kw)
    whole = store.count_update(feature, **kw)  # type: ignore[arg-type]
    assert sum(c.new for c in together) == whole.new
    assert sum(c.stale for c in together) == whole.stale
    assert sum(c.orphaned for c in together) == whole.orphaned
    return together


FEATURES = ("video/crop", "vision/faces", "audio/transcript", "train/manifest")


def test_identity_lineage_in_every_state(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, reference_graph(), tmp_path)
    store.write("video/raw", _raw())
    counts = check(store, "video/crop")
    assert sum(c.new for c in counts) == 1000
    assert all(c.new > 150 for c in counts)  # the shards split the samples
    for feature in FEATURES:
        _compute(store, feature)
    store.write("video/raw", _raw(audio_edit=set(range(0, 1000, 7))))
    store.delete("video/raw", pl.DataFrame({"video_id": ["v0001", "v0002", "v0003"]}))
    stale = check(store, "video/crop")
    assert sum(c.stale for c in stale) == len(range(0, 1000, 7))
    assert sum(c.orphaned for c in stale) == 3
    for feature in FEATURES[1:]:
        check(store, feature)


def test_a_root_compared_with_given_samples(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, reference_graph(), tmp_path)
    store.write("video/raw", _raw().head(900))
    given = _raw(frames_edit={5, 6, 7}).slice(3)  # 3 gone, 3 changed, 100 new
    counts = check(store, "video/raw", samples=given)
    assert (
        sum(c.new for c in counts),
        sum(c.stale for c in counts),
        sum(c.orphaned for c in counts),
    ) == (100, 3, 3)


def test_expansion_shards_by_the_parent(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, video_graph(), tmp_path)
    store.write("video/raw", videos())
    assert sum(c.new for c in check(store, "video/chunks")) == len(VIDEOS)
    _write_increment(store, "video/chunks", make_chunks(store.resolve_update("video/chunks").new))
    _write_increment(store, "chunk/embedding", store.resolve_update("chunk/embedding").new)
    store.write("video/raw", videos(frames={"v03": "new", "v11": "new"}))
    counts = check(store, "video/chunks")
    assert sum(c.stale for c in counts) > 0
    check(store, "chunk/embedding")


def test_aggregation(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, speaker_graph(), tmp_path)
    store.write("audio/utterances", utterances())
    assert sum(c.new for c in check(store, "speaker/profile")) == 50
    _write_increment(store, "speaker/profile", store.resolve_update("speaker/profile").new)
    store.write("audio/utterances", utterances(audio={"u0001": "x", "u0002": "y"}))
    assert sum(c.stale for c in check(store, "speaker/profile")) == 2


def test_shard_count_must_be_positive(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, reference_graph(), tmp_path)
    with pytest.raises(ValueError, match="HashShard needs count >= 1"):
        store.count_update_by_shard("video/crop", 0)
    with pytest.raises(errors.FeatureNotFoundError):
        store.count_update_by_shard("nope", 2)
