"""Lineage beyond 1:1 and shaped dependencies, on every store and engine.

- expansion (1:N): video/raw -> video/chunks, each video 4 to 10 chunks;
- aggregation (N:1): audio/utterances -> speaker/profile, 1,000 utterances of 50 speakers;
- shaping: select, rename, a static filter and optional dependencies, and their versions;
- a property test: increments match a plain model of parents, children, groups and members.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import narwhals as nw
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaxy_core import (
    FeatureDep,
    FeatureGraph,
    FeatureSpec,
    FieldDep,
    FieldRef,
    FieldSpec,
    HashShard,
    MetadataStore,
    StaleReason,
    errors,
    hash_parts,
    hash_string,
    to_hex,
)
from metaxy_core.testing import (
    QUICK_STORE_KINDS,
    STORE_KINDS,
    assert_same_rows,
    make_store,
    root_samples,
)
from metaxy_core.versions import read_through

CHANGED = "metaxy_changed_fields"
REASON = "metaxy_stale_reason"
PROVENANCE_FRAMES = "metaxy_provenance__frames"


@pytest.fixture(params=STORE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def _write_increment(store: MetadataStore, feature: str, frame: pl.DataFrame) -> None:
    store.write(feature, frame.drop(CHANGED, REASON, strict=False))


# -- expansion: video -> chunks -----------------------------------------------------------------

VIDEOS = [f"v{i:02d}" for i in range(30)]
CHUNKS = {v: 4 + (i * 5) % 7 for i, v in enumerate(VIDEOS)}  # 4 to 10 chunks per video


def video_graph() -> FeatureGraph:
    return FeatureGraph(
        [
            FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio", "frames"]),
            FeatureSpec(
                key="video/chunks",
                id_columns=["video_id", "chunk_id"],
                fields=["audio", "frames"],
                deps=[FeatureDep("video/raw", lineage="expansion")],
            ),
            FeatureSpec(
                key="chunk/embedding",
                id_columns=["video_id", "chunk_id"],
                fields=[FieldSpec(key="vector", deps=[FieldDep("video/chunks", ["frames"])])],
                deps=["video/chunks"],
            ),
        ]
    )


def videos(ids: list[str] = VIDEOS, frames: dict[str, str] | None = None) -> pl.DataFrame:
    edits = frames or {}
    return root_samples(
        "video_id",
        ids,
        audio=[f"a-{v}" for v in ids],
        frames=[edits.get(v, f"f-{v}") for v in ids],
    ).with_columns(path=pl.format("/videos/{}.mp4", pl.col("video_id")))


def chunk_ids(ids: list[str]) -> set[tuple[str, int]]:
    return {(v, c) for v in ids for c in range(CHUNKS[v])}


def make_chunks(parents: pl.DataFrame) -> pl.DataFrame:
    """What a chunking step returns: the children of each parent, with the parent's columns."""
    parents = parents.drop("chunk_id", CHANGED, REASON, strict=False).unique("video_id")
    counts = pl.DataFrame(
        {"video_id": list(CHUNKS), "n": list(CHUNKS.values())},
        schema={"video_id": pl.String, "n": pl.Int64},
    )
    return (
        parents.join(counts, on="video_id")
        .with_columns(chunk_id=pl.int_ranges(0, pl.col("n")))
        .explode("chunk_id")
        .drop("n")
    )


def pairs(frame: pl.DataFrame) -> set[tuple[str, int]]:
    return set(frame.select("video_id", "chunk_id").iter_rows())


@pytest.fixture
def chunked(kind: str, tmp_path: Path) -> MetadataStore:
    store = make_store(kind, video_graph(), tmp_path)
    store.write("video/raw", videos())
    first = store.resolve_update("video/chunks")
    assert first.new.height == len(VIDEOS)  # one row per parent: the chunks do not exist yet
    assert first.new["chunk_id"].null_count() == len(VIDEOS)
    _write_increment(store, "video/chunks", make_chunks(first.new))
    embed = store.resolve_update("chunk/embedding")
    assert pairs(embed.new) == chunk_ids(VIDEOS)
    _write_increment(store, "chunk/embedding", embed.new)
    return store


def test_expansion_starts_with_one_row_per_parent_and_ends_up_to_date(
    chunked: MetadataStore,
) -> None:
    assert chunked.read("video/chunks").height == sum(CHUNKS.values())
    for feature in ("video/chunks", "chunk/embedding"):
        counts = chunked.count_update(feature)
        assert (counts.new, counts.stale, counts.orphaned) == (0, 0, 0), feature


