"""Per-clip steps of the example pipeline: small, CPU-only, deterministic numpy stand-ins.

Each step is a pure function from input files to output files plus a small metadata dict.
Outputs are named after the clip (``<out_dir>/<clip_id>.<ext>``); by convention ``out_dir`` is
``<data_dir>/outputs/<step>`` (see :func:`output_dir`). The same input bytes always give the
same output bytes, and every output file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import polars as pl
from numpy.typing import NDArray

from example_project.media import (
    AUDIO_FILE,
    FACE_SIZE,
    FRAMES_FILE,
    N_SEGMENTS,
    TONE_BASE_HZ,
    TONE_STEP_HZ,
    VOCABULARY,
    atomic_write,
    read_wav,
    write_wav,
)

__all__ = [
    "CROP_AUDIO_S",
    "CROP_SIZE",
    "FACE_THRESHOLD",
    "AudioFeatures",
    "CropResult",
    "FacesResult",
    "NoSpeechError",
    "TranscriptResult",
    "audio_features",
    "build_manifest",
    "crop",
    "detect_faces",
    "output_dir",
    "transcribe",
]

CROP_SIZE = 16
"""Side of the center crop of the frames, in pixels."""
CROP_AUDIO_S = 0.5
"""Seconds of audio kept by :func:`crop`."""
FACE_THRESHOLD = 180.0
"""Minimum mean luminance (0..255) of a box for it to count as a face."""


class NoSpeechError(ValueError):
    """The speech model rejects a clip: its audio track is silent."""


_LUMA = np.array([299, 587, 114], dtype=np.int64)
"""Rec. 601 luma weights times 1000 (integers keep the box sums exact)."""


class CropResult(TypedDict):
    """What :func:`crop` returns."""

    crop_frames_path: str
    crop_audio_path: str
    n_frames: int


class FacesResult(TypedDict):
    """What :func:`detect_faces` returns."""

    faces_path: str
    n_faces: int


class AudioFeatures(TypedDict):
    """What :func:`audio_features` returns."""

    features_path: str
    rms: float
    dominant_hz: float


class TranscriptResult(TypedDict):
    """What :func:`transcribe` returns."""

    transcript_path: str
    text: str


def output_dir(data_dir: Path, step: str) -> Path:
    """Where a step writes its outputs: ``<data_dir>/outputs/<step>``."""
    return Path(data_dir) / "outputs" / step


def _clip_name(path: Path, clip_id: str | None) -> str:
    """The clip an input belongs to: ``clips/<id>/audio.wav`` or ``<step>/<id>.<ext>``."""
    if clip_id is not None:
        return clip_id
    path = Path(path)
    return path.parent.name if path.name in (AUDIO_FILE, FRAMES_FILE) else path.stem


def _target(out_dir: Path, name: str, suffix: str) -> Path:
    return Path(out_dir).resolve() / f"{name}{suffix}"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _load_frames(path: Path) -> NDArray[np.uint8]:
    frames = np.load(path, allow_pickle=False)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected uint8 frames of shape (n, height, width, 3), "
            f"got {frames.dtype} {frames.shape}"
        )
    return np.asarray(frames, dtype=np.uint8)


def crop(
    audio_path: Path, frames_path: Path, out_dir: Path, *, clip_id: str | None = None
) -> CropResult:
    """Center-crop the frames to ``CROP_SIZE`` square and keep the first ``CROP_AUDIO_S``.

    Args:
        audio_path: The clip's WAV file.
        frames_path: The clip's ``.npy`` frames.
        out_dir: Where ``<clip_id>.npy`` and ``<clip_id>.wav`` are written.
        clip_id: Output name; by default taken from the input path.

    Returns:
        The two output paths and the number of frames.
    """
    name = _clip_name(frames_path, clip_id)
    frames = _load_frames(frames_path)
    height, width = frames.shape[1:3]
    if height < CROP_SIZE or width < CROP_SIZE:
        raise ValueError(f"{frames_path}: frames {height}x{width} are smaller than {CROP_SIZE}")
    top, left = (height - CROP_SIZE) // 2, (width - CROP_SIZE) // 2
    cropped = np.ascontiguousarray(frames[:, top : top + CROP_SIZE, left : left + CROP_SIZE])
    samples, rate = read_wav(audio_path)
    frames_out = _target(out_dir, name, ".npy")
    audio_out = _target(out_dir, name, ".wav")
    atomic_write(frames_out, lambda fh: np.save(fh, cropped, allow_pickle=False))
    write_wav(audio_out, samples[: int(rate * CROP_AUDIO_S)], rate)
    return {
        "crop_frames_path": str(frames_out),
        "crop_audio_path": str(audio_out),
        "n_frames": int(cropped.shape[0]),
    }


def detect_faces(frames_path: Path, out_dir: Path, *, clip_id: str | None = None) -> FacesResult:
    """Find the brightest ``FACE_SIZE`` box of each frame (a stand-in for face detection).

    The box is the argmax of the box-filtered luminance (integral image, all frames at once);
    a box is a face when its mean luminance reaches ``FACE_THRESHOLD``. Writes
    ``<clip_id>.json`` with one box per detected face.

    Returns:
        The JSON path and the number of faces (at most one per frame).
    """
    name = _clip_name(frames_path, clip_id)
    frames = _load_frames(frames_path)
    n, height, width = frames.shape[:3]
    box = min(FACE_SIZE, height, width)
    luma = frames.astype(np.int64) @ _LUMA  # (n, h, w), luminance x 1000
    integral = np.zeros((n, height + 1, width + 1), dtype=np.int64)
    integral[:, 1:, 1:] = luma.cumsum(axis=1).cumsum(axis=2)
    sums = (
        integral[:, box:, box:]
        - integral[:, :-box, box:]
        - integral[:, box:, :-box]
        + integral[:, :-box, :-box]
    )  # (n, h - box + 1, w - box + 1): box sum at each top-left corner
    flat = sums.reshape(n, -1)
    best = flat.argmax(axis=1)
    ys, xs = np.divmod(best, sums.shape[2])
    scores = flat[np.arange(n), best] / (1000.0 * box * box)
    boxes = [
        {"frame": i, "x": int(x), "y": int(y), "w": box, "h": box, "score": round(float(s), 3)}
        for i, (x, y, s) in enumerate(zip(xs, ys, scores, strict=True))
        if s >= FACE_THRESHOLD
    ]
    path = _target(out_dir, name, ".json")
    _write_json(
        path,
        {"clip_id": name, "n_frames": n, "threshold": FACE_THRESHOLD, "boxes": boxes},
    )
    return {"faces_path": str(path), "n_faces": len(boxes)}


def _to_float(samples: NDArray[np.int16]) -> NDArray[np.float64]:
    scaled: NDArray[np.float64] = samples.astype(np.float64) / 32_768.0
    return scaled


def audio_features(audio_path: Path, out_dir: Path, *, clip_id: str | None = None) -> AudioFeatures:
    """RMS energy and dominant frequency (numpy FFT) of a clip's audio; writes ``.json``.

    Returns:
        The JSON path, the RMS (full scale = 1.0) and the dominant frequency in Hz.
    """
    name = _clip_name(audio_path, clip_id)
    samples, rate = read_wav(audio_path)
    x = _to_float(samples)
    rms = round(float(np.sqrt(np.mean(x * x))), 6) if x.size else 0.0
    dominant_hz = 0.0
    if x.size > 1:
        spectrum = np.abs(np.fft.rfft(x))
        spectrum[0] = 0.0  # ignore DC
        dominant_hz = round(float(np.argmax(spectrum)) * rate / x.size, 3)
    path = _target(out_dir, name, ".json")
    _write_json(
        path,
        {
            "clip_id": name,
            "sample_rate": rate,
            "n_samples": int(x.size),
            "duration_s": round(x.size / rate, 6),
            "rms": rms,
            "dominant_hz": dominant_hz,
        },
    )
    return {"features_path": str(path), "rms": rms, "dominant_hz": dominant_hz}


def transcribe(audio_path: Path, out_dir: Path, *, clip_id: str | None = None) -> TranscriptResult:
    """A deterministic transcript stand-in: one word per quarter of the audio.

    Each of ``N_SEGMENTS`` equal windows maps its dominant frequency within the vocabulary
    band to the nearest word of ``VOCABULARY`` (word ``i`` = ``200 + 100 * i`` Hz). Writes
    ``<clip_id>.txt``.

    Returns:
        The transcript path and its text.

    Raises:
        NoSpeechError: the audio is silent (an empty track), as a real model rejects it.
    """
    name = _clip_name(audio_path, clip_id)
    samples, rate = read_wav(audio_path)
    if not samples.any():
        raise NoSpeechError(f"no speech in {name}: its audio track is silent ({audio_path.name})")
    width = samples.size // N_SEGMENTS
    words: list[str] = []
    if width > 1:
        windows = _to_float(samples[: width * N_SEGMENTS]).reshape(N_SEGMENTS, width)
        spectrum = np.abs(np.fft.rfft(windows, axis=1))
        freqs = np.fft.rfftfreq(width, d=1.0 / rate)
        low = TONE_BASE_HZ - TONE_STEP_HZ / 2
        high = TONE_BASE_HZ + (len(VOCABULARY) - 0.5) * TONE_STEP_HZ
        spectrum[:, (freqs < low) | (freqs >= high)] = 0.0
        peak_hz = freqs[spectrum.argmax(axis=1)]
        index = np.clip(np.rint((peak_hz - TONE_BASE_HZ) / TONE_STEP_HZ), 0, len(VOCABULARY) - 1)
        words = [VOCABULARY[int(i)] for i in index]
    text = " ".join(words)
    path = _target(out_dir, name, ".txt")
    atomic_write(path, lambda fh: fh.write((text + "\n").encode()))
    return {"transcript_path": str(path), "text": text}


def build_manifest(rows: pl.DataFrame, out_path: Path) -> Path:
    """Write ``rows`` as a JSONL training manifest, one JSON object per row, in row order.

    Sort the rows first (e.g. by ``clip_id``) for a byte-reproducible file.

    Returns:
        The manifest path.
    """
    path = Path(out_path)
    text = rows.write_ndjson() if rows.height else ""
    atomic_write(path, lambda fh: fh.write(text.encode()))
    return path
