"""The example project's data side: synthetic clips, edits, and the per-clip steps."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xxhash

from example_project.compute import (
    CROP_SIZE,
    audio_features,
    build_manifest,
    crop,
    detect_faces,
    output_dir,
    transcribe,
)
from example_project.edit import add_clips, edit_audio, edit_frames, main, remove_clips
from example_project.media import (
    DATA_DIR_ENV,
    FACE_SIZE,
    FRAME_SHAPE,
    SAMPLE_RATE,
    TONE_BASE_HZ,
    TONE_STEP_HZ,
    VOCABULARY,
    content_hash,
    default_data_dir,
    generate_clips,
    list_clips,
    scan_clips,
)

HEX16 = re.compile(r"[0-9a-f]{16}")
FIVE = [f"clip-000{i}" for i in range(5)]
COLUMNS = [
    "clip_id",
    "audio_path",
    "frames_path",
    "metaxy_data_version__audio",
    "metaxy_data_version__frames",
]


def _hashes(data_dir: Path, field: str) -> dict[str, str]:
    df = scan_clips(data_dir)
    return dict(zip(df["clip_id"], df[f"metaxy_data_version__{field}"], strict=True))


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(cid for cid in before if after.get(cid) != before[cid])


def _raw(data_dir: Path, cid: str) -> tuple[Path, Path]:
    folder = data_dir / "clips" / cid
    return folder / "audio.wav", folder / "frames.npy"


@pytest.fixture
def five(tmp_path: Path) -> Path:
    """A data directory with clips clip-0000 .. clip-0004."""
    assert generate_clips(tmp_path, 5) == FIVE
    return tmp_path


# --- generation and scanning --------------------------------------------------------------


def test_generate_writes_one_folder_per_clip_with_both_files(five: Path) -> None:
    folders = sorted(p.name for p in (five / "clips").iterdir())
    assert folders == FIVE
    for cid in FIVE:
        audio, frames = _raw(five, cid)
        with wave.open(str(audio), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16_000)
            assert wav.getnframes() == SAMPLE_RATE
        array = np.load(frames)
        assert array.shape == FRAME_SHAPE == (8, 32, 32, 3)
        assert array.dtype == np.uint8
        # Exactly one bright FACE_SIZE x FACE_SIZE square per frame.
        bright = (array >= 230).all(axis=-1).sum(axis=(1, 2))
        assert bright.tolist() == [FACE_SIZE * FACE_SIZE] * 8
    assert list_clips(five) == FIVE


def test_clips_differ_from_each_other(five: Path) -> None:
    df = scan_clips(five)
    assert df["metaxy_data_version__audio"].n_unique() == 5
    assert df["metaxy_data_version__frames"].n_unique() == 5


def test_scan_clips_is_the_root_feature_frame(five: Path) -> None:
    df = scan_clips(five)
    assert df.columns == COLUMNS
    assert all(dtype == pl.String for dtype in df.dtypes)
    assert df["clip_id"].to_list() == FIVE
    for row in df.iter_rows(named=True):
        audio, frames = _raw(five, row["clip_id"])
        assert Path(row["audio_path"]) == audio.resolve()
        assert Path(row["frames_path"]) == frames.resolve()
        assert Path(row["audio_path"]).is_absolute()
        for field, path in (("audio", audio), ("frames", frames)):
            digest = row[f"metaxy_data_version__{field}"]
            assert HEX16.fullmatch(digest)
            assert digest == content_hash(path) == xxhash.xxh64_hexdigest(path.read_bytes(), 42)


def test_scan_of_a_missing_or_empty_dir_is_empty_with_the_schema(tmp_path: Path) -> None:
    df = scan_clips(tmp_path / "nowhere")
    assert df.height == 0
    assert df.columns == COLUMNS
    assert list_clips(tmp_path) == []


def test_regenerating_is_idempotent_and_deterministic(five: Path, tmp_path: Path) -> None:
    before = scan_clips(five)
    assert generate_clips(five, 5) == []
    assert scan_clips(five).equals(before)
    # Another directory gets byte-identical clips.
    other = tmp_path / "other"
    assert generate_clips(other, 5) == FIVE
    again = scan_clips(other).drop("audio_path", "frames_path")
    assert again.equals(before.drop("audio_path", "frames_path"))


def test_generate_fills_in_a_missing_file(five: Path) -> None:
    before = scan_clips(five)
    _raw(five, "clip-0003")[1].unlink()
    assert list_clips(five) == ["clip-0000", "clip-0001", "clip-0002", "clip-0004"]
    assert generate_clips(five, 5) == ["clip-0003"]
    assert scan_clips(five).equals(before)


def test_generate_with_start(tmp_path: Path) -> None:
    assert generate_clips(tmp_path, 2, start=10) == ["clip-0010", "clip-0011"]
    assert list_clips(tmp_path) == ["clip-0010", "clip-0011"]
    with pytest.raises(ValueError, match="count"):
        generate_clips(tmp_path, -1)


# --- edits --------------------------------------------------------------------------------


def test_edit_audio_changes_only_the_audio_of_the_first_clips(five: Path) -> None:
    audio, frames = _hashes(five, "audio"), _hashes(five, "frames")
    assert edit_audio(2, five) == ["clip-0000", "clip-0001"]
    assert _changed(audio, _hashes(five, "audio")) == ["clip-0000", "clip-0001"]
    assert _changed(frames, _hashes(five, "frames")) == []


def test_repeated_edits_keep_changing_content(five: Path) -> None:
    seen = [_hashes(five, "audio")["clip-0000"]]
    for _ in range(4):
        edit_audio(1, five)
        seen.append(_hashes(five, "audio")["clip-0000"])
    assert len(set(seen)) == len(seen)


def test_edit_frames_changes_only_the_frames_of_the_first_clips(five: Path) -> None:
    audio, frames = _hashes(five, "audio"), _hashes(five, "frames")
    assert edit_frames(3, five) == ["clip-0000", "clip-0001", "clip-0002"]
    assert _changed(frames, _hashes(five, "frames")) == ["clip-0000", "clip-0001", "clip-0002"]
    assert _changed(audio, _hashes(five, "audio")) == []
    second = _hashes(five, "frames")
    edit_frames(1, five)
    assert _changed(second, _hashes(five, "frames")) == ["clip-0000"]


def test_edits_are_deterministic(five: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_clips(other, 5)
    for data_dir in (five, other):
        edit_audio(2, data_dir)
        edit_frames(1, data_dir)
        edit_audio(1, data_dir)
    assert _hashes(five, "audio") == _hashes(other, "audio")
    assert _hashes(five, "frames") == _hashes(other, "frames")


def test_edit_more_than_exist_or_none(five: Path) -> None:
    assert edit_audio(0, five) == []
    assert edit_frames(99, five) == FIVE
    assert remove_clips(0, five) == []
    with pytest.raises(ValueError, match="count"):
        edit_audio(-1, five)


def test_add_and_remove(five: Path) -> None:
    assert add_clips(2, five) == ["clip-0005", "clip-0006"]
    assert list_clips(five) == [*FIVE, "clip-0005", "clip-0006"]
    assert remove_clips(1, five) == ["clip-0006"]
    assert list_clips(five) == [*FIVE, "clip-0005"]
    assert not (five / "clips" / "clip-0006").exists()
    assert remove_clips(10, five) == [*FIVE, "clip-0005"]
    assert add_clips(1, five) == ["clip-0000"]


def test_a_removed_then_re_added_clip_has_its_original_content(five: Path) -> None:
    original = scan_clips(five).row(4)
    edit_audio(5, five)
    assert remove_clips(1, five) == ["clip-0004"]
    assert add_clips(1, five) == ["clip-0004"]
    assert scan_clips(five).row(4) == original


def test_cli_prints_what_changed(five: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audio", "--count", "2", "--data-dir", str(five)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "audio" in out
    assert "clip-0000, clip-0001" in out
    assert main(["add", "--count", "1", "--data-dir", str(five)]) == 0
    assert "clip-0005" in capsys.readouterr().out
    assert main(["remove", "--count", "2", "--data-dir", str(five)]) == 0
    assert "clip-0004, clip-0005" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["frames", "--count", "-1", "--data-dir", str(five)])


def test_default_data_dir_follows_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert default_data_dir().parts[-2:] == ("example_project", "data")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path
    assert add_clips(2) == ["clip-0000", "clip-0001"]
    assert list_clips(tmp_path) == ["clip-0000", "clip-0001"]


# --- compute steps ------------------------------------------------------------------------


def _run_all(data_dir: Path, out_root: Path, cid: str) -> dict[str, object]:
    """Every step on one clip, outputs under ``out_root``; returns the metadata by step."""
    audio, frames = _raw(data_dir, cid)
    cropped = crop(audio, frames, output_dir(out_root, "crop"))
    return {
        "crop": cropped,
        "faces": detect_faces(frames, output_dir(out_root, "faces")),
        "features": audio_features(audio, output_dir(out_root, "features")),
        "transcript": transcribe(audio, output_dir(out_root, "transcript")),
        "crop_faces": detect_faces(
            Path(cropped["crop_frames_path"]), output_dir(out_root, "crop_faces")
        ),
    }


def _output_bytes(out_root: Path) -> dict[str, bytes]:
    files = sorted(p for p in (out_root / "outputs").rglob("*") if p.is_file())
    return {str(p.relative_to(out_root)): p.read_bytes() for p in files}


def test_steps_write_their_outputs(five: Path) -> None:
    meta = _run_all(five, five, "clip-0002")
    outputs = five / "outputs"
    assert sorted(_output_bytes(five)) == [
        "outputs/crop/clip-0002.npy",
        "outputs/crop/clip-0002.wav",
        "outputs/crop_faces/clip-0002.json",
        "outputs/faces/clip-0002.json",
        "outputs/features/clip-0002.json",
        "outputs/transcript/clip-0002.txt",
    ]
    assert meta["crop"] == {
        "crop_frames_path": str(outputs / "crop" / "clip-0002.npy"),
        "crop_audio_path": str(outputs / "crop" / "clip-0002.wav"),
        "n_frames": 8,
    }
    assert np.load(outputs / "crop" / "clip-0002.npy").shape == (8, CROP_SIZE, CROP_SIZE, 3)
    with wave.open(str(outputs / "crop" / "clip-0002.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (1, SAMPLE_RATE)
        assert wav.getnframes() == SAMPLE_RATE // 2


def test_crop_is_the_center_of_the_frames_and_the_start_of_the_audio(five: Path) -> None:
    audio, frames = _raw(five, "clip-0001")
    meta = crop(audio, frames, five / "out")
    cropped = np.load(meta["crop_frames_path"])
    assert np.array_equal(cropped, np.load(frames)[:, 8:24, 8:24])
    with wave.open(str(audio), "rb") as a, wave.open(meta["crop_audio_path"], "rb") as b:
        head = a.readframes(SAMPLE_RATE // 2)
        assert b.readframes(b.getnframes()) == head


def test_detect_faces_finds_the_bright_square(five: Path) -> None:
    for cid in FIVE:
        frames_path = _raw(five, cid)[1]
        meta = detect_faces(frames_path, five / "faces")
        assert meta["n_faces"] == 8
        report = json.loads(Path(meta["faces_path"]).read_text())
        assert report["clip_id"] == cid
        frames = np.load(frames_path)
        bright = (frames >= 230).all(axis=-1)
        for box in report["boxes"]:
            y, x, size = box["y"], box["x"], box["w"]
            assert size == box["h"] == FACE_SIZE
            # The box covers the face exactly.
            assert bright[box["frame"], y : y + size, x : x + size].all()
            assert box["score"] >= 230


def test_audio_features_are_plausible(five: Path) -> None:
    meta = audio_features(_raw(five, "clip-0000")[0], five / "features")
    assert 0.2 < meta["rms"] < 0.6
    assert (meta["dominant_hz"] - TONE_BASE_HZ) % TONE_STEP_HZ == 0
    stored = json.loads(Path(meta["features_path"]).read_text())
    assert stored["rms"] == meta["rms"]
    assert stored["dominant_hz"] == meta["dominant_hz"]
    assert stored["n_samples"] == SAMPLE_RATE


def test_transcribe_gives_four_words_from_the_vocabulary(five: Path) -> None:
    texts = []
    for cid in FIVE:
        meta = transcribe(_raw(five, cid)[0], five / "transcript")
        words = meta["text"].split(" ")
        assert len(words) == 4
        assert set(words) <= set(VOCABULARY)
        assert Path(meta["transcript_path"]).read_text() == meta["text"] + "\n"
        texts.append(meta["text"])
    assert len(set(texts)) > 1


def test_steps_are_deterministic(five: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "run1", tmp_path / "run2"
    for cid in FIVE:
        meta1 = _run_all(five, first, cid)
        meta2 = _run_all(five, second, cid)
        assert json.dumps(meta1).replace(str(first), "") == json.dumps(meta2).replace(
            str(second), ""
        )
    out1, out2 = _output_bytes(first), _output_bytes(second)
    assert len(out1) == 6 * 5
    assert {k.removeprefix("outputs/"): v for k, v in out1.items()} == {
        k.removeprefix("outputs/"): v for k, v in out2.items()
    }


def test_transcript_follows_audio_edits_and_ignores_frame_edits(five: Path) -> None:
    def texts() -> list[str]:
        return [transcribe(_raw(five, cid)[0], five / "t")["text"] for cid in FIVE]

    before = texts()
    edit_frames(5, five)
    assert texts() == before
    edit_audio(2, five)
    after = texts()
    assert [a != b for a, b in zip(before, after, strict=True)] == [True, True, False, False, False]
    edit_audio(1, five)
    assert texts()[0] not in (before[0], after[0])


def test_build_manifest_writes_one_json_object_per_row(five: Path) -> None:
    rows = scan_clips(five).with_columns(pl.lit(1.5).alias("score"))
    path = build_manifest(rows, five / "manifests" / "train.jsonl")
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows.to_dicts()
    again = build_manifest(rows, five / "manifests" / "again.jsonl")
    assert again.read_bytes() == path.read_bytes()
    empty = build_manifest(rows.head(0), five / "manifests" / "empty.jsonl")
    assert empty.read_text() == ""