def test_changing_one_videos_frames_makes_exactly_its_chunks_stale(
    chunked: MetadataStore,
) -> None:
    chunked.write("video/raw", videos(frames={"v07": "edited"}))
    inc = chunked.resolve_update("video/chunks")
    assert (inc.new.height, inc.orphaned.height) == (0, 0)
    assert pairs(inc.stale) == chunk_ids(["v07"])
    assert inc.stale.height == CHUNKS["v07"]  # one stale row per child
    assert inc.stale[CHANGED].to_list() == [["frames"]] * CHUNKS["v07"]
    assert set(inc.stale[REASON]) == {StaleReason.INPUT_DATA}
    assert set(inc.stale["path"]) == {"/videos/v07.mp4"}  # the parent's columns pass through
    assert chunked.count_update("video/chunks").stale == CHUNKS["v07"]

    _write_increment(chunked, "video/chunks", inc.stale)
    assert chunked.count_update("video/chunks").total == 0
    embed = chunked.resolve_update("chunk/embedding")
    assert pairs(embed.stale) == chunk_ids(["v07"])


def test_a_new_video_gives_one_increment_row_for_the_parent(chunked: MetadataStore) -> None:
    extra = videos(["w00"])
    chunked.write("video/raw", extra)
    CHUNKS["w00"] = 6
    try:
        inc = chunked.resolve_update("video/chunks")
        assert inc.new.select("video_id", "chunk_id").rows() == [("w00", None)]
        assert inc.new["path"].to_list() == ["/videos/w00.mp4"]
        assert (inc.stale.height, inc.orphaned.height) == (0, 0)
        # The user produces the children; they take the parent's provenance from the increment.
        children = make_chunks(inc.new)
        assert children.height == 6
        _write_increment(chunked, "video/chunks", children)
        assert chunked.count_update("video/chunks").total == 0
        assert pairs(chunked.resolve_update("chunk/embedding").new) == chunk_ids(["w00"])
    finally:
        del CHUNKS["w00"]


def test_deleting_a_video_orphans_its_chunks(chunked: MetadataStore) -> None:
    chunked.delete("video/raw", pl.DataFrame({"video_id": ["v03"]}))
    inc = chunked.resolve_update("video/chunks")
    assert pairs(inc.orphaned) == chunk_ids(["v03"])
    assert (inc.new.height, inc.stale.height) == (0, 0)
    assert chunked.count_update("video/chunks").orphaned == CHUNKS["v03"]


def test_child_writes_take_provenance_from_the_parent(chunked: MetadataStore) -> None:
    chunked.write("video/raw", videos(frames={"v01": "edited"}))
    inc = chunked.resolve_update("video/chunks")
    # Children without any system column: provenance is joined from the parent's expected one.
    plain = inc.stale.select("video_id", "chunk_id", note=pl.lit("recomputed"))
    prepared = chunked.prepare_write("video/chunks", plain)
    assert set(prepared[PROVENANCE_FRAMES]) == set(inc.stale[PROVENANCE_FRAMES])
    chunked.write("video/chunks", plain)
    assert chunked.count_update("video/chunks").total == 0
    with pytest.raises(errors.UnknownSampleError, match=r"cannot write 'video/chunks': 1 sample"):
        chunked.write("video/chunks", pl.DataFrame({"video_id": ["nope"], "chunk_id": [0]}))


def test_predicates_select_child_rows(chunked: MetadataStore) -> None:
    chunked.write("video/raw", videos(frames={"v02": "x", "v05": "y"}))
    chunked.write("video/raw", videos(["w01"]))
    by_parent = chunked.resolve_update("video/chunks", filter=nw.col("video_id") == "v05")
    assert pairs(by_parent.stale) == chunk_ids(["v05"])
    assert by_parent.new.height == 0

    # A predicate on a child id: a new parent has no children yet, so it is not in scope.
    by_child = chunked.resolve_update("video/chunks", filter=nw.col("chunk_id") < 2)
    assert pairs(by_child.stale) == {(v, c) for v in ("v02", "v05") for c in (0, 1)}
    assert by_child.new.height == 0
    assert chunked.count_update("video/chunks", filter=nw.col("chunk_id") < 2).stale == 4

    # Hash shards split by the parent ids: a parent and all its children share one shard.
    shards = [chunked.resolve_update("video/chunks", filter=HashShard(3, k)) for k in range(3)]
    for k, shard in enumerate(shards):
        for video in [*shard.stale["video_id"], *shard.new["video_id"]]:
            assert hash_string(video) % 3 == k
    assert set().union(*(pairs(s.stale) for s in shards)) == chunk_ids(["v02", "v05"])
    assert sorted(v for s in shards for v in s.new["video_id"]) == ["w01"]
    read = [chunked.read("video/chunks", filter=HashShard(3, k)) for k in range(3)]
    assert sum(r.height for r in read) == sum(CHUNKS.values())
    assert all(
        len(set(r["video_id"]) & set(o["video_id"])) == 0 for r in read for o in read if r is not o
    )


