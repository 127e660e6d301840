"""The example project's data side: real MP4 clips, edits, and the per-clip steps on real
models (OpenCV's Haar cascade, PocketSphinx), checked against what the clips truly hold."""

from __future__ import annotations

import json
import re
import shutil
import wave
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest

from example_project.compute import (
    CROP_SIZE,
    FRAME_STEP,
    NoSpeechError,
    audio_features,
    build_manifest,
    crop,
    detect_faces,
    output_dir,
    read_wav,
    transcribe,
)
from example_project.edit import add_clips, edit_audio, edit_frames, main, remove_clips
from example_project.media import (
    DATA_DIR_ENV,
    DURATION_S,
    FPS,
    FRAME_SIZE,
    GRAMMAR,
    N_FRAMES,
    SAMPLE_RATE,
    default_data_dir,
    face_boxes,
    generate_clips,
    list_clips,
    read_audio,
    read_frames,
    render_frames,
    scan_clips,
    silence_audio,
    spoken_text,
    stream_hashes,
)
from example_project.quality import iou, word_error_rate

HEX16 = re.compile(r"[0-9a-f]{16}")
FIVE = [f"clip-000{i}" for i in range(5)]
COLUMNS = ["clip_id", "video_path", "metaxy_data_version__audio", "metaxy_data_version__frames"]
MIN_IOU = 0.7
"""Every detected box overlaps the true face at least this much (measured: 0.86 .. 1.0)."""
MAX_WER = 0.15
"""Mean word error rate of the transcripts over the clips (measured: 0.04 on five clips)."""


def _hashes(data_dir: Path, field: str) -> dict[str, str]:
    df = scan_clips(data_dir)
    return dict(zip(df["clip_id"], df[f"metaxy_data_version__{field}"], strict=True))


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(cid for cid in before if after.get(cid) != before[cid])


