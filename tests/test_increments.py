"""Increments on the reference graph, on every store and engine (design section 3)."""

from __future__ import annotations

from pathlib import Path

import narwhals as nw
import polars as pl
import pytest

from metaxy_core import HashShard, MetadataStore, StaleReason, hash_string
from metaxy_core.testing import STORE_KINDS, make_store, root_samples
from tests.reference import reference_graph

N = 1000
IDS = [f"v{i:04d}" for i in range(N)]


@pytest.fixture(params=STORE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _raw(audio_edit: set[int] = frozenset(), frames_edit: set[int] = frozenset()) -> pl.DataFrame:  # type: ignore[assignment]
    return root_samples(
        "video_id",
        IDS,
        audio=[f"a{i}" + ("x" if i in audio_edit else "") for i in range(N)],
        frames=[f"f{i}" + ("x" if i in frames_edit else "") for i in range(N)],
    ).with_columns(path=pl.format("/data/{}.mp4", pl.col("video_id")))


def _compute(store: MetadataStore, feature: str) -> int:
    """Do what a pipeline step does: resolve, compute, write the new and stale samples."""
    inc = store.resolve_update(feature)
    todo = inc.to_compute()
    if todo.height:
        store.write(
            feature, todo.drop("metaxy_changed_fields", "metaxy_stale_reason", strict=False)
        )
    return todo.height


def _stale_ids(store: MetadataStore, feature: str) -> set[str]:
    return set(store.resolve_update(feature).stale["video_id"])


@pytest.fixture
def computed(kind: str, tmp_path: Path) -> MetadataStore:
    store = make_store(kind, reference_graph(), tmp_path)
    store.write("video/raw", _raw())
    for feature in ("video/crop", "vision/faces", "audio/transcript", "train/manifest"):
        assert _compute(store, feature) == N
    return store


def test_everything_computed_is_up_to_date(computed: MetadataStore) -> None:
    for feature in ("video/crop", "vision/faces", "audio/transcript", "train/manifest"):
        counts = computed.count_update(feature)
        assert (counts.new, counts.stale, counts.orphaned) == (0, 0, 0)
    assert computed.resolve_update("video/raw", samples=_raw()).counts.total == 0


def test_audio_change_prunes_the_frames_branch(computed: MetadataStore) -> None:
    edited = set(range(0, N, 10))  # 100 samples
    raw = _raw(audio_edit=edited)
    root = computed.resolve_update("video/raw", samples=raw)
    assert root.stale.height == 100
    assert set(root.stale["metaxy_changed_fields"].explode()) == {"audio"}
    computed.write("video/raw", root.stale.join(raw, on="video_id").select(raw.columns))

    expected_ids = {IDS[i] for i in edited}
    crop = computed.resolve_update("video/crop")
    assert set(crop.stale["video_id"]) == expected_ids
    assert crop.stale["metaxy_changed_fields"].to_list() == [["audio"]] * 100
    assert set(crop.stale["metaxy_stale_reason"]) == {StaleReason.INPUT_DATA}
    transcript = computed.resolve_update("audio/transcript")
    assert set(transcript.stale["video_id"]) == expected_ids
    assert transcript.stale["metaxy_changed_fields"].to_list() == [["text"]] * 100
    assert computed.count_update("vision/faces").stale == 0
    assert computed.count_update("train/manifest").stale == 0
    assert (crop.new.height, crop.orphaned.height) == (0, 0)

    assert _compute(computed, "video/crop") == 100
    assert _compute(computed, "audio/transcript") == 100
    assert computed.count_update("vision/faces").stale == 0
    assert _stale_ids(computed, "train/manifest") == expected_ids


def test_frames_change_reaches_faces_not_transcript(computed: MetadataStore) -> None:
    edited = set(range(50))
    computed.write("video/raw", _raw(frames_edit=edited))
    expected_ids = {IDS[i] for i in edited}
    assert _stale_ids(computed, "video/crop") == expected_ids
    assert computed.count_update("audio/transcript").stale == 0
    assert _compute(computed, "video/crop") == 50
    assert _stale_ids(computed, "vision/faces") == expected_ids
    assert computed.count_update("audio/transcript").stale == 0


def test_code_version_bump_makes_only_that_feature_stale(
    computed: MetadataStore, kind: str
) -> None:
    bumped = computed.__class__.__new__(computed.__class__)
    bumped.__dict__.update(computed.__dict__)
    bumped.graph = reference_graph({("audio/transcript", "text"): "2"})
    transcript = bumped.resolve_update("audio/transcript")
    assert transcript.stale.height == N
    assert set(transcript.stale["metaxy_stale_reason"]) == {StaleReason.CODE_VERSION}
    assert transcript.stale["metaxy_changed_fields"].to_list() == [["text"]] * N
    for feature in ("video/crop", "vision/faces", "train/manifest"):
        assert bumped.count_update(feature).total == 0, feature


def test_new_and_orphaned(computed: MetadataStore) -> None:
    raw = _raw()
    extra = root_samples("video_id", ["w1", "w2"], audio=["a", "b"], frames=["c", "d"])
    with_extra = pl.concat([raw, extra.with_columns(path=pl.lit("/x"))])
    root = computed.resolve_update(
        "video/raw", samples=with_extra.filter(pl.col("video_id") != "v0001")
    )
    assert sorted(root.new["video_id"]) == ["w1", "w2"]
    assert root.orphaned["video_id"].to_list() == ["v0001"]
    computed.write("video/raw", extra)
    computed.delete("video/raw", pl.DataFrame({"video_id": ["v0001"]}))
    crop = computed.resolve_update("video/crop")
    assert sorted(crop.new["video_id"]) == ["w1", "w2"]
    assert crop.orphaned["video_id"].to_list() == ["v0001"]
    assert crop.stale.height == 0


def test_filters_scope_the_increment(computed: MetadataStore) -> None:
    edited = {0, 1, 2, 3, 500}
    computed.write("video/raw", _raw(audio_edit=edited))
    by_column = computed.resolve_update("video/crop", filter=nw.col("video_id") < "v0100")
    assert sorted(by_column.stale["video_id"]) == ["v0000", "v0001", "v0002", "v0003"]

    shards = [computed.resolve_update("video/crop", filter=HashShard(3, k)) for k in range(3)]
    per_shard = [set(s.stale["video_id"]) for s in shards]
    assert set().union(*per_shard) == {IDS[i] for i in edited}
    assert sum(len(s) for s in per_shard) == len(edited)  # disjoint
    counts = [computed.count_update("video/crop", filter=HashShard(3, k)).stale for k in range(3)]
    assert counts == [len(s) for s in per_shard]
    # The shard of a sample is xxhash64 of its id, the same in every engine.
    for k, ids in enumerate(per_shard):
        for sid in ids:
            assert hash_string(sid) % 3 == k