def test_expansion_mixed_with_identity_resolves_at_child_level(kind: str, tmp_path: Path) -> None:
    """A feature reading its parent (expansion) and a child-level feature (identity): its
    expected samples are the children, and a parent change reaches exactly its children."""
    graph = video_graph().with_features(
        FeatureSpec(
            key="chunk/caption",
            id_columns=["video_id", "chunk_id"],
            fields=[
                FieldSpec(
                    key="text",
                    deps=[FieldDep("video/raw", ["audio"]), FieldDep("video/chunks", ["frames"])],
                )
            ],
            deps=[FeatureDep("video/raw", lineage="expansion"), "video/chunks"],
        )
    )
    assert graph.expected_key("chunk/caption") == ("video_id", "chunk_id")
    assert graph.expected_key("video/chunks") == ("video_id",)
    assert graph.join_columns("chunk/caption", "video/raw") == ("video_id",)
    store = make_store(kind, graph, tmp_path)
    store.write("video/raw", videos())
    _write_increment(store, "video/chunks", make_chunks(store.resolve_update("video/chunks").new))
    first = store.resolve_update("chunk/caption")
    assert pairs(first.new) == chunk_ids(VIDEOS)
    _write_increment(store, "chunk/caption", first.new)
    edited = videos().with_columns(
        metaxy_data_version__audio=pl.when(pl.col("video_id") == "v04")
        .then(pl.lit("new audio"))
        .otherwise(pl.col("metaxy_data_version__audio"))
    )
    store.write("video/raw", edited)
    inc = store.resolve_update("chunk/caption")
    assert pairs(inc.stale) == chunk_ids(["v04"])
    assert inc.stale[CHANGED].to_list() == [["text"]] * CHUNKS["v04"]


# -- aggregation: utterances -> speaker ---------------------------------------------------------

SPEAKERS = [f"s{i:02d}" for i in range(50)]
UTTERANCES = [f"u{i:04d}" for i in range(1000)]


def speaker_graph() -> FeatureGraph:
    return FeatureGraph(
        [
            FeatureSpec(
                key="audio/utterances",
                id_columns=["speaker_id", "utterance_id"],
                fields=["audio", "text"],
            ),
            FeatureSpec(
                key="speaker/profile",
                id_columns=["speaker_id"],
                fields=[
                    FieldSpec(key="voice", deps=[FieldDep("audio/utterances", ["audio"])]),
                    FieldSpec(key="vocabulary", deps=[FieldDep("audio/utterances", ["text"])]),
                ],
                deps=[FeatureDep("audio/utterances", lineage="aggregation")],
            ),
        ]
    )


def utterances(audio: dict[str, str] | None = None, extra: int = 0) -> pl.DataFrame:
    edits = audio or {}
    ids = UTTERANCES + [f"x{i}" for i in range(extra)]
    speakers = [SPEAKERS[i % 50] for i in range(1000)] + ["s02"] * extra
    return pl.DataFrame(
        {
            "speaker_id": speakers,
            "utterance_id": ids,
            "metaxy_data_version__audio": [edits.get(u, f"a-{u}") for u in ids],
            "metaxy_data_version__text": [f"t-{u}" for u in ids],
            "seconds": [float(i % 17) for i in range(len(ids))],
        }
    )


@pytest.fixture
def profiled(kind: str, tmp_path: Path) -> MetadataStore:
    store = make_store(kind, speaker_graph(), tmp_path)
    store.write("audio/utterances", utterances())
    first = store.resolve_update("speaker/profile")
    assert sorted(first.new["speaker_id"]) == SPEAKERS
    _write_increment(store, "speaker/profile", first.new)
    return store


def test_aggregation_gives_one_row_per_group_with_its_members(profiled: MetadataStore) -> None:
    assert profiled.count_update("speaker/profile").total == 0
    stored = profiled.read("speaker/profile").sort("speaker_id")
    assert stored.height == 50
    # Member ids and user columns pass through as lists, ordered by the member ids.
    first = stored.row(0, named=True)
    assert first["utterance_id"] == [f"u{i:04d}" for i in range(0, 1000, 50)]
    assert first["seconds"] == [float(i % 17) for i in range(0, 1000, 50)]