def _video(data_dir: Path, cid: str) -> Path:
    return data_dir / "clips" / cid / "video.mp4"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clips clip-0000 .. clip-0004, generated once for the module (read only)."""
    root = tmp_path_factory.mktemp("generated")
    assert generate_clips(root, 5) == FIVE
    return root


@pytest.fixture
def five(generated: Path, tmp_path: Path) -> Path:
    """A copy of the five clips that a test may change."""
    shutil.copytree(generated / "clips", tmp_path / "clips")
    return tmp_path


# --- generation and scanning --------------------------------------------------------------


def test_each_clip_is_an_mp4_with_a_video_and_an_audio_track(generated: Path) -> None:
    assert sorted(p.name for p in (generated / "clips").iterdir()) == FIVE
    with av.open(str(_video(generated, "clip-0000"))) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, video.width, video.height) == ("mpeg4", *FRAME_SIZE)
        assert (audio.codec_context.name, audio.sample_rate, audio.channels) == (
            "aac",
            SAMPLE_RATE,
            1,
        )
    frames = list(read_frames(_video(generated, "clip-0000")))
    assert len(frames) == N_FRAMES == int(FPS * DURATION_S)
    assert frames[0].shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    samples = read_audio(_video(generated, "clip-0000"))
    assert abs(samples.size - SAMPLE_RATE * DURATION_S) < 2048  # AAC pads to whole frames
    assert list_clips(generated) == FIVE


def test_the_decoded_frames_hold_the_rendered_ones(generated: Path) -> None:
    decoded = np.stack(list(read_frames(_video(generated, "clip-0003")))).astype(np.int16)
    rendered = render_frames("clip-0003").astype(np.int16)
    assert np.abs(decoded - rendered).mean() < 4  # lossy, but the same pictures


def test_clips_differ_from_each_other(generated: Path) -> None:
    df = scan_clips(generated)
    assert df["metaxy_data_version__audio"].n_unique() == 5
    assert df["metaxy_data_version__frames"].n_unique() == 5
    assert len({spoken_text(cid) for cid in FIVE}) == 5


def test_scan_clips_is_the_root_feature_frame(generated: Path) -> None:
    df = scan_clips(generated)
    assert df.columns == COLUMNS
    assert all(dtype == pl.String for dtype in df.dtypes)
    assert df["clip_id"].to_list() == FIVE
    for row in df.iter_rows(named=True):
        path = Path(row["video_path"])
        assert path == _video(generated, row["clip_id"]).resolve()
        hashes = stream_hashes(path)
        for field in ("audio", "frames"):
            assert HEX16.fullmatch(row[f"metaxy_data_version__{field}"])
            assert row[f"metaxy_data_version__{field}"] == hashes[field]


def test_scan_of_a_missing_or_empty_dir_is_empty_with_the_schema(tmp_path: Path) -> None:
    df = scan_clips(tmp_path / "nowhere")
    assert df.height == 0
    assert df.columns == COLUMNS
    assert list_clips(tmp_path) == []


def test_generating_is_idempotent_and_deterministic(five: Path, tmp_path: Path) -> None:
    before = scan_clips(five)
    assert generate_clips(five, 5) == []
    assert scan_clips(five).equals(before)
    # Another directory gets byte-identical clips (the speech of each in a fresh process).
    other = tmp_path / "other"
    assert generate_clips(other, 2, start=3) == ["clip-0003", "clip-0004"]
    for cid in ("clip-0003", "clip-0004"):
        assert _video(other, cid).read_bytes() == _video(five, cid).read_bytes()


def test_generate_fills_in_a_missing_file(five: Path) -> None:
    before = scan_clips(five)
    _video(five, "clip-0003").unlink()
    assert list_clips(five) == ["clip-0000", "clip-0001", "clip-0002", "clip-0004"]
    assert generate_clips(five, 5) == ["clip-0003"]
    assert scan_clips(five).drop("video_path").equals(before.drop("video_path"))


def test_generate_refuses_a_negative_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count"):
        generate_clips(tmp_path, -1)


# --- edits --------------------------------------------------------------------------------


def test_edit_audio_changes_only_the_audio_track_of_the_first_clips(five: Path) -> None:
    audio, frames = _hashes(five, "audio"), _hashes(five, "frames")
    assert edit_audio(2, five) == ["clip-0000", "clip-0001"]
    assert _changed(audio, _hashes(five, "audio")) == ["clip-0000", "clip-0001"]
    assert _changed(frames, _hashes(five, "frames")) == []
    assert json.loads((five / "clips" / "clip-0000" / "edits.json").read_text()) == {
        "audio": 1,
        "frames": 0,
    }


def test_edit_frames_changes_only_the_video_track_and_moves_the_face(five: Path) -> None:
    audio, frames = _hashes(five, "audio"), _hashes(five, "frames")
    assert edit_frames(1, five) == ["clip-0000"]
    assert _changed(frames, _hashes(five, "frames")) == ["clip-0000"]
    assert _changed(audio, _hashes(five, "audio")) == []
    assert face_boxes("clip-0000", 1) != face_boxes("clip-0000", 0)


def test_repeated_audio_edits_say_new_sentences(five: Path) -> None:
    seen = [_hashes(five, "audio")["clip-0000"]]
    for _ in range(2):
        edit_audio(1, five)
        seen.append(_hashes(five, "audio")["clip-0000"])
    assert len(set(seen)) == 3
    assert len({spoken_text("clip-0000", v) for v in range(3)}) == 3


def test_edit_more_than_exist_or_none(five: Path) -> None:
    assert edit_audio(0, five) == []
    assert remove_clips(0, five) == []
    with pytest.raises(ValueError, match="count"):
        edit_audio(-1, five)


def test_add_and_remove(five: Path) -> None:
    assert add_clips(1, five) == ["clip-0005"]
    assert list_clips(five) == [*FIVE, "clip-0005"]
    assert remove_clips(2, five) == ["clip-0004", "clip-0005"]
    assert not (five / "clips" / "clip-0005").exists()
    assert list_clips(five) == FIVE[:4]


def test_cli_prints_what_changed(five: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audio", "--count", "2", "--data-dir", str(five)]) == 0
    out = capsys.readouterr().out
    assert out == f"edited audio of 2 clip(s) in {five}: clip-0000, clip-0001\n"
    assert main(["remove", "--count", "2", "--data-dir", str(five)]) == 0
    assert "clip-0003, clip-0004" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["frames", "--count", "-1", "--data-dir", str(five)])


def test_default_data_dir_follows_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert default_data_dir().parts[-2:] == ("example_project", "data")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert default_data_dir() == tmp_path


# --- compute steps on real models ---------------------------------------------------------


def test_crop_decodes_the_center_square_and_the_audio_track(
    generated: Path, tmp_path: Path
) -> None:
    video = _video(generated, "clip-0002")
    meta = crop(video, output_dir(tmp_path, "crop"))
    outputs = tmp_path / "outputs" / "crop"
    assert meta == {
        "crop_frames_path": str(outputs / "clip-0002.npy"),
        "crop_audio_path": str(outputs / "clip-0002.wav"),
        "n_frames": N_FRAMES // FRAME_STEP,
    }
    frames = np.load(meta["crop_frames_path"])
    assert (frames.shape, frames.dtype) == (
        (N_FRAMES // FRAME_STEP, CROP_SIZE, CROP_SIZE),
        np.uint8,
    )
    with wave.open(meta["crop_audio_path"], "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (1, SAMPLE_RATE)
    assert np.array_equal(read_wav(Path(meta["crop_audio_path"])), read_audio(video))


def test_haar_cascade_finds_the_face_where_it_is(generated: Path, tmp_path: Path) -> None:
    """Acceptance 1 (faces), per step: one box per kept frame, on the true face."""
    for cid in FIVE:
        cropped = crop(_video(generated, cid), tmp_path / "crop")
        meta = detect_faces(Path(cropped["crop_frames_path"]), tmp_path / "faces")
        report = json.loads(Path(meta["faces_path"]).read_text())
        assert report["model"] == "haarcascade_frontalface_default.xml"
        boxes = report["boxes"]
        assert [b["frame"] for b in boxes] == list(range(0, N_FRAMES, FRAME_STEP)), cid
        truth = face_boxes(cid)
        overlaps = [iou((b["x"], b["y"], b["w"], b["h"]), truth[b["frame"]]) for b in boxes]
        assert min(overlaps) >= MIN_IOU, (cid, overlaps)
        assert meta["n_faces"] == len(boxes)


def test_pocketsphinx_transcribes_the_spoken_sentences(generated: Path, tmp_path: Path) -> None:
    """Acceptance 1 (speech), per step: the transcripts are the sentences, within a WER."""
    rates = []
    for cid in FIVE:
        meta = transcribe(_video(generated, cid), tmp_path / "transcript")
        assert Path(meta["transcript_path"]).read_text() == meta["text"] + "\n"
        assert set(meta["text"].split()) <= {w for slot in GRAMMAR for w in slot}
        rates.append(word_error_rate(spoken_text(cid), meta["text"]))
    assert sum(rates) / len(rates) <= MAX_WER, rates


def test_a_silent_track_is_no_speech(five: Path) -> None:
    silence_audio(five, "clip-0001")
    assert not read_audio(_video(five, "clip-0001")).any()
    with pytest.raises(NoSpeechError, match=r"no speech in clip-0001: its audio track is silent"):
        transcribe(_video(five, "clip-0001"), five / "transcript")


def test_audio_features_are_mfccs_of_the_speech(generated: Path, tmp_path: Path) -> None:
    meta = audio_features(_video(generated, "clip-0000"), tmp_path / "features")
    assert 0.01 < meta["rms"] < 0.5
    assert 50.0 < meta["dominant_hz"] < 4000.0
    coefficients = np.load(meta["features_path"])
    # 25 ms windows every 10 ms over the decoded track, 13 coefficients each.
    assert coefficients.shape[1] == 13
    decoded = read_audio(_video(generated, "clip-0000")).size
    assert coefficients.shape[0] == 1 + (decoded - SAMPLE_RATE // 40) // (SAMPLE_RATE // 100)
    assert np.isfinite(coefficients).all()


def test_steps_are_deterministic(generated: Path, tmp_path: Path) -> None:
    video = _video(generated, "clip-0004")
    runs = []
    for out in (tmp_path / "run1", tmp_path / "run2"):
        cropped = crop(video, out / "crop")
        detect_faces(Path(cropped["crop_frames_path"]), out / "faces")
        audio_features(video, out / "features")
        transcribe(video, out / "transcript")
        runs.append({str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.*")})
    assert len(runs[0]) == 5
    assert runs[0] == runs[1]


def test_transcript_follows_audio_edits_and_ignores_frame_edits(five: Path) -> None:
    def texts() -> list[str]:
        return [transcribe(_video(five, cid), five / "t")["text"] for cid in FIVE[:3]]

    before = texts()
    edit_frames(3, five)
    assert texts() == before
    edit_audio(1, five)
    after = texts()
    assert [a != b for a, b in zip(before, after, strict=True)] == [True, False, False]
    assert word_error_rate(spoken_text("clip-0000", 1), after[0]) <= 2 / 7


def test_build_manifest_writes_one_json_object_per_row(generated: Path, tmp_path: Path) -> None:
    rows = scan_clips(generated).with_columns(pl.lit(1.5).alias("score"))
    path = build_manifest(rows, tmp_path / "manifests" / "train.jsonl")
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows.to_dicts()
    again = build_manifest(rows, tmp_path / "manifests" / "again.jsonl")
    assert again.read_bytes() == path.read_bytes()
    empty = build_manifest(rows.head(0), tmp_path / "manifests" / "empty.jsonl")
    assert empty.read_text() == ""
