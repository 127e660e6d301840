"""Per-sample failures: recorded with their provenance, held back from increments until their
inputs or code change or a retry is asked for, on every store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest

from metaxy_core import (
    FeatureDep,
    FeatureGraph,
    FeatureSpec,
    FieldSpec,
    HashShard,
    IncrementCounts,
    MetadataStore,
    SampleRetryPolicy,
    errors,
)
from metaxy_core.testing import STORE_KINDS, make_store, root_samples

N = 1_000
BAD = [f"c{i:04d}" for i in (3, 150, 151, 400, 702, 888, 999)]


def _graph(embed_version: str = "1") -> FeatureGraph:
    return FeatureGraph(
        [
            FeatureSpec(key="clips", id_columns=["clip_id"], fields=["audio"]),
            FeatureSpec(
                key="clips/embed",
                id_columns=["clip_id"],
                fields=[FieldSpec(key="audio", code_version=embed_version)],
                deps=[FeatureDep("clips")],
            ),
            FeatureSpec(
                key="clips/score", id_columns=["clip_id"], deps=[FeatureDep("clips/embed")]
            ),
        ]
    )


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    return make_store(str(request.param), _graph(), tmp_path)


def _clips(edited: str | None = None) -> pl.DataFrame:
    ids = [f"c{i:04d}" for i in range(N)]
    versions = [f"h{i}" + ("-edited" if i == edited else "") for i in ids]
    return root_samples("clip_id", ids, audio=versions).with_columns(
        group=pl.col("clip_id").str.slice(-1)
    )


def _compute(increment: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The step: embeds every clip but the corrupt ones, which it reports as failed."""
    bad = pl.col("clip_id").is_in(BAD)
    rows = increment.filter(~bad).select("clip_id", "group", pl.lit(1.0).alias("norm"))
    failed = increment.filter(bad).select(
        "clip_id", pl.format("corrupt clip {}: no audio stream", "clip_id").alias("error")
    )
    return rows, failed


def _run_embed(store: MetadataStore, retry_failed: bool = False) -> IncrementCounts:
    increment = store.resolve_update("clips/embed", retry_failed=retry_failed)
    rows, failed = _compute(increment.to_compute())
    store.write("clips/embed", rows, failed=failed, run_id="run-1")
    return increment.counts


def test_failed_samples_are_recorded_held_back_and_retried(store: MetadataStore) -> None:
    store.write("clips", _clips())
    assert _run_embed(store) == IncrementCounts(new=N, stale=0, orphaned=0, failed=0)

    # 993 written, the 7 recorded with their messages and the provenance they were tried under.
    assert store.read("clips/embed").height == N - 7
    recorded = store.read_failures("clips/embed").sort("clip_id")
    assert recorded["clip_id"].to_list() == BAD
    assert recorded["error"].to_list() == [f"corrupt clip {i}: no audio stream" for i in BAD]
    assert recorded["run_id"].to_list() == ["run-1"] * 7
    expected = store.resolve_update("clips/embed", retry_failed=True).new.sort("clip_id")
    assert recorded["metaxy_provenance__audio"].to_list() == (
        expected["metaxy_provenance__audio"].to_list()
    )

    # The next increment is empty: the 7 are held back, counted as failed, with messages.
    increment = store.resolve_update("clips/embed")
    assert increment.counts == IncrementCounts(new=0, stale=0, orphaned=0, failed=7)
    assert store.count_update("clips/embed") == IncrementCounts(0, 0, 0, 7)
    failed = increment.failed.sort("clip_id")
    assert failed.columns == ["clip_id", "status", "error", "attempts", "failed_at", "run_id"]
    assert failed["status"].to_list() == ["new"] * 7
    assert failed["attempts"].to_list() == [1] * 7
    assert failed["error"][0] == "corrupt clip c0003: no audio stream"

    # Editing one failed sample's input brings back exactly that one.
    store.write("clips", _clips(edited="c0150"))
    increment = store.resolve_update("clips/embed")
    assert increment.new["clip_id"].to_list() == ["c0150"]
    assert increment.counts == IncrementCounts(new=1, stale=0, orphaned=0, failed=6)
    assert store.count_update("clips/embed") == IncrementCounts(1, 0, 0, 6)

    # retry_failed brings back all 7 (the edited one among them).
    increment = store.resolve_update("clips/embed", retry_failed=True)
    assert sorted(increment.new["clip_id"]) == BAD
    assert increment.counts == IncrementCounts(new=7, stale=0, orphaned=0, failed=0)
    assert store.count_update("clips/embed", retry_failed=True) == IncrementCounts(7, 0, 0)

    # Retried and failed again: two attempts under the same provenance, still held back.
    _run_embed(store, retry_failed=True)
    failed = store.resolve_update("clips/embed").failed.sort("clip_id")
    assert failed["attempts"].to_list() == [2, 1, 2, 2, 2, 2, 2]  # c0150 was edited
    assert store.read_failures("clips/embed").height == 14