def test_group_version_is_the_hash_of_sorted_member_ids_and_versions(
    profiled: MetadataStore,
) -> None:
    members = utterances().filter(pl.col("speaker_id") == "s07").sort("utterance_id")
    parts: list[str | int | None] = []
    for speaker, utterance, dv in members.select(
        "speaker_id", "utterance_id", "metaxy_data_version__audio"
    ).iter_rows():
        # A text data version is stored as its hash; a hash is a part as its hex text.
        parts += [speaker, utterance, hash_string(dv)]
    recipe = speaker_graph().versions.recipes[FieldRef("speaker/profile", "voice")]
    row = profiled.read("speaker/profile").filter(pl.col("speaker_id") == "s07")
    assert row["metaxy_provenance__voice"].item() == hash_parts([recipe, hash_parts(parts)])


def test_changing_three_utterances_of_two_speakers_gives_two_stale_rows(
    profiled: MetadataStore,
) -> None:
    # u0001 and u0051 belong to s01, u0002 to s02.
    edits = {"u0001": "new", "u0051": "new", "u0002": "new"}
    profiled.write("audio/utterances", utterances(audio=edits))
    inc = profiled.resolve_update("speaker/profile")
    assert sorted(inc.stale["speaker_id"]) == ["s01", "s02"]
    assert inc.stale[CHANGED].to_list() == [["voice"], ["voice"]]  # text is pruned
    assert (inc.new.height, inc.orphaned.height) == (0, 0)
    assert profiled.count_update("speaker/profile").stale == 2

    # A new member of a third speaker makes it stale too, in every field (membership changed).
    new_member = {"speaker_id": "s03", "utterance_id": "y0", "seconds": 1.0}
    profiled.write(
        "audio/utterances",
        pl.DataFrame(
            {**new_member, "metaxy_data_version__audio": "a", "metaxy_data_version__text": "t"}
        ),
    )
    inc = profiled.resolve_update("speaker/profile")
    assert sorted(inc.stale["speaker_id"]) == ["s01", "s02", "s03"]
    changed = dict(inc.stale.select("speaker_id", CHANGED).iter_rows())
    assert sorted(changed["s03"]) == ["vocabulary", "voice"]
    assert profiled.count_update("speaker/profile").stale == 3
    _write_increment(profiled, "speaker/profile", inc.stale)
    assert profiled.count_update("speaker/profile").total == 0


def test_removed_members_make_the_group_stale_and_an_empty_group_orphaned(
    profiled: MetadataStore,
) -> None:
    profiled.delete(
        "audio/utterances", pl.DataFrame({"speaker_id": ["s04"], "utterance_id": ["u0004"]})
    )
    gone = utterances().filter(pl.col("speaker_id") == "s09").select("speaker_id", "utterance_id")
    profiled.delete("audio/utterances", gone)
    inc = profiled.resolve_update("speaker/profile")
    assert inc.stale["speaker_id"].to_list() == ["s04"]
    assert inc.orphaned["speaker_id"].to_list() == ["s09"]


# -- shaping: filter, select, rename, optional --------------------------------------------------


def clip_specs(filter: str = "duration > 10") -> list[FeatureSpec]:
    return [
        FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio", "frames"]),
        FeatureSpec(key="video/meta", id_columns=["video_id"], fields=["tags"]),
        FeatureSpec(
            key="clips/long",
            id_columns=["video_id"],
            fields=[
                FieldSpec(key="frames", deps=[FieldDep("video/raw", ["frames"])]),
                FieldSpec(key="tags", deps=[FieldDep("video/meta")]),
            ],
            deps=[FeatureDep("video/raw", filter=filter), "video/meta"],
        ),
        FeatureSpec(
            key="clips/thumbs",
            id_columns=["video_id"],
            fields=[FieldSpec(key="thumb", deps=[FieldDep("clips/long", ["frames"])])],
            deps=["clips/long"],
        ),
        FeatureSpec(
            key="clips/labels",
            id_columns=["video_id"],
            fields=[FieldSpec(key="label", deps=[FieldDep("clips/long", ["tags"])])],
            deps=["clips/long"],
        ),
        FeatureSpec(
            key="video/crop", id_columns=["video_id"], fields=["frames"], deps=["video/raw"]
        ),
    ]


