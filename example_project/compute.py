"""Per-clip steps of the example pipeline, with real models whose weights ship in their wheels.

- :func:`crop`: decode the MP4 (PyAV): every ``FRAME_STEP``-th frame, center-cropped to a
  square, and the audio track as 16 kHz mono WAV;
- :func:`detect_faces`: OpenCV's Haar cascade ``haarcascade_frontalface_default.xml``
  (bundled in ``opencv-python-headless``, ``cv2.data.haarcascades``);
- :func:`audio_features`: MFCCs, RMS energy and the dominant frequency (numpy and scipy);
- :func:`transcribe`: PocketSphinx's bundled US English acoustic model and dictionary,
  decoding against the sentence grammar of the clips (:data:`~example_project.media.GRAMMAR`);
- :func:`build_manifest`: the training manifest (JSONL).

Each step is a function from input files to output files plus a small metadata dict. Outputs
are named after the clip (``<out_dir>/<clip_id>.<ext>``); by convention ``out_dir`` is
``<data_dir>/outputs/<step>`` (see :func:`output_dir`). The same input bytes always give the
same output bytes, and every output file is written atomically.
"""

from __future__ import annotations

import functools
import io
import json
import wave
from pathlib import Path
from typing import Any, TypedDict

import cv2
import numpy as np
import polars as pl
from numpy.typing import NDArray

from example_project.media import (
    FRAME_SIZE,
    GRAMMAR,
    SAMPLE_RATE,
    VIDEO_FILE,
    atomic_write,
    read_audio,
    read_frames,
)

__all__ = [
    "CROP_LEFT",
    "CROP_SIZE",
    "FACE_CASCADE",
    "FRAME_STEP",
    "AudioFeatures",
    "CropResult",
    "FacesResult",
    "NoSpeechError",
    "TranscriptResult",
    "audio_features",
    "build_manifest",
    "crop",
    "detect_faces",
    "mfcc",
    "output_dir",
    "read_wav",
    "transcribe",
    "wav_bytes",
]

CROP_SIZE = FRAME_SIZE[1]
"""Side of the center square of the frames that :func:`crop` keeps, in pixels."""
CROP_LEFT = (FRAME_SIZE[0] - CROP_SIZE) // 2
FRAME_STEP = 5
""":func:`crop` keeps every 5th frame (2 per second of a 10 fps video)."""
FACE_CASCADE = "haarcascade_frontalface_default.xml"
_MIN_FACE = 40
_SILENCE_RMS = 1e-4
"""Below this RMS (full scale 1.0) a track holds no speech to decode."""
_N_MELS = 26
_N_MFCC = 13


class NoSpeechError(ValueError):
    """The speech model rejects a clip: its audio track is silent."""


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
    """The clip an input belongs to: ``clips/<id>/video.mp4`` or ``<step>/<id>.<ext>``."""
    if clip_id is not None:
        return clip_id
    path = Path(path)
    return path.parent.name if path.name == VIDEO_FILE else path.stem


