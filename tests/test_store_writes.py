"""Writing to a store: history, current rows, soft delete, and bad input that writes nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from metaxy_core import DuckDBMetadataStore, MetadataStore, errors, hash_string
from metaxy_core.testing import STORE_KINDS, make_store, root_samples
from tests.reference import reference_graph


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    return make_store(str(request.param), reference_graph(), tmp_path)


def _raw(ids: list[str], audio: str = "a") -> pl.DataFrame:
    return root_samples("video_id", ids, audio=[audio] * len(ids), frames=["f"] * len(ids))


def test_write_adds_every_system_column(store: MetadataStore) -> None:
    result = store.write(
        "video/raw", _raw(["v1", "v2"]).with_columns(path=pl.lit("/p")), run_id="r1"
    )
    assert (result.rows, result.write_seq) == (2, 1)
    rows = store.read("video/raw").sort("video_id")
    assert rows.columns == [
        "video_id", "path",
        "metaxy_provenance__audio", "metaxy_provenance__frames",
        "metaxy_data_version__audio", "metaxy_data_version__frames",
        "metaxy_provenance", "metaxy_data_version", "metaxy_feature_version",
        "metaxy_graph_version", "metaxy_run_id", "metaxy_written_at", "metaxy_deleted",
        "metaxy_write_seq",
    ]  # fmt: skip
    graph = reference_graph()
    assert rows["metaxy_feature_version"].to_list() == [graph.versions.features["video/raw"]] * 2
    assert rows["metaxy_graph_version"].to_list() == [graph.versions.graph] * 2
    assert rows["metaxy_run_id"].to_list() == ["r1", "r1"]
    # A data version given as text is stored as the hash of the text.
    assert rows["metaxy_data_version__audio"].to_list() == [hash_string("a")] * 2
    hashes = rows.columns[2:8]
    assert hashes[0] == "metaxy_provenance__audio" and hashes[-1] == "metaxy_data_version"
    assert [rows.schema[n] for n in hashes] == [pl.Int64] * 6


def test_integer_data_versions_are_stored_as_they_are(store: MetadataStore) -> None:
    frame = _raw(["v1", "v2"]).with_columns(
        metaxy_data_version__audio=pl.Series([2**63 - 1, 2**63], dtype=pl.UInt64),
        metaxy_data_version__frames=pl.Series([-5, 7], dtype=pl.Int32),
    )
    store.write("video/raw", frame)
    rows = store.read("video/raw").sort("video_id")
    # UInt64 keeps its bits (an unsigned digest), other integers their value.
    assert rows["metaxy_data_version__audio"].to_list() == [2**63 - 1, -(2**63)]
    assert rows["metaxy_data_version__frames"].to_list() == [-5, 7]
    assert store.count_update("video/raw", samples=frame).total == 0
    changed = frame.with_columns(metaxy_data_version__frames=pl.Series([-5, 8], dtype=pl.Int64))
    assert store.resolve_update("video/raw", samples=changed).stale["video_id"].to_list() == ["v2"]


def test_latest_write_is_current_and_history_keeps_all(store: MetadataStore) -> None:
    store.write("video/raw", _raw(["v1", "v2"], audio="old"))
    store.write("video/raw", _raw(["v2"], audio="new"))
    current = store.read("video/raw").sort("video_id")
    assert current["metaxy_data_version__audio"].to_list() == [
        hash_string("old"),
        hash_string("new"),
    ]
    assert current["metaxy_write_seq"].to_list() == [1, 2]
    history = store.read("video/raw", history=True)
    assert history.select("video_id", "metaxy_write_seq").rows() == [
        ("v1", 1),
        ("v2", 1),
        ("v2", 2),
    ]
    assert store.last_write_seq() == 2


def test_soft_delete_appends_a_tombstone(store: MetadataStore) -> None:
    store.write("video/raw", _raw(["v1", "v2"]))
    result = store.delete("video/raw", pl.DataFrame({"video_id": ["v1"]}))
    assert (result.rows, result.write_seq) == (1, 2)
    assert store.read("video/raw")["video_id"].to_list() == ["v2"]
    history = store.read("video/raw", history=True)
    assert history.select("video_id", "metaxy_deleted").rows() == [
        ("v1", False), ("v2", False), ("v1", True),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "convert", [pl.DataFrame.to_pandas, pl.DataFrame.to_arrow, pl.DataFrame.lazy]
)
def test_accepts_pandas_arrow_and_lazy_frames(store: MetadataStore, convert: object) -> None:
    frame = convert(_raw(["v1"]))  # type: ignore[operator]
    assert isinstance(frame, (pd.DataFrame, pa.Table, pl.LazyFrame))
    assert store.write("video/raw", frame).rows == 1


def _assert_nothing_written(store: MetadataStore) -> None:
    assert store.last_write_seq() == 0
    assert store.read("video/raw").height == 0


BAD_ROOT_WRITES = [
    (
        pl.DataFrame(
            {
                "id": ["v1"],
                "metaxy_data_version__audio": ["a"],
                "metaxy_data_version__frames": ["f"],
            }
        ),
        errors.MissingColumnError,
        r"feature 'video/raw': id column 'video_id' is missing; the frame has columns: id, "
        r"metaxy_data_version__audio, metaxy_data_version__frames\. Add 'video_id'",
    ),
    (
        _raw(["v1", None]),  # type: ignore[list-item]
        errors.NullIdError,
        r"feature 'video/raw': id column 'video_id' has 1 null value\(s\)",
    ),
    (
        _raw(["v1", "v2", "v1"]),
        errors.DuplicateIdError,
        r"feature 'video/raw': 1 sample\(s\) appear more than once in id columns \['video_id'\], "
        r"e.g. \{'video_id': 'v1'\}\. Write each sample once",
    ),
    (
        _raw(["v1"]).drop("metaxy_data_version__frames"),
        errors.MissingDataVersionError,
        r"root feature 'video/raw': column 'metaxy_data_version__frames' \(the data version of "
        r"field 'frames'\) is missing",
    ),
    (
        _raw(["v1"]).with_columns(metaxy_data_version__audio=pl.lit(5.0)),
        errors.ColumnTypeError,
        r"feature 'video/raw': column 'metaxy_data_version__audio' must hold strings or "
        r"integers, got Float64\. Cast it to a string \(e\.g\. a hex digest of the content\) or "
        r"to an integer\.",
    ),
]


@pytest.mark.parametrize(("frame", "error", "message"), BAD_ROOT_WRITES)
def test_bad_root_write_raises_and_writes_nothing(
    store: MetadataStore, frame: pl.DataFrame, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.write("video/raw", frame)
    _assert_nothing_written(store)


def test_wrong_type_against_stored_table(store: MetadataStore) -> None:
    store.write("video/raw", _raw(["v1"]).with_columns(size=pl.lit(1)))
    bad = _raw(["v2"]).with_columns(size=pl.lit("big"))
    with pytest.raises(
        errors.ColumnTypeError, match=r"feature 'video/raw': column 'size' has type"
    ):
        store.write("video/raw", bad)
    assert store.last_write_seq() == 1
    assert store.read("video/raw")["video_id"].to_list() == ["v1"]


def test_unknown_feature(store: MetadataStore) -> None:
    with pytest.raises(
        errors.FeatureNotFoundError,
        match=r"feature 'video/nope' is not in the store's graph; known features: video/raw, "
        r"audio/transcript, video/crop, vision/faces, train/manifest\.",
    ):
        store.write("video/nope", _raw(["v1"]))
    _assert_nothing_written(store)


def test_unknown_sample_downstream(store: MetadataStore) -> None:
    store.write("video/raw", _raw(["v1"]))
    with pytest.raises(
        errors.UnknownSampleError,
        match=r"cannot write 'video/crop': 1 sample\(s\) are not produced by its upstream "
        r"\(video/raw\), e\.g\. \{'video_id': 'zz'\}",
    ):
        store.write("video/crop", pl.DataFrame({"video_id": ["v1", "zz"]}))
    assert store.last_write_seq() == 1
    assert store.read("video/crop").height == 0


def test_root_resolve_needs_samples(store: MetadataStore) -> None:
    with pytest.raises(ValueError, match=r"'video/raw' is a root feature: pass samples="):
        store.resolve_update("video/raw")


def test_data_version_override_stops_propagation(store: MetadataStore) -> None:
    """A recompute that yields identical content (same data version) leaves downstream fresh."""
    store.write("video/raw", _raw(["v1"]))
    inc = store.resolve_update("video/crop")
    store.write("video/crop", inc.new.with_columns(metaxy_data_version__frames=pl.lit("same")))
    store.write("vision/faces", store.resolve_update("vision/faces").new)
    store.write("video/raw", _raw(["v1"]).with_columns(metaxy_data_version__frames=pl.lit("f2")))
    crop = store.resolve_update("video/crop")
    assert crop.stale["metaxy_changed_fields"].to_list() == [["frames"]]
    store.write(
        "video/crop",
        crop.stale.drop("metaxy_changed_fields", "metaxy_stale_reason").with_columns(
            metaxy_data_version__frames=pl.lit("same")
        ),
    )
    assert store.count_update("vision/faces").total == 0


def test_store_refuses_another_format(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    DuckDBMetadataStore(reference_graph(), path).write("video/raw", _raw(["v1"]))
    con = duckdb.connect(str(path))
    con.execute("UPDATE metaxy_store_info SET value = 'md5' WHERE key = 'hash_algorithm'")
    con.close()
    with pytest.raises(
        errors.StoreFormatError,
        match=r"was written with hash_algorithm 'md5', but this metaxy uses "
        r"'xxhash64-seed42-int64'\. Open it with the metaxy version that wrote it",
    ):
        DuckDBMetadataStore(reference_graph(), path).read("video/raw")


def test_store_refuses_a_store_of_hex_hashes(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    DuckDBMetadataStore(reference_graph(), path).write("video/raw", _raw(["v1"]))
    con = duckdb.connect(str(path))
    con.execute("UPDATE metaxy_store_info SET value = '1' WHERE key = 'format_version'")
    con.close()
    with pytest.raises(
        errors.StoreFormatError,
        match=r"was written with format_version '1', but this metaxy uses '2' \(its hashes are "
        r"16-character hex strings; this metaxy stores signed 64-bit integers\)\. Open it with "
        r"the metaxy version that wrote it, or start a new store file and write the root "
        r"features again\.",
    ):
        DuckDBMetadataStore(reference_graph(), path).read("video/raw")