def test_changing_a_filter_changes_exactly_what_reads_through_it() -> None:
    before, after = (
        FeatureGraph(clip_specs(f)).versions for f in ("duration > 10", "duration > 20")
    )
    fields = {str(r) for r in before.fields if before.fields[r] != after.fields[r]}
    assert fields == {"clips/long.frames", "clips/thumbs.thumb"}
    recipes = {str(r) for r in before.recipes if before.recipes[r] != after.recipes[r]}
    assert recipes == {"clips/long.frames"}
    features = {k for k in before.features if before.features[k] != after.features[k]}
    assert features == {"clips/long", "clips/thumbs"}
    assert before.graph != after.graph


def test_shaping_is_part_of_the_recipe_only_when_used() -> None:
    assert read_through(FeatureDep("a/b")) == "identity"
    assert read_through(FeatureDep("a/b", lineage="aggregation")) == "aggregation"
    assert (
        read_through(
            FeatureDep("a/b", select=["y", "x"], rename={"y": "z"}, filter=" x > 1 ", optional=True)
        )
        == 'identity{"filter":"x > 1","optional":true,"rename":[["y","z"]],"select":["x","y"]}'
    )
    recipe = FeatureGraph(clip_specs()).versions.recipes[FieldRef("clips/long", "frames")]
    assert recipe == to_hex(
        hash_parts(
            [
                "recipe/v1",
                "clips/long",
                "frames",
                "1",
                'video/raw.frames@identity{"filter":"duration > 10"}',
            ]
        )
    )
    # Every lineage and shaping change reaches the fields reading through the dependency.
    base = FeatureGraph(clip_specs()).versions.fields[FieldRef("clips/long", "frames")]
    for dep in (
        FeatureDep("video/raw", filter="duration > 10", optional=True),
        FeatureDep("video/raw", filter="duration > 10", select=["duration"]),
        FeatureDep("video/raw", filter="duration > 10", rename={"duration": "seconds"}),
    ):
        specs = clip_specs()
        specs[2] = specs[2].model_copy(update={"deps": (dep, FeatureDep("video/meta"))})
        assert FeatureGraph(specs).versions.fields[FieldRef("clips/long", "frames")] != base


def raw_clips(durations: list[float]) -> pl.DataFrame:
    ids = [f"c{i}" for i in range(len(durations))]
    return root_samples(
        "video_id", ids, audio=[f"a{i}" for i in ids], frames=[f"f{i}" for i in ids]
    ).with_columns(duration=pl.Series(durations), source=pl.lit("cam"))


def meta(ids: list[str]) -> pl.DataFrame:
    return root_samples("video_id", ids, tags=[f"t{i}" for i in ids]).with_columns(
        lang=pl.lit("en")
    )


def test_a_static_filter_limits_the_upstream_rows(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, FeatureGraph(clip_specs()), tmp_path)
    store.write("video/raw", raw_clips([5.0, 11.0, 30.0, 10.0]))
    store.write("video/meta", meta(["c0", "c1", "c2", "c3"]))
    inc = store.resolve_update("clips/long")
    assert sorted(inc.new["video_id"]) == ["c1", "c2"]
    _write_increment(store, "clips/long", inc.new)
    # c0 grows past the threshold (new), c2 shrinks below it (orphaned).
    store.write("video/raw", raw_clips([12.0, 11.0, 3.0, 10.0]))
    inc = store.resolve_update("clips/long")
    assert inc.new["video_id"].to_list() == ["c0"]
    assert inc.orphaned["video_id"].to_list() == ["c2"]
    assert inc.stale.height == 0

    # A changed filter restates the recipe of clips/long.frames: kept samples are stale for
    # that field only, by code version; tags read video/meta, which has no filter.
    _write_increment(store, "clips/long", inc.new)
    store.delete("clips/long", inc.orphaned)
    store.graph = FeatureGraph(clip_specs("duration >= 10"))
    inc = store.resolve_update("clips/long")
    assert inc.new["video_id"].to_list() == ["c3"]
    assert sorted(inc.stale["video_id"]) == ["c0", "c1"]
    assert inc.stale[CHANGED].to_list() == [["frames"], ["frames"]]
    assert set(inc.stale[REASON]) == {StaleReason.CODE_VERSION}


def test_select_and_rename_shape_the_passthrough_columns(kind: str, tmp_path: Path) -> None:
    specs = clip_specs()
    specs[2] = specs[2].model_copy(
        update={
            "deps": (
                FeatureDep(
                    "video/raw",
                    filter="duration > 10",
                    select=["duration"],
                    rename={"duration": "raw_seconds"},
                ),
                FeatureDep("video/meta", select=[]),
            )
        }
    )
    store = make_store(kind, FeatureGraph(specs), tmp_path)
    store.write("video/raw", raw_clips([20.0, 30.0]))
    store.write("video/meta", meta(["c0", "c1"]))
    inc = store.resolve_update("clips/long")
    users = [c for c in inc.new.columns if not c.startswith("metaxy_")]
    assert users == ["video_id", "raw_seconds"]
    assert sorted(inc.new["raw_seconds"]) == [20.0, 30.0]