def _target(out_dir: Path, name: str, suffix: str) -> Path:
    return Path(out_dir).resolve() / f"{name}{suffix}"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def wav_bytes(samples: NDArray[np.int16]) -> bytes:
    """Mono int16 samples at ``SAMPLE_RATE`` as the bytes of a WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buffer.getvalue()


def read_wav(path: Path) -> NDArray[np.int16]:
    """The samples of a mono 16-bit WAV file written by :func:`crop`."""
    with wave.open(str(path), "rb") as wav:
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def _load_frames(path: Path) -> NDArray[np.uint8]:
    frames = np.load(path, allow_pickle=False)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected uint8 grey frames of shape (n, height, width), "
            f"got {frames.dtype} {frames.shape}"
        )
    return np.asarray(frames, dtype=np.uint8)


def crop(video_path: Path, out_dir: Path, *, clip_id: str | None = None) -> CropResult:
    """Decode a clip: every ``FRAME_STEP``-th frame, center-cropped to ``CROP_SIZE`` square and
    in grey levels (``<clip_id>.npy``), and the audio track (``<clip_id>.wav``, 16 kHz mono).

    Args:
        video_path: The clip's MP4 file.
        out_dir: Where the two outputs are written.
        clip_id: Output name; by default taken from the input path.

    Returns:
        The two output paths and the number of frames kept.
    """
    name = _clip_name(video_path, clip_id)
    grey = [
        cv2.cvtColor(frame[:, CROP_LEFT : CROP_LEFT + CROP_SIZE], cv2.COLOR_RGB2GRAY)
        for frame in read_frames(video_path, every=FRAME_STEP)
    ]
    cropped = np.stack(grey).astype(np.uint8)
    frames_out = _target(out_dir, name, ".npy")
    audio_out = _target(out_dir, name, ".wav")
    atomic_write(frames_out, lambda fh: np.save(fh, cropped, allow_pickle=False))
    wav = wav_bytes(read_audio(video_path))
    atomic_write(audio_out, lambda fh: fh.write(wav))
    return {
        "crop_frames_path": str(frames_out),
        "crop_audio_path": str(audio_out),
        "n_frames": int(cropped.shape[0]),
    }


@functools.cache
def _cascade() -> cv2.CascadeClassifier:
    folder = cv2.data.haarcascades  # type: ignore[attr-defined]  # cv2's stubs omit cv2.data
    return cv2.CascadeClassifier(str(Path(folder) / FACE_CASCADE))


def detect_faces(
    frames_path: Path, out_dir: Path, *, clip_id: str | None = None, first_frame: int = 0
) -> FacesResult:
    """Detect faces in the cropped frames with OpenCV's frontal-face Haar cascade.

    Writes ``<clip_id>.json``: one box per face, in the coordinates of the full video frame
    (``frame`` is the index in the video: ``first_frame`` is that of the first frame given),
    for comparing with where the face really is.

    Returns:
        The JSON path and the number of faces found over all frames.
    """
    name = _clip_name(frames_path, clip_id)
    frames = _load_frames(frames_path)
    boxes: list[dict[str, int]] = []
    for i, frame in enumerate(frames):
        found = _cascade().detectMultiScale(
            frame, scaleFactor=1.1, minNeighbors=5, minSize=(_MIN_FACE, _MIN_FACE)
        )
        boxes.extend(
            {
                "frame": first_frame + i * FRAME_STEP,
                "x": int(x) + CROP_LEFT,
                "y": int(y),
                "w": int(w),
                "h": int(h),
            }
            for x, y, w, h in found
        )
    path = _target(out_dir, name, ".json")
    _write_json(
        path, {"clip_id": name, "model": FACE_CASCADE, "n_frames": len(frames), "boxes": boxes}
    )
    return {"faces_path": str(path), "n_faces": len(boxes)}


def _to_float(samples: NDArray[np.int16]) -> NDArray[np.float64]:
    scaled: NDArray[np.float64] = samples.astype(np.float64) / 32_768.0
    return scaled


def mfcc(samples: NDArray[np.float64], rate: int = SAMPLE_RATE) -> NDArray[np.float64]:
    """Mel-frequency cepstral coefficients: (frames, 13), 25 ms windows every 10 ms.

    The textbook recipe (pre-emphasis, Hamming window, power spectrum, 26 triangular mel
    filters, log, DCT-II), in a few lines of numpy and scipy rather than a dependency on an
    audio library and its numba toolchain.
    """
    from scipy.fft import dct

    width, hop = int(0.025 * rate), int(0.010 * rate)
    x = np.append(samples[:1], samples[1:] - 0.97 * samples[:-1])
    if x.size < width:
        x = np.pad(x, (0, width - x.size))
    starts = np.arange(0, x.size - width + 1, hop)
    windows = x[starts[:, None] + np.arange(width)] * np.hamming(width)
    n_fft = 512
    power = np.abs(np.fft.rfft(windows, n_fft)) ** 2 / n_fft
    mel = np.linspace(0.0, 2595.0 * np.log10(1.0 + (rate / 2) / 700.0), _N_MELS + 2)
    bins = np.floor((n_fft + 1) * (700.0 * (10.0 ** (mel / 2595.0) - 1.0)) / rate).astype(int)
    filters = np.zeros((_N_MELS, n_fft // 2 + 1))
    for m in range(1, _N_MELS + 1):
        left, centre, right = bins[m - 1], bins[m], bins[m + 1]
        filters[m - 1, left:centre] = (np.arange(left, centre) - left) / max(centre - left, 1)
        filters[m - 1, centre:right] = (right - np.arange(centre, right)) / max(right - centre, 1)
    energies = np.log(np.maximum(power @ filters.T, np.finfo(np.float64).eps))
    coefficients: NDArray[np.float64] = dct(energies, type=2, axis=1, norm="ortho")[:, :_N_MFCC]
    return coefficients


def audio_features(video_path: Path, out_dir: Path, *, clip_id: str | None = None) -> AudioFeatures:
    """MFCCs (``<clip_id>.npy``, frames x 13), RMS energy and dominant frequency of a clip's
    audio track.

    Returns:
        The MFCC path, the RMS (full scale = 1.0) and the dominant frequency in Hz.
    """
    name = _clip_name(video_path, clip_id)
    x = _to_float(read_audio(video_path))
    rms = round(float(np.sqrt(np.mean(x * x))), 6) if x.size else 0.0
    dominant_hz = 0.0
    if x.size > 1:
        spectrum = np.abs(np.fft.rfft(x))
        spectrum[0] = 0.0  # ignore DC
        dominant_hz = round(float(np.argmax(spectrum)) * SAMPLE_RATE / x.size, 3)
    coefficients = np.round(mfcc(x), 6).astype(np.float32)
    path = _target(out_dir, name, ".npy")
    atomic_write(path, lambda fh: np.save(fh, coefficients, allow_pickle=False))
    return {"features_path": str(path), "rms": rms, "dominant_hz": dominant_hz}


_JSGF = "#JSGF V1.0;\ngrammar clips;\npublic <sentence> = {};\n".format(
    " ".join("(" + " | ".join(slot) + ")" for slot in GRAMMAR)
)
"""The clips' sentences as a JSGF grammar: PocketSphinx decodes against it, not a free LM."""


@functools.cache
def _decoder() -> Any:  # pocketsphinx ships no type information
    from pocketsphinx import Decoder  # its en-us model is inside the wheel

    decoder = Decoder(lm=None, loglevel="FATAL")
    decoder.add_jsgf_string("clips", _JSGF)
    decoder.activate_search("clips")
    return decoder


def transcribe(video_path: Path, out_dir: Path, *, clip_id: str | None = None) -> TranscriptResult:
    """Speech to text with PocketSphinx (the en-us model in its wheel); writes ``.txt``.

    Returns:
        The transcript path and its text.

    Raises:
        NoSpeechError: the audio track is silent, or the model hears no sentence in it.
    """
    name = _clip_name(video_path, clip_id)
    samples = read_audio(video_path)
    x = _to_float(samples)
    if not x.size or float(np.sqrt(np.mean(x * x))) < _SILENCE_RMS:
        raise NoSpeechError(f"no speech in {name}: its audio track is silent ({VIDEO_FILE})")
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(samples.astype("<i2").tobytes(), full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    text = hypothesis.hypstr if hypothesis is not None else ""
    if not text:
        raise NoSpeechError(f"no speech in {name}: the model heard no sentence ({VIDEO_FILE})")
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
