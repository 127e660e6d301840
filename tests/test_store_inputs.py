"""Inputs that used to slip through: each gets a specific error (or simply works) and leaves the
store as it was, on every store and engine."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import duckdb
import polars as pl
import polars.testing
import pytest

from metaxy_core import (
    DuckDBMetadataStore,
    FeatureDep,
    FeatureGraph,
    FeatureSpec,
    FieldDep,
    FieldSpec,
    IncrementCounts,
    MetadataStore,
    errors,
    hash_string,
)
from metaxy_core.testing import STORE_KINDS, make_store, root_samples
from tests.reference import reference_graph, reference_specs

Snapshot = tuple[int, dict[str, tuple[int, pl.DataFrame]]]


@pytest.fixture(params=STORE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> MetadataStore:
    return make_store(kind, reference_graph(), tmp_path)


def _raw(ids: list[str], audio: str = "a") -> pl.DataFrame:
    return root_samples("video_id", ids, audio=[audio] * len(ids), frames=["f"] * len(ids))


def _snapshot(store: MetadataStore) -> Snapshot:
    """Everything a store holds that a test can see: every row ever written, and the write
    sequences."""
    return store.last_write_seq(), {
        spec.key: (store.last_write_seq(spec.key), store.read(spec.key, history=True))
        for spec in store.graph
    }


def _assert_unchanged(store: MetadataStore, before: Snapshot) -> None:
    after = _snapshot(store)
    assert after[0] == before[0]
    assert after[1].keys() == before[1].keys()
    for feature, (seq, rows) in before[1].items():
        assert after[1][feature][0] == seq, feature
        polars.testing.assert_frame_equal(after[1][feature][1], rows)


def _with_graph(store: MetadataStore, graph: FeatureGraph) -> MetadataStore:
    """The same stored data seen through another graph, as after a code change: a file store
    is opened again; a store living in this process takes the new graph."""
    if isinstance(store, DuckDBMetadataStore) and store.path != ":memory:":
        return DuckDBMetadataStore(graph, store.path, engine=store.engine_name)  # type: ignore[arg-type]
    store.graph = graph
    return store


def _fill(store: MetadataStore) -> None:
    """Two videos, every feature of the reference graph written."""
    store.write("video/raw", _raw(["v1", "v2"]))
    for feature in ("video/crop", "vision/faces", "audio/transcript", "train/manifest"):
        store.write(feature, store.resolve_update(feature).new)


# -- 1. an empty first write of an untyped frame ------------------------------------------------


def _untyped(*columns: str) -> pl.DataFrame:
    """What a scan of an empty folder gives: columns without rows, hence without types."""
    frame = pl.DataFrame({name: [] for name in columns})
    assert set(frame.schema.values()) == {pl.Null}
    return frame


def test_empty_untyped_first_write_fixes_no_type(store: MetadataStore) -> None:
    empty = _untyped(
        "video_id", "path", "metaxy_data_version__audio", "metaxy_data_version__frames"
    )
    result = store.write("video/raw", empty)
    assert (result.rows, result.write_seq) == (0, 1)
    assert store.read("video/raw").rows() == []
    samples = _raw(["v1", "v2"]).with_columns(path=pl.lit("/p"))
    assert store.count_update("video/raw", samples=samples) == IncrementCounts(2, 0, 0)
    assert store.resolve_update("video/raw", samples=samples).new["video_id"].sort().to_list() == [
        "v1",
        "v2",
    ]

    assert store.write("video/raw", samples).rows == 2
    assert store.write("video/raw", empty).rows == 0  # nor does a later empty write
    assert store.write("video/raw", _raw(["v3"]).with_columns(path=pl.lit("/q"))).rows == 1
    rows = store.read("video/raw", columns=["video_id", "path"]).sort("video_id")
    assert rows.rows() == [("v1", "/p"), ("v2", "/p"), ("v3", "/q")]
    assert rows.schema["path"] == pl.String
    assert store.count_update("video/raw", samples=samples) == IncrementCounts(0, 0, 1)
    assert store.last_write_seq() == 4


def test_empty_untyped_delete_and_downstream_write_fix_no_type(store: MetadataStore) -> None:
    assert store.delete("video/raw", _untyped("video_id")).rows == 0
    assert store.write("video/crop", _untyped("video_id", "size")).rows == 0
    _fill(store)
    assert store.write("video/crop", store.resolve_update("video/crop").new).rows == 0
    assert store.read("video/crop", columns=["video_id"]).sort("video_id").rows() == [
        ("v1",),
        ("v2",),
    ]
    assert store.count_update("video/crop") == IncrementCounts(0, 0, 0)


def test_a_column_that_was_all_null_takes_the_type_of_a_later_write(store: MetadataStore) -> None:
    store.write("video/raw", _raw(["v1"]).with_columns(note=pl.lit(None)))
    store.write("video/raw", _raw(["v2"]).with_columns(note=pl.lit("ok")))
    rows = store.read("video/raw", columns=["video_id", "note"]).sort("video_id")
    assert rows.rows() == [("v1", None), ("v2", "ok")]
    assert rows.schema["note"] == pl.String


# -- 2. a field added to an upstream feature ----------------------------------------------------


def _raw_with_subtitles(specs: list[FeatureSpec]) -> list[FeatureSpec]:
    raw = specs[0]
    assert raw.key == "video/raw"
    subtitles = FeatureSpec(
        key=raw.key, id_columns=raw.id_columns, fields=[*raw.fields, "subtitles"]
    )
    return [subtitles, *specs[1:]]


def test_a_field_added_upstream_leaves_fields_that_do_not_read_it_alone(
    store: MetadataStore,
) -> None:
    _fill(store)
    store = _with_graph(store, FeatureGraph(_raw_with_subtitles(reference_specs())))
    for feature in ("video/crop", "audio/transcript"):
        assert store.count_update(feature) == IncrementCounts(0, 0, 0)
        assert store.resolve_update(feature).counts == IncrementCounts(0, 0, 0)

    raw = _raw(["v1", "v2"]).with_columns(metaxy_data_version__subtitles=pl.lit("s"))
    assert store.count_update("video/raw", samples=raw) == IncrementCounts(0, 2, 0)
    store.write("video/raw", raw)
    # The upstream's sample data versions changed, but not the fields crop reads.
    assert store.count_update("video/crop") == IncrementCounts(0, 0, 0)


def test_a_field_reading_an_upstream_field_not_written_yet_says_write_upstream_first(
    store: MetadataStore,
) -> None:
    _fill(store)
    before = _snapshot(store)
    specs = _raw_with_subtitles(reference_specs())
    transcript = FeatureSpec(
        key="audio/transcript",
        id_columns=["video_id"],
        deps=["video/raw"],
        fields=[FieldSpec(key="text", deps=[FieldDep("video/raw", ["audio", "subtitles"])])],
    )
    graph = FeatureGraph([transcript if s.key == "audio/transcript" else s for s in specs])
    store = _with_graph(store, graph)
    message = (
        r"field 'text' of 'audio/transcript' reads field 'subtitles' of 'video/raw', which no "
        r"stored row of 'video/raw' has yet \(column 'metaxy_data_version__subtitles'; the field "
        r"was added after its rows were written\)\. Write 'video/raw' first: its resolve_update "
        r"lists the samples to recompute\."
    )
    with pytest.raises(errors.UpstreamFieldNotWrittenError, match=message):
        store.count_update("audio/transcript")
    with pytest.raises(errors.UpstreamFieldNotWrittenError, match=message):
        store.resolve_update("audio/transcript")
    with pytest.raises(errors.UpstreamFieldNotWrittenError, match=message):
        store.write("audio/transcript", pl.DataFrame({"video_id": ["v1"]}))
    _assert_unchanged(store, before)

    store.write(
        "video/raw", _raw(["v1", "v2"]).with_columns(metaxy_data_version__subtitles=pl.lit("s"))
    )
    assert store.count_update("audio/transcript") == IncrementCounts(0, 2, 0)


# -- 3. id columns changed on an existing store -------------------------------------------------


def _clips(ids: tuple[str, ...]) -> FeatureGraph:
    return FeatureGraph(
        [
            FeatureSpec(key="clips", id_columns=ids, fields=["audio"]),
            FeatureSpec(key="clips/embed", id_columns=ids, deps=["clips"], fields=["audio"]),
        ]
    )


def _clip_rows(*extra: str) -> pl.DataFrame:
    frame = pl.DataFrame({"clip_id": ["c1", "c2"], "metaxy_data_version__audio": ["a", "b"]})
    return frame.with_columns(pl.lit("t1").alias(name) for name in extra)


def test_changed_id_columns_are_refused_everywhere(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, _clips(("clip_id",)), tmp_path)
    store.write("clips", _clip_rows())
    store.write("clips/embed", store.resolve_update("clips/embed").new)
    before = _snapshot(store)

    store = _with_graph(store, _clips(("clip_id", "take")))
    rows = _clip_rows("take")

    def message(feature: str) -> str:
        return (
            rf"feature '{feature}' is stored with id columns \['clip_id'\], but the graph "
            r"declares id columns \['clip_id', 'take'\]\. A store keeps the id columns a feature "
            r"was first written with: declare those again, or use a new feature key \(or a new "
            r"store file\) for the new id columns\."
        )

    attempts = [
        ("clips", lambda: store.write("clips", rows)),
        ("clips", lambda: store.prepare_write("clips", rows)),
        ("clips", lambda: store.delete("clips", rows.select("clip_id", "take"))),
        ("clips", lambda: store.read("clips")),
        ("clips", lambda: store.data_version("clips")),
        ("clips", lambda: store.resolve_update("clips", samples=rows)),
        ("clips", lambda: store.count_update("clips", samples=rows)),
        ("clips/embed", lambda: store.resolve_update("clips/embed")),
        ("clips/embed", lambda: store.count_update_by_shard("clips/embed", 4)),
        ("clips/embed", lambda: store.write("clips/embed", rows.select("clip_id", "take"))),
    ]
    for feature, attempt in attempts:
        with pytest.raises(errors.IdColumnsChangedError, match=message(feature)):
            attempt()
    assert isinstance(errors.IdColumnsChangedError("x"), RuntimeError)
    store = _with_graph(store, _clips(("clip_id",)))
    _assert_unchanged(store, before)
    assert store.count_update("clips/embed") == IncrementCounts(0, 0, 0)


def test_an_upstream_with_changed_id_columns_is_refused_downstream(
    kind: str, tmp_path: Path
) -> None:
    """Only the upstream was written: resolving the downstream reads it, so it is refused."""
    store = make_store(kind, _clips(("clip_id",)), tmp_path)
    store.write("clips", _clip_rows())
    before = _snapshot(store)
    store = _with_graph(store, _clips(("clip_id", "take")))
    with pytest.raises(
        errors.IdColumnsChangedError,
        match=r"feature 'clips' is stored with id columns \['clip_id'\], but the graph declares "
        r"id columns \['clip_id', 'take'\]",
    ):
        store.count_update("clips/embed")
    store = _with_graph(store, _clips(("clip_id",)))
    _assert_unchanged(store, before)


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_store_file_without_recorded_id_columns_keeps_working(
    engine: str, tmp_path: Path
) -> None:
    """Files written before the store recorded id columns: the table is created by the next
    write, and a feature whose rows lack a declared id column is refused meanwhile."""
    path = tmp_path / "old.duckdb"
    store = DuckDBMetadataStore(_clips(("clip_id",)), path, engine=engine)  # type: ignore[arg-type]
    store.write("clips", _clip_rows())
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE metaxy_id_columns")
    con.close()
    before = _snapshot(store)

    changed = DuckDBMetadataStore(_clips(("clip_id", "take")), path, engine=engine)  # type: ignore[arg-type]
    with pytest.raises(
        errors.IdColumnsChangedError,
        match=r"feature 'clips' is stored with rows without id column 'take', but the graph "
        r"declares id columns \['clip_id', 'take'\]\. A store keeps",
    ):
        changed.write("clips", _clip_rows("take"))
    _assert_unchanged(store, before)

    assert store.count_update("clips", samples=_clip_rows()) == IncrementCounts(0, 0, 0)
    store.write("clips/embed", store.resolve_update("clips/embed").new)
    con = duckdb.connect(str(path))
    assert con.sql("SELECT * FROM metaxy_id_columns").fetchall() == [("clips/embed", ["clip_id"])]
    con.close()


# -- 4. unknown metaxy_ columns -----------------------------------------------------------------


def test_a_misspelt_data_version_column_is_refused(store: MetadataStore) -> None:
    _fill(store)
    before = _snapshot(store)
    with pytest.raises(
        errors.UnknownColumnError,
        match=r"feature 'video/raw': column 'metaxy_data_version__audoi' names no field or "
        r"dependency of 'video/raw' \(fields: audio, frames; dependencies: none\), so its "
        r"values would be lost\. Did you mean 'metaxy_data_version__audio'\? Rename it to "
        r"metaxy_data_version__<field> or "
        r"metaxy_provenance__<field> for one of those fields, or drop it: columns starting with "
        r"'metaxy_' are metaxy's own\.",
    ):
        store.write("video/raw", _raw(["v1"]).with_columns(metaxy_data_version__audoi=pl.lit("x")))
    with pytest.raises(errors.UnknownColumnError, match=r"column 'metaxy_data_version__audoi'"):
        store.resolve_update(
            "video/raw", samples=_raw(["v1"]).with_columns(metaxy_data_version__audoi=pl.lit("x"))
        )
    crop = store.read("video/crop").with_columns(metaxy_data_version__frams=pl.lit("same"))
    with pytest.raises(
        errors.UnknownColumnError,
        match=r"feature 'video/crop': column 'metaxy_data_version__frams' names no field or "
        r"dependency of 'video/crop' \(fields: audio, frames; dependencies: video/raw\)",
    ):
        store.write("video/crop", crop)
    _assert_unchanged(store, before)


@pytest.mark.parametrize(
    ("column", "why"),
    [
        (pl.Series("blob", [{1}, {2}], dtype=pl.Object), "it holds Python objects"),
        (pl.Series("blob", [1, 2], dtype=pl.Int128), "Arrow has no 128-bit integers"),
    ],
)
def test_columns_no_store_can_hold_are_refused(column: pl.Series, why: str, tmp_path: Path) -> None:
    store = make_store("duckdb-file-sql", reference_graph(), tmp_path)
    _fill(store)
    before = _snapshot(store)
    with pytest.raises(
        errors.ColumnTypeError,
        match=rf"feature 'video/raw': column 'blob' has type {re.escape(str(column.dtype))}, "
        rf"which no store can hold \({why}.*\)\. Convert 'blob' to a column type",
    ):
        store.write("video/raw", _raw(["v1", "v2"]).with_columns(column))
    _assert_unchanged(store, before)
    with pytest.raises(errors.ColumnTypeError, match=r"id column 'video_id' has type Int128"):
        store.write("video/raw", _raw(["v1"]).with_columns(pl.lit(1, pl.Int128).alias("video_id")))


def test_column_names_that_differ_only_in_case_are_refused(store: MetadataStore) -> None:
    _fill(store)
    store.write("video/raw", _raw(["v1"]).with_columns(score=pl.lit(1)))
    before = _snapshot(store)
    with pytest.raises(
        errors.DuplicateColumnError,
        match=r"feature 'video/raw': columns 'video_id' and 'Video_ID' differ only in case; "
        r"stores resolve column names without case",
    ):
        store.write("video/raw", _raw(["v1"]).with_columns(Video_ID=pl.lit("x")))
    with pytest.raises(
        errors.DuplicateColumnError,
        match=r"columns 'metaxy_data_version__audio' and 'METAXY_DATA_VERSION__AUDIO' differ",
    ):
        store.write("video/raw", _raw(["v1"]).with_columns(METAXY_DATA_VERSION__AUDIO=pl.lit("z")))
    with pytest.raises(
        errors.DuplicateColumnError,
        match=r"feature 'video/raw': column 'Score' differs only in case from the stored column "
        r"'score'; stores resolve column names without case\. Rename 'Score' to 'score'",
    ):
        store.write("video/raw", _raw(["v2"]).with_columns(Score=pl.lit(2)))
    _assert_unchanged(store, before)
    store.write("video/raw", _raw(["v2"]).with_columns(score=pl.lit(2)))  # the stored name works
    assert store.read("video/raw").sort("video_id").get_column("score").to_list()[:2] == [1, 2]


def test_null_provenance_is_refused(store: MetadataStore) -> None:
    store.write("video/raw", _raw(["v1", "v2"]))
    new = store.resolve_update("video/crop").new
    before = _snapshot(store)
    with pytest.raises(
        errors.MissingColumnError,
        match=r"feature 'video/crop': column 'metaxy_provenance__audio' has 1 null value\(s\); "
        r"a sample's provenance says what it was computed from",
    ):
        store.write(
            "video/crop",
            new.with_columns(
                metaxy_provenance__audio=pl.when(pl.col("video_id") == "v1")
                .then(None)
                .otherwise(pl.col("metaxy_provenance__audio"))
            ),
        )
    _assert_unchanged(store, before)


def test_frames_that_do_not_convert_and_deletes_without_ids_name_the_problem() -> None:
    store = make_store("memory", reference_graph(), None)
    mixed = _raw(["v1", "v2"]).to_pandas()
    mixed["video_id"] = ["v1", 2]
    with pytest.raises(
        errors.ColumnTypeError,
        match=r"write of 'video/raw': the frame cannot be converted to Polars \((ArrowTypeError|"
        r"TypeError): ",
    ):
        store.write("video/raw", mixed)
    with pytest.raises(
        errors.MissingColumnError,
        match=r"feature 'video/raw': id column 'video_id' is missing; the frame has columns: vid",
    ):
        store.delete("video/raw", pl.DataFrame({"vid": ["v1"]}))
    assert store.last_write_seq() == 0
    batch = _raw(["v1"]).to_arrow().to_batches()[0]  # an Arrow record batch is a frame too
    assert store.write("video/raw", batch).rows == 1


@pytest.mark.parametrize(
    "column",
    ["metaxy_provenance__nope", "metaxy_upstream_data_version__video__other", "metaxy_size"],
)
def test_other_unknown_metaxy_columns_are_refused(store: MetadataStore, column: str) -> None:
    _fill(store)
    before = _snapshot(store)
    increment = store.resolve_update("video/crop")
    rows = store.read("video/crop").with_columns(pl.lit("x").alias(column))
    with pytest.raises(
        errors.UnknownColumnError, match=rf"feature 'video/crop': column '{column}'"
    ):
        store.write("video/crop", rows)
    _assert_unchanged(store, before)
    # What a read or an increment holds is known, and written without complaint.
    assert increment.new.height == 0
    assert store.write("video/crop", store.read("video/crop")).rows == 2


# -- 5. an id column named like metaxy's own columns --------------------------------------------


@pytest.mark.parametrize(("column", "hint"), [("metaxy_id", "id"), ("__metaxy_status", "status")])
def test_an_id_column_named_like_system_columns_is_refused_when_declared(
    store: MetadataStore, column: str, hint: str
) -> None:
    _fill(store)
    before = _snapshot(store)
    with pytest.raises(
        errors.ReservedColumnError,
        match=rf"feature 'clips': id column '{column}' starts with 'metaxy_' or '__metaxy_', "
        rf"which name metaxy's own columns\. Rename the column in your data, e\.g\. '{hint}'\.",
    ):
        FeatureSpec(key="clips", id_columns=["clip_id", column])
    assert issubclass(errors.ReservedColumnError, errors.GraphError)
    _assert_unchanged(store, before)


def test_a_passed_through_column_named_like_working_columns_is_refused() -> None:
    with pytest.raises(
        errors.DependencyError,
        match=r"rename= of the dependency on 'video/raw': '__metaxy_status' is not a user column "
        r"name: use a non-empty string that does not start with 'metaxy_' or '__metaxy_'",
    ):
        FeatureDep("video/raw", rename={"path": "__metaxy_status"})


# -- 6. a file that is not a store, a path that cannot be one ------------------------------------


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_file_that_is_not_a_database_is_refused_and_left_alone(
    engine: str, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n")
    store = DuckDBMetadataStore(reference_graph(), path, engine=engine)  # type: ignore[arg-type]
    message = (
        rf"store '{path}' is not a DuckDB database file \(.*\); it was left as it is\. Pass the "
        r"path of a store file metaxy wrote, or a new path to start a store\."
    )
    with pytest.raises(errors.StoreFormatError, match=message):
        store.read("video/raw")
    with pytest.raises(errors.StoreFormatError, match=message):
        store.write("video/raw", _raw(["v1"]))
    assert path.read_text() == "not a database\n"


def test_a_sqlite_file_is_refused_without_loading_an_extension(tmp_path: Path) -> None:
    # DuckDB would open it with its SQLite extension, installed (a download) on first use.
    path = tmp_path / "meta.db"
    with contextlib.closing(sqlite3.connect(path)) as sqlite:
        sqlite.execute("CREATE TABLE t (x)")
        sqlite.commit()
    content = path.read_bytes()
    with pytest.raises(
        errors.StoreFormatError,
        match=rf"store '{path}' is not a DuckDB database file \(its header is not DuckDB's\)",
    ):
        DuckDBMetadataStore(reference_graph(), path).read("video/raw")
    assert path.read_bytes() == content
    with pytest.raises(errors.StorePathError, match=r"store path '/dev/null' is not a regular"):
        DuckDBMetadataStore(reference_graph(), "/dev/null")


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_path_that_cannot_be_a_file_is_refused(engine: str, tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file\n")
    with pytest.raises(
        errors.StorePathError,
        match=rf"store path '{blocker}/stores/s\.duckdb' is under '{blocker}', which is a file, "
        r"not a directory: a store is one DuckDB file\. Pass the path of a file in a directory "
        r"\(created if missing\), e\.g\. 'data/metaxy\.duckdb'\.",
    ):
        DuckDBMetadataStore(reference_graph(), blocker / "stores" / "s.duckdb", engine=engine)  # type: ignore[arg-type]
    with pytest.raises(errors.StorePathError, match=rf"store path '{tmp_path}' is a directory"):
        DuckDBMetadataStore(reference_graph(), tmp_path, engine=engine)  # type: ignore[arg-type]
    assert isinstance(errors.StorePathError("x"), OSError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert blocker.read_text() == "a file\n"


# -- 7. history of some columns ----------------------------------------------------------------


def test_read_history_of_some_columns(store: MetadataStore) -> None:
    store.write("video/raw", _raw(["v2", "v1"], audio="old"))
    store.write("video/raw", _raw(["v2"], audio="new"))
    store.delete("video/raw", pl.DataFrame({"video_id": ["v1"]}))
    history = store.read("video/raw", history=True, columns=["metaxy_data_version__audio"])
    assert history.columns == ["metaxy_data_version__audio"]
    # Text data versions are stored as their hash (docs/concepts.md, "Storage format").
    old, new = hash_string("old"), hash_string("new")
    assert history.rows() == [(old,), (old,), (new,), (None,)]
    both = store.read("video/raw", history=True, columns=["video_id", "metaxy_deleted"])
    assert both.rows() == [("v2", False), ("v1", False), ("v2", False), ("v1", True)]


# -- 8. arguments that used to be ignored ----------------------------------------------------------


def test_ignored_arguments_are_refused() -> None:
    with pytest.raises(
        TypeError, match=r"^FeatureGraph takes FeatureSpec objects; item 1 is a dict \(\{'key'"
    ):
        FeatureGraph([reference_specs()[0], {"key": "a", "id_columns": ["id"]}])  # type: ignore[list-item]
    graph = FeatureGraph(
        [
            reference_specs()[0],
            FeatureSpec(
                key="video/thumb",
                id_columns=["video_id"],
                deps=[FeatureDep("video/raw", rename={"pth": "thumb_path"})],
            ),
        ]
    )
    store = make_store("memory", graph)
    store.write("video/raw", _raw(["v1"]).with_columns(path=pl.lit("/v1.mp4")))
    with pytest.raises(
        errors.DependencyError,
        match=r"^feature 'video/thumb' renames 'pth' of 'video/raw', which it does not pass "
        r"through; the columns it passes through are: path\. Rename one of those",
    ):
        store.resolve_update("video/thumb")
    with pytest.raises(
        ValueError,
        match=r"^'video/thumb' is not a root feature: its samples come from its upstream "
        r"\(video/raw\), so samples= would be ignored\. Call it without samples=",
    ):
        store.count_update("video/thumb", samples=_raw(["v1"]))


def test_root_samples_with_ids_of_another_kind_than_stored_are_refused(
    store: MetadataStore, kind: str
) -> None:
    store.write("video/raw", _raw(["1", "2"]))
    as_numbers = _raw(["1", "2"]).with_columns(pl.col("video_id").cast(pl.Int64))
    with pytest.raises(
        errors.ColumnTypeError,
        match=r"^samples of 'video/raw': id column 'video_id' has type \S+, but the store holds "
        r"it as \S+\. Cast 'video_id' in samples= to the type its rows were written with\.$",
    ):
        store.count_update("video/raw", samples=as_numbers)
    if kind == "clickhouse":  # takes no categorical samples at all (docs/clickhouse.md)
        return
    categorical = _raw(["1", "3"]).with_columns(pl.col("video_id").cast(pl.Categorical))
    assert store.count_update("video/raw", samples=categorical) == IncrementCounts(1, 0, 1)