def test_optional_dependency_is_a_left_join_with_null_inputs(kind: str, tmp_path: Path) -> None:
    specs = clip_specs()
    specs[2] = specs[2].model_copy(
        update={
            "deps": (
                FeatureDep("video/raw", filter="duration > 10"),
                FeatureDep("video/meta", optional=True),
            )
        }
    )
    graph = FeatureGraph(specs)
    store = make_store(kind, graph, tmp_path)
    store.write("video/raw", raw_clips([20.0, 30.0]))
    store.write("video/meta", meta(["c0"]))
    inc = store.resolve_update("clips/long")
    assert sorted(inc.new["video_id"]) == ["c0", "c1"]  # c1 exists without video/meta
    recipe = graph.versions.recipes[FieldRef("clips/long", "tags")]
    tags = dict(inc.new.select("video_id", "metaxy_provenance__tags").iter_rows())
    assert tags["c1"] == hash_parts([recipe, None])  # the missing data version is null
    assert tags["c0"] == hash_parts([recipe, hash_string("tc0")])
    _write_increment(store, "clips/long", inc.new)
    assert store.count_update("clips/long").total == 0
    # The optional upstream appears: c1's tags become stale, its frames do not.
    store.write("video/meta", meta(["c1"]))
    inc = store.resolve_update("clips/long")
    assert inc.stale.select("video_id", CHANGED).rows() == [("c1", ["tags"])]


# -- validation ---------------------------------------------------------------------------------


def test_lineage_must_fit_the_id_columns() -> None:
    raw = FeatureSpec(key="video/raw", id_columns=["video_id"])
    with pytest.raises(
        errors.IdColumnsMismatchError,
        match=exactly(
            "feature 'video/chunks' (id columns ['video_id']) reads 'video/raw' (id columns "
            "['video_id']) with expansion lineage, which needs every id column of 'video/raw' "
            "plus at least one more (a child id, e.g. 'chunk_id'): add them to the id columns "
            "of 'video/chunks'."
        ),
    ):
        FeatureGraph(
            [
                raw,
                FeatureSpec(
                    key="video/chunks",
                    id_columns=["video_id"],
                    deps=[FeatureDep("video/raw", lineage="expansion")],
                ),
            ]
        )
    with pytest.raises(
        errors.IdColumnsMismatchError,
        match=r"^feature 'speaker/profile' \(id columns \['speaker_id'\]\) reads 'video/raw' "
        r"\(id columns \['video_id'\]\) with aggregation lineage, which needs a strict subset",
    ):
        FeatureGraph(
            [
                raw,
                FeatureSpec(
                    key="speaker/profile",
                    id_columns=["speaker_id"],
                    deps=[FeatureDep("video/raw", lineage="aggregation")],
                ),
            ]
        )


def test_joins_must_nest_and_one_required_upstream_must_be_widest() -> None:
    a = FeatureSpec(key="a", id_columns=["x"])
    b = FeatureSpec(key="b", id_columns=["y"])
    with pytest.raises(
        errors.IdColumnsMismatchError,
        match=r"^feature 'c' joins 'b' on \['y'\] and 'a' on \['x'\], which do not nest",
    ):
        FeatureGraph(
            [
                a,
                b,
                FeatureSpec(
                    key="c",
                    id_columns=["x", "y", "z"],
                    deps=[
                        FeatureDep("a", lineage="expansion"),
                        FeatureDep("b", lineage="expansion"),
                    ],
                ),
            ]
        )
    with pytest.raises(
        errors.DependencyError,
        match=exactly(
            "feature 'c' has no required upstream feature joined on ['x'], so nothing says which "
            "samples exist: make one of 'a' not optional."
        ),
    ):
        FeatureGraph(
            [a, FeatureSpec(key="c", id_columns=["x"], deps=[FeatureDep("a", optional=True)])]
        )