def test_failed_samples_are_missing_upstream_for_downstream(store: MetadataStore) -> None:
    store.write("clips", _clips())
    _run_embed(store)
    # The score reads the embedding: the 7 failed clips are not new work there.
    assert store.count_update("clips/score") == IncrementCounts(new=N - 7, stale=0, orphaned=0)


def test_a_code_change_brings_failed_samples_back(store: MetadataStore) -> None:
    store.write("clips", _clips())
    _run_embed(store)
    store.graph = _graph("2")  # the step's code changed: every provenance changes
    assert store.count_update("clips/embed") == IncrementCounts(new=7, stale=N - 7, orphaned=0)


def test_a_stale_sample_that_fails_keeps_its_row_and_is_held_back(store: MetadataStore) -> None:
    store.write("clips", _clips())
    increment = store.resolve_update("clips/embed")
    store.write("clips/embed", increment.new.select("clip_id"))
    store.write("clips", _clips(edited="c0003"))
    increment = store.resolve_update("clips/embed")
    assert increment.stale["clip_id"].to_list() == ["c0003"]
    store.write(
        "clips/embed",
        increment.stale.head(0).select("clip_id"),
        failed=increment.stale.select("clip_id", error=pl.lit("decoder crashed")),
    )
    increment = store.resolve_update("clips/embed")
    assert increment.counts == IncrementCounts(new=0, stale=0, orphaned=0, failed=1)
    assert increment.failed.select("clip_id", "status", "error").rows() == [
        ("c0003", "stale", "decoder crashed")
    ]
    assert store.read("clips/embed").height == N  # its earlier row stays current


def test_counts_by_shard_and_column_leave_failed_samples_out(store: MetadataStore) -> None:
    store.write("clips", _clips())
    _run_embed(store)
    store.write("clips", _clips(edited="c0400"))
    shards = store.count_update_by_shard("clips/embed", 4)
    assert sum(s.failed for s in shards) == 6 and sum(s.new for s in shards) == 1
    for index, counts in enumerate(shards):
        whole = store.count_update("clips/embed", filter=HashShard(4, index))
        assert counts == whole
    by_group = store.count_update_by_column("clips/embed", "group", ["0", "1", "4", "9"])
    for value, counts in by_group.items():
        text = nw.col("group").cast(nw.String()) == value
        assert counts == store.count_update("clips/embed", filter=text), value
    assert by_group["0"] == IncrementCounts(new=1, stale=0, orphaned=0, failed=1)
    assert by_group["1"] == IncrementCounts(new=0, stale=0, orphaned=0, failed=1)
    assert store.count_update_by_shard("clips/embed", 4, retry_failed=True) == [
        store.count_update("clips/embed", filter=HashShard(4, i), retry_failed=True)
        for i in range(4)
    ]


def test_a_retry_policy_bounds_automatic_retries(store: MetadataStore) -> None:
    store.write("clips", _clips())
    _run_embed(store)
    now = SampleRetryPolicy(max_retries=1)
    assert store.count_update("clips/embed", retry=now) == IncrementCounts(7, 0, 0, 0)
    later = SampleRetryPolicy(max_retries=1, backoff=timedelta(hours=1))
    assert store.count_update("clips/embed", retry=later) == IncrementCounts(0, 0, 0, 7)
    increment = store.resolve_update("clips/embed", retry=now)
    store.write(
        "clips/embed", increment.new.head(0).select("clip_id"), failed=_compute(increment.new)[1]
    )
    # A second failure under the same provenance: one retry was allowed, none is left.
    assert store.count_update("clips/embed", retry=now) == IncrementCounts(0, 0, 0, 7)
    assert store.count_update("clips/embed", retry=SampleRetryPolicy(2)) == (
        IncrementCounts(7, 0, 0, 0)
    )


