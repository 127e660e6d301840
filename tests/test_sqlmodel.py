"""Features declared as SQLModel classes: the reference graph's crop feature, written and read
back as instances, and wrong types refused before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest
import sqlalchemy
from sqlmodel import Field, Session, SQLModel, select

from metaxy_core import DuckDBMetadataStore, FeatureGraph, columns, errors
from metaxy_core.integrations.sqlmodel import (
    FeatureOptions,
    feature_spec,
    model_schema,
    read_models,
    validate_rows,
    write_models,
)
from tests.reference import reference_graph, reference_specs

IDS = [f"v{i}" for i in range(3)]


class VideoRaw(SQLModel):
    """Videos as found on disk."""

    __metaxy__: ClassVar[FeatureOptions] = {"key": "video/raw", "fields": ["audio", "frames"]}
    video_id: str = Field(primary_key=True)
    path: str


class VideoCrop(SQLModel, table=True):
    """Center-cropped frames and the first half second of audio of each video."""

    __tablename__ = "reference_video_crop"
    __metaxy__: ClassVar[FeatureOptions] = {
        "key": "video/crop",
        "deps": ["video/raw"],
        "fields": ["audio", "frames"],
    }
    video_id: str = Field(primary_key=True)
    crop_path: str
    n_frames: int
    sharpness: float | None = None
    labels: list[str] = Field(default_factory=list, sa_type=sqlalchemy.JSON)


def graph() -> FeatureGraph:
    """The reference graph with video/raw and video/crop declared by the classes."""
    classes = {"video/raw": VideoRaw, "video/crop": VideoCrop}
    return FeatureGraph(
        [feature_spec(classes[s.key]) if s.key in classes else s for s in reference_specs()]
    )


def crops() -> list[VideoCrop]:
    return [
        VideoCrop(video_id="v0", crop_path="/c/v0.npy", n_frames=8, labels=["face"]),
        VideoCrop(video_id="v1", crop_path="/c/v1.npy", n_frames=4, sharpness=0.5),
        VideoCrop(video_id="v2", crop_path="/c/v2.npy", n_frames=0, labels=["a", "b"]),
    ]


@pytest.fixture
def store(tmp_path: Path) -> DuckDBMetadataStore:
    store = DuckDBMetadataStore(graph(), tmp_path / "metaxy.duckdb")
    raw = pl.DataFrame(
        {
            "video_id": IDS,
            "path": [f"/raw/{i}.mp4" for i in IDS],
            columns.data_version_column("audio"): ["a0", "a1", "a2"],
            columns.data_version_column("frames"): ["f0", "f1", "f2"],
        }
    )
    assert write_models(store, VideoRaw, raw).rows == 3
    return store


def test_the_class_declares_the_reference_crop_feature() -> None:
    spec = feature_spec(VideoCrop)
    assert spec.key == "video/crop"
    assert spec.id_columns == ("video_id",)
    assert [f.key for f in spec.fields] == ["audio", "frames"]
    assert [d.feature for d in spec.deps] == ["video/raw"]
    assert spec.description == (
        "Center-cropped frames and the first half second of audio of each video."
    )
    # The same feature as the reference graph's: the same versions, field by field.
    assert graph().versions == reference_graph().versions
    assert model_schema(VideoCrop) == {
        "video_id": pl.String,
        "crop_path": pl.String,
        "n_frames": pl.Int64,
        "sharpness": pl.Float64,
        "labels": pl.List(pl.String),
    }


def test_instances_written_and_read_back(store: DuckDBMetadataStore) -> None:
    assert store.count_update("video/crop").new == 3
    result = write_models(store, VideoCrop, crops(), run_id="r1")
    assert (result.feature, result.rows) == ("video/crop", 3)

    read = read_models(store, VideoCrop)
    assert all(isinstance(m, VideoCrop) for m in read)
    assert [m.model_dump() for m in read] == [m.model_dump() for m in crops()]
    # Written with full provenance: nothing left to compute.
    assert store.count_update("video/crop").total == 0
    assert store.read("video/crop").get_column(columns.RUN_ID).to_list() == ["r1"] * 3
    assert [m.video_id for m in read_models(store, VideoRaw)] == IDS


def test_read_instances_are_sqlmodel_rows(store: DuckDBMetadataStore) -> None:
    write_models(store, VideoCrop, crops())
    engine = sqlalchemy.create_engine("sqlite://")
    SQLModel.metadata.create_all(engine, tables=[VideoCrop.__table__])  # type: ignore[attr-defined]
    try:
        with Session(engine) as session:
            session.add_all(read_models(store, VideoCrop))
            session.commit()
            found = session.exec(select(VideoCrop).where(VideoCrop.n_frames > 0)).all()
            assert sorted(m.video_id for m in found) == ["v0", "v1"]
    finally:
        engine.dispose()  # closes the pooled SQLite connection (else a ResourceWarning at GC)


def test_a_frame_of_the_wrong_type_is_refused(store: DuckDBMetadataStore) -> None:
    frame = pl.DataFrame(
        {
            "video_id": IDS,
            "crop_path": ["/c/a", "/c/b", "/c/c"],
            "n_frames": ["8", "4", "0"],
            "sharpness": [None, None, None],
            "labels": [[], [], []],
        },
        schema_overrides={"labels": pl.List(pl.String)},
    )
    with pytest.raises(
        errors.ColumnTypeError,
        match=r"^feature 'video/crop': column 'n_frames' has type String, but VideoCrop "
        r"declares it int \(Int64\)\. Cast it, e\.g\. pl\.col\('n_frames'\)\.cast\(pl\.Int64\)",
    ):
        write_models(store, VideoCrop, frame)
    with pytest.raises(errors.ColumnTypeError, match=r"column 'n_frames' holds 1 null\(s\)"):
        validate_rows(VideoCrop, frame.with_columns(n_frames=pl.Series([8, None, 0])))
    with pytest.raises(errors.MissingColumnError, match=r"column 'crop_path' of VideoCrop is"):
        validate_rows(VideoCrop, frame.drop("crop_path"))
    assert store.read("video/crop").is_empty()  # nothing written


def test_an_instance_of_the_wrong_type_is_refused(store: DuckDBMetadataStore) -> None:
    # A SQLModel table class does not validate on construction: the write does.
    wrong = VideoCrop(video_id="v1", crop_path="/c/v1.npy", n_frames="eight")  # type: ignore[arg-type]
    with pytest.raises(
        errors.ColumnTypeError,
        match=r"^feature 'video/crop': column 'n_frames' of row 1 .* is refused by VideoCrop: "
        r"Input should be a valid integer",
    ):
        write_models(store, VideoCrop, [crops()[0], wrong])
    assert store.read("video/crop").is_empty()


def test_a_class_without_ids_or_key_is_refused() -> None:
    class NoIds(SQLModel):
        __metaxy__: ClassVar[FeatureOptions] = {"key": "video/raw"}
        path: str

    class NoKey(SQLModel):
        video_id: str = Field(primary_key=True)

    class Untyped(SQLModel):
        __metaxy__: ClassVar[FeatureOptions] = {"key": "video/raw"}
        video_id: str = Field(primary_key=True)
        shape: tuple[int, int]

    with pytest.raises(errors.EmptyIdColumnsError, match=r"NoIds\) has no id column: mark"):
        feature_spec(NoIds)
    with pytest.raises(TypeError, match=r"^NoKey has no __metaxy__ naming its feature"):
        feature_spec(NoKey)
    with pytest.raises(errors.ColumnTypeError, match=r"column 'shape' of Untyped is typed"):
        feature_spec(Untyped)