@pytest.mark.parametrize(
    ("dep", "message"),
    [
        (
            {"filter": "duration >"},
            r"^filter 'duration >' of the dependency on 'video/raw' is not one SQL boolean "
            r"expression \(",
        ),
        (
            {"filter": "x = 1) OR (1 = 1"},
            r"^filter 'x = 1\) OR \(1 = 1' of the dependency on 'video/raw' is not one SQL",
        ),
        (
            {"select": ["a"], "rename": {"b": "c"}},
            r"^rename= of the dependency on 'video/raw' renames \['b'\], which select= does not",
        ),
        ({"rename": {"a": "metaxy_x"}}, r"^rename= of the dependency on 'video/raw': 'metaxy_x'"),
        ({"rename": {"a": "c", "b": "c"}}, r"^rename= of the dependency on 'video/raw' maps two"),
    ],
)
def test_bad_shaping_fails_when_declared(dep: dict[str, object], message: str) -> None:
    with pytest.raises(errors.DependencyError, match=message):
        FeatureDep("video/raw", **dep)  # type: ignore[arg-type]


def test_shaping_may_not_touch_id_columns() -> None:
    raw = FeatureSpec(key="video/raw", id_columns=["video_id"])
    for dep, message in [
        (FeatureDep("video/raw", select=["video_id"]), "names id column 'video_id'"),
        (FeatureDep("video/raw", rename={"path": "video_id"}), "renames a column to 'video_id'"),
    ]:
        with pytest.raises(errors.DependencyError, match=message):
            FeatureGraph([raw, FeatureSpec(key="video/crop", id_columns=["video_id"], deps=[dep])])


def test_unknown_columns_in_shaping_fail_at_resolve(kind: str, tmp_path: Path) -> None:
    for dep, message in [
        (
            FeatureDep("video/raw", filter="seconds > 1"),
            "feature 'clips/long' filters 'video/raw' by 'seconds > 1', but 'video/raw' has no "
            "column 'seconds'",
        ),
        (
            FeatureDep("video/raw", select=["seconds"]),
            "feature 'clips/long' selects 'seconds' from 'video/raw', which has no such user "
            "column; its user columns are: duration, source.",
        ),
    ]:
        specs = clip_specs()
        specs[2] = specs[2].model_copy(update={"deps": (dep, FeatureDep("video/meta"))})
        store = make_store(kind, FeatureGraph(specs), tmp_path / str(len(message)))
        store.write("video/raw", raw_clips([20.0]))
        store.write("video/meta", meta(["c0"]))
        with pytest.raises(errors.DependencyError, match=message):
            store.resolve_update("clips/long")


# -- both engines, same results -----------------------------------------------------------------


def _increments_after_edits(kind: str, directory: Path) -> dict[str, pl.DataFrame]:
    graph = FeatureGraph([*video_graph(), *speaker_graph()])
    store = make_store(kind, graph, directory)
    store.write("video/raw", videos())
    _write_increment(store, "video/chunks", make_chunks(store.resolve_update("video/chunks").new))
    store.write("audio/utterances", utterances())
    _write_increment(store, "speaker/profile", store.resolve_update("speaker/profile").new)
    store.write("video/raw", videos(frames={"v01": "x"}))
    store.write("video/raw", videos(["w02"]))
    store.delete("video/raw", pl.DataFrame({"video_id": ["v02"]}))
    store.write("audio/utterances", utterances(audio={"u0003": "x"}, extra=2))
    out = {}
    for feature in ("video/chunks", "speaker/profile"):
        inc = store.resolve_update(feature)
        out[f"{feature}:new"] = inc.new
        out[f"{feature}:stale"] = inc.stale
        out[f"{feature}:orphaned"] = inc.orphaned
    return out


def test_every_engine_gives_the_same_increments(tmp_path: Path) -> None:
    results = {k: _increments_after_edits(k, tmp_path / k) for k in STORE_KINDS}
    reference = results["memory"]
    assert reference["video/chunks:stale"].height == CHUNKS["v01"]
    assert reference["video/chunks:new"]["video_id"].to_list() == ["w02"]
    assert reference["speaker/profile:stale"].height == 2  # s02 (new members), s03 (edited)
    for kind, frames in results.items():
        for name, frame in frames.items():
            by = [c for c in ("video_id", "chunk_id", "speaker_id") if c in frame.columns]
            try:
                assert_same_rows(frame, reference[name], by=by)
            except AssertionError as exc:
                raise AssertionError(f"{kind} differs from memory in {name}") from exc


# -- property: the increment is exactly what changed ---------------------------------------------


@st.composite
def lineage_edits(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    members = draw(st.lists(st.integers(0, 3), min_size=1, max_size=20))  # member -> group
    m = len(members)
    return {
        "children": draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)),
        "edited": draw(st.sets(st.integers(0, n - 1))),
        "removed": draw(st.sets(st.integers(0, n - 1), max_size=2)),
        "added": draw(st.integers(0, 2)),
        "members": members,
        "member_edited": draw(st.sets(st.integers(0, m - 1))),
        "member_removed": draw(st.sets(st.integers(0, m - 1), max_size=3)),
        "member_added": draw(st.lists(st.integers(0, 4), max_size=2)),  # group 4 may be new
    }