def test_bad_failed_frames_write_nothing(store: MetadataStore) -> None:
    store.write("clips", _clips())
    increment = store.resolve_update("clips/embed")
    rows, failed = _compute(increment.new)
    with pytest.raises(
        errors.MissingColumnError, match=r"clips/embed.*column 'error'.*Add 'error'"
    ):
        store.write("clips/embed", rows, failed=failed.drop("error"))
    with pytest.raises(errors.DuplicateIdError, match="both written and failed"):
        store.write("clips/embed", rows, failed=rows.select("clip_id", error=pl.lit("x")))
    unknown = pl.DataFrame({"clip_id": ["nope"], "error": ["x"]})
    with pytest.raises(errors.UnknownSampleError, match="not produced by its upstream"):
        store.write("clips/embed", rows, failed=unknown)
    for written in (rows, rows.head(0)):
        with pytest.raises(
            errors.ColumnTypeError,
            match=r"failed samples of 'clips/embed': column 'clip_id' has type Int64, but the "
            r"upstream rows of 'clips/embed' have it as String\. Cast 'clip_id' to String",
        ):
            failed_3 = pl.DataFrame({"clip_id": [3], "error": ["x"]})
            store.write("clips/embed", written, failed=failed_3)
    attempted = increment.new.filter(pl.col("clip_id").is_in(BAD)).select(
        "clip_id", "metaxy_provenance__audio", error=pl.lit("x")
    )
    as_text = attempted.with_columns(pl.col("metaxy_provenance__audio").cast(pl.String))
    with pytest.raises(
        errors.ColumnTypeError,
        match=r"feature 'clips/embed': column 'metaxy_provenance__audio' must hold 64-bit "
        r"integers \(Int64\)",
    ):
        store.write("clips/embed", rows, failed=as_text)
    nulls = attempted.with_columns(metaxy_provenance__audio=pl.lit(None, pl.Int64))
    with pytest.raises(errors.MissingColumnError, match=r"has 7 null value\(s\)"):
        store.write("clips/embed", rows, failed=nulls)
    assert store.read("clips/embed").height == 0
    assert store.read_failures("clips/embed").height == 0
    assert store.count_update("clips/embed").new == N  # nothing recorded broke the increment


def test_forgotten_failures_come_back_and_the_store_policy_applies(store: MetadataStore) -> None:
    store.write("clips", _clips())
    _run_embed(store)
    assert store.forget_failures("clips/embed") == 7
    assert store.count_update("clips/embed") == IncrementCounts(7, 0, 0, 0)
    assert store.read_failures("clips/embed").height == 0
    _run_embed(store)  # they fail again: one attempt since they were forgotten
    assert store.resolve_update("clips/embed").failed["attempts"].to_list() == [1] * 7
    store.sample_retry = SampleRetryPolicy(max_retries=1)
    assert store.count_update("clips/embed") == IncrementCounts(7, 0, 0, 0)
    assert store.count_update_by_shard("clips/embed", 2)[0].failed == 0


def test_a_root_sample_that_fails_is_held_back(store: MetadataStore) -> None:
    clips = _clips()
    store.write("clips", clips.slice(1), failed=clips.head(1).with_columns(error=pl.lit("bad")))
    increment = store.resolve_update("clips", samples=clips)
    assert increment.counts == IncrementCounts(new=0, stale=0, orphaned=0, failed=1)
    assert increment.failed.select("clip_id", "error").rows() == [("c0000", "bad")]
    edited = clips.with_columns(
        metaxy_data_version__audio=pl.when(pl.col("clip_id") == "c0000")
        .then(pl.lit("new"))
        .otherwise(pl.col("metaxy_data_version__audio"))
    )
    assert store.count_update("clips", samples=edited) == IncrementCounts(1, 0, 0, 0)


def test_an_expansion_records_failed_parents(store: MetadataStore) -> None:
    graph = FeatureGraph(
        [
            FeatureSpec(key="videos", id_columns=["video_id"]),
            FeatureSpec(
                key="videos/chunks",
                id_columns=["video_id", "chunk"],
                deps=[FeatureDep("videos", lineage="expansion")],
            ),
        ]
    )
    store.graph = graph
    store.write("videos", root_samples("video_id", ["v1", "v2", "v3"], default=["1", "2", "3"]))
    parents = store.resolve_update("videos/chunks").new
    assert parents["video_id"].sort().to_list() == ["v1", "v2", "v3"]
    good = parents.filter(pl.col("video_id") != "v2").select("video_id")
    chunks = good.join(pl.DataFrame({"chunk": [0, 1]}), how="cross")
    failed = parents.filter(pl.col("video_id") == "v2").select(
        "video_id", error=pl.lit("no keyframes")
    )
    assert store.write("videos/chunks", chunks, failed=failed).failed == 1
    increment = store.resolve_update("videos/chunks")
    assert increment.counts == IncrementCounts(new=0, stale=0, orphaned=0, failed=1)
    assert increment.failed.select("video_id", "error").rows() == [("v2", "no keyframes")]
    store.write("videos", root_samples("video_id", ["v1", "v2", "v3"], default=["9", "9", "3"]))
    increment = store.resolve_update("videos/chunks")
    # v1's children are stale; v2 comes back as a new parent.
    assert increment.counts == IncrementCounts(new=1, stale=2, orphaned=0, failed=0)


def test_a_field_added_after_a_failure_brings_the_sample_back(store: MetadataStore) -> None:
    store.write("clips", _clips())
    _run_embed(store)
    graph = _graph()
    embed = graph["clips/embed"].model_copy(
        update={"fields": (*graph["clips/embed"].fields, FieldSpec(key="loudness"))}
    )
    store.graph = FeatureGraph([graph["clips"], embed, graph["clips/score"]])
    counts = store.count_update("clips/embed")
    assert (counts.new, counts.failed) == (7, 0)