def _parents(ids: list[int], edited: set[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "video_id": [f"p{i}" for i in ids],
            "metaxy_data_version__frames": [f"f{i}" + ("*" * (i in edited)) for i in ids],
        },
        schema={"video_id": pl.String, "metaxy_data_version__frames": pl.String},
    )


def _members(groups: dict[int, int], edited: set[int]) -> pl.DataFrame:
    ids = sorted(groups)
    return pl.DataFrame(
        {
            "group_id": [f"g{groups[i]}" for i in ids],
            "member_id": [f"m{i:02d}" for i in ids],
            "metaxy_data_version__default": [f"d{i}" + ("*" * (i in edited)) for i in ids],
        },
        schema={k: pl.String for k in ("group_id", "member_id", "metaxy_data_version__default")},
    )


def _check_lineage_increments(kind: str, case: dict[str, Any]) -> None:
    graph = FeatureGraph(
        [
            FeatureSpec(key="p", id_columns=["video_id"], fields=["frames"]),
            FeatureSpec(
                key="c",
                id_columns=["video_id", "chunk_id"],
                fields=["frames"],
                deps=[FeatureDep("p", lineage="expansion")],
            ),
            FeatureSpec(key="m", id_columns=["group_id", "member_id"]),
            FeatureSpec(
                key="g", id_columns=["group_id"], deps=[FeatureDep("m", lineage="aggregation")]
            ),
        ]
    )
    children, n = case["children"], len(case["children"])
    groups = dict(enumerate(case["members"]))
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(kind, graph, Path(tmp))
        store.write("p", _parents(list(range(n)), set()))
        parents = store.resolve_update("c").new.drop("chunk_id")
        count = pl.DataFrame({"video_id": [f"p{i}" for i in range(n)], "k": children})
        store.write(
            "c",
            parents.join(count, on="video_id")
            .with_columns(chunk_id=pl.int_ranges(0, pl.col("k")))
            .explode("chunk_id")
            .drop("k"),
        )
        store.write("m", _members(groups, set()))
        _write_increment(store, "g", store.resolve_update("g").new)

        kept = [i for i in range(n) if i not in case["removed"]]
        store.write("p", _parents([*kept, *range(n, n + case["added"])], case["edited"]))
        if case["removed"]:
            store.delete("p", _parents(sorted(case["removed"]), set()).select("video_id"))
        after = {i: g for i, g in groups.items() if i not in case["member_removed"]}
        after.update({len(groups) + j: g for j, g in enumerate(case["member_added"])})
        store.write("m", _members(after, case["member_edited"]))
        gone = [i for i in groups if i in case["member_removed"]]
        if gone:
            store.delete(
                "m",
                _members({i: groups[i] for i in gone}, set()).drop("metaxy_data_version__default"),
            )

        inc = store.resolve_update("c")
        stale_parents = case["edited"] - case["removed"]
        assert pairs(inc.stale) == {(f"p{i}", k) for i in stale_parents for k in range(children[i])}
        assert sorted(inc.new["video_id"]) == sorted(f"p{i}" for i in range(n, n + case["added"]))
        assert pairs(inc.orphaned) == {
            (f"p{i}", k) for i in case["removed"] for k in range(children[i])
        }

        touched = {groups[i] for i in case["member_edited"] | case["member_removed"]}
        touched |= set(case["member_added"])
        before_groups, after_groups = set(groups.values()), set(after.values())
        inc = store.resolve_update("g")
        assert sorted(inc.stale["group_id"]) == sorted(
            f"g{g}" for g in touched & before_groups & after_groups
        )
        assert sorted(inc.new["group_id"]) == sorted(f"g{g}" for g in after_groups - before_groups)
        assert sorted(inc.orphaned["group_id"]) == sorted(
            f"g{g}" for g in before_groups - after_groups
        )
        counts = store.count_update("g")
        assert (counts.new, counts.stale, counts.orphaned) == (
            inc.new.height, inc.stale.height, inc.orphaned.height,
        )  # fmt: skip


@pytest.mark.parametrize("kind", QUICK_STORE_KINDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=lineage_edits())
def test_increments_match_a_model_of_parents_and_groups(kind: str, case: dict[str, Any]) -> None:
    _check_lineage_increments(kind, case)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=lineage_edits())
def test_increments_match_a_model_of_parents_and_groups_on_spark(case: dict[str, Any]) -> None:
    _check_lineage_increments("delta-spark", case)
