"""Synthetic video clips on local disk: deterministic, seeded by clip id, no downloads.

Layout under a data directory::

    <data_dir>/clips/<clip_id>/audio.wav    mono, 16 kHz, 1 s, 16-bit PCM
    <data_dir>/clips/<clip_id>/frames.npy   uint8 array (8, 32, 32, 3)
    <data_dir>/clips/<clip_id>/edits.json   edit counters (written by the first edit only)

The audio is four 250 ms segments, each dominated by one tone on a 100 Hz grid (200..1700 Hz),
over two quiet background tones and a little noise. The frames show a bright 8x8 square (the
"face") drifting over a dark, noisy background. Content is a pure function of the clip id and
an edit version per part, so the same clip always has the same bytes until it is edited.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl
import xxhash
from numpy.typing import NDArray

__all__ = [
    "AUDIO_FILE",
    "DATA_DIR_ENV",
    "DURATION_S",
    "FACE_SIZE",
    "FIELDS",
    "FRAMES_FILE",
    "FRAME_SHAPE",
    "HASH_SEED",
    "N_SEGMENTS",
    "SAMPLE_RATE",
    "TONE_BASE_HZ",
    "TONE_STEP_HZ",
    "VOCABULARY",
    "atomic_write",
    "clip_dir",
    "clip_id",
    "clip_index",
    "clips_dir",
    "content_hash",
    "default_data_dir",
    "generate_clips",
    "list_clips",
    "read_versions",
    "read_wav",
    "render_audio",
    "render_frames",
    "scan_clips",
    "silence_audio",
    "write_audio",
    "write_frames",
    "write_versions",
    "write_wav",
]

DATA_DIR_ENV = "METAXY_EXAMPLE_DATA"
"""Environment variable that overrides the default data directory."""

AUDIO_FILE = "audio.wav"
FRAMES_FILE = "frames.npy"
EDITS_FILE = "edits.json"
FIELDS = ("audio", "frames")
"""Fields of the root feature ``video/raw``, one file each."""

SAMPLE_RATE = 16_000
DURATION_S = 1.0
N_SEGMENTS = 4
"""Audio segments per clip; each carries one "word" (a tone on the vocabulary grid)."""
TONE_BASE_HZ = 200
TONE_STEP_HZ = 100
VOCABULARY = (
    "the", "cat", "sat", "on", "a", "mat", "dog", "ran",
    "to", "big", "red", "ball", "sun", "is", "warm", "today",
)  # fmt: skip
"""Word ``i`` is spoken as a tone at ``TONE_BASE_HZ + i * TONE_STEP_HZ``."""

FRAME_SHAPE = (8, 32, 32, 3)
"""Frames, height, width, RGB."""
FACE_SIZE = 8
"""Side of the bright square "face", in pixels."""

HASH_SEED = 42
"""xxhash64 seed of content hashes (the project's one hash seed)."""

_CLIP_RE = re.compile(r"clip-(\d{4,})")


def default_data_dir() -> Path:
    """The data directory: ``$METAXY_EXAMPLE_DATA`` if set, else ``example_project/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / "data"


def clip_id(index: int) -> str:
    """The id of clip number ``index`` (``clip-0007``)."""
    if index < 0:
        raise ValueError(f"clip index must be >= 0, got {index}")
    return f"clip-{index:04d}"


def clip_index(cid: str) -> int:
    """The number of a clip id (``clip-0007`` -> 7)."""
    match = _CLIP_RE.fullmatch(cid)
    if match is None:
        raise ValueError(f"not a clip id: {cid!r} (expected 'clip-' and 4+ digits)")
    return int(match.group(1))


def clips_dir(data_dir: Path) -> Path:
    """The folder holding one sub-folder per clip."""
    return Path(data_dir) / "clips"


def clip_dir(data_dir: Path, cid: str) -> Path:
    """The folder of one clip."""
    return clips_dir(data_dir) / cid


def content_hash(path: Path) -> str:
    """xxhash64 (seed 42) of a file's bytes, as 16 lowercase hex characters."""
    return str(xxhash.xxh64_hexdigest(Path(path).read_bytes(), seed=HASH_SEED))


# --- deterministic randomness -------------------------------------------------------------


def _seed(*parts: object) -> int:
    """A 64-bit seed from the parts (stable across processes, machines and versions)."""
    text = "\x1f".join(str(p) for p in parts)
    return int(xxhash.xxh64_intdigest(text.encode(), seed=HASH_SEED))


def _uniform(seed: int, size: int) -> NDArray[np.float64]:
    """``size`` uniform floats in [0, 1), from PCG64's raw stream (stable across numpy)."""
    raw = np.asarray(np.random.PCG64(seed).random_raw(size), dtype=np.uint64)
    top53 = (raw >> np.uint64(11)).astype(np.float64)
    scaled: NDArray[np.float64] = top53 / float(1 << 53)
    return scaled


# --- rendering ----------------------------------------------------------------------------


def render_audio(cid: str, version: int = 0) -> NDArray[np.int16]:
    """The audio samples of a clip at an edit version (int16, mono, ``SAMPLE_RATE``).

    Each edit shifts every segment's tone one step up the vocabulary grid and reseeds the
    background, so every version sounds (and transcribes) differently from the last.
    """
    n = int(SAMPLE_RATE * DURATION_S)
    seg = n // N_SEGMENTS
    base = _uniform(_seed(cid, "audio"), N_SEGMENTS)
    words = (np.floor(base * len(VOCABULARY)).astype(np.int64) + version) % len(VOCABULARY)
    word_hz = TONE_BASE_HZ + TONE_STEP_HZ * words
    hz = np.repeat(word_hz, seg)
    hz = np.concatenate([hz, np.full(n - hz.size, hz[-1])])
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    vary = _uniform(_seed(cid, "audio", version), 4 + n)
    bg_hz = 2_000.0 + 4_000.0 * vary[:2]
    bg_phase = 2.0 * np.pi * vary[2:4]
    signal = 0.5 * np.sin(2.0 * np.pi * hz * t)
    signal += 0.08 * np.sin(2.0 * np.pi * bg_hz[:, None] * t + bg_phase[:, None]).sum(axis=0)
    signal += 0.03 * (2.0 * vary[4:] - 1.0)
    return np.round(np.clip(signal, -1.0, 1.0) * 32_767).astype(np.int16)


def render_frames(cid: str, version: int = 0) -> NDArray[np.uint8]:
    """The frames of a clip at an edit version: uint8, shape ``FRAME_SHAPE``.

    The background stays at or below 125 and the face at or above 230 in every channel, so the
    brightest ``FACE_SIZE`` box of each frame is exactly the face. Each edit moves the face's
    track and reseeds the background.
    """
    f, h, w, _ = FRAME_SHAPE
    span = min(h, w) - FACE_SIZE + 1
    base = _uniform(_seed(cid, "frames"), 7)
    vary = _uniform(_seed(cid, "frames", version), int(np.prod(FRAME_SHAPE)) * 2)
    y0 = (int(base[0] * span) + 5 * version) % span
    x0 = (int(base[1] * span) + 3 * version) % span
    dy, dx = np.floor(base[2:4] * 3).astype(np.int64) - 1
    steps = np.arange(f)
    ys = np.clip(y0 + dy * steps, 0, span - 1)
    xs = np.clip(x0 + dx * steps, 0, span - 1)
    color = 20.0 + 60.0 * base[4:7]
    gradient = 30.0 * np.arange(h, dtype=np.float64) / (h - 1)
    noise = vary[: vary.size // 2].reshape(FRAME_SHAPE)
    background = color + gradient[None, :, None, None] + 15.0 * noise
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    face = (
        (rows >= ys[:, None, None])
        & (rows < ys[:, None, None] + FACE_SIZE)
        & (cols >= xs[:, None, None])
        & (cols < xs[:, None, None] + FACE_SIZE)
    )
    face_values = 230.0 + 25.0 * vary[vary.size // 2 :].reshape(FRAME_SHAPE)
    frames = np.where(face[..., None], face_values, background)
    return np.floor(frames).astype(np.uint8)


# --- files --------------------------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file through ``write`` into a temporary sibling, then rename it into place.

    Readers (and parallel writers) never see a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_wav(path: Path, samples: NDArray[np.int16], sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono 16-bit PCM samples as a WAV file (atomically)."""

    def write(fh: IO[bytes]) -> None:
        with wave.open(fh, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())

    atomic_write(path, write)


def read_wav(path: Path) -> tuple[NDArray[np.int16], int]:
    """Read a mono 16-bit PCM WAV file; returns the samples and the sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError(
                f"{path}: expected mono 16-bit PCM, got {wav.getnchannels()} channel(s) of "
                f"{8 * wav.getsampwidth()} bits"
            )
        rate = wav.getframerate()
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.int16), rate


def write_audio(data_dir: Path, cid: str, version: int = 0) -> Path:
    """Render and write a clip's ``audio.wav``; returns its path."""
    path = clip_dir(data_dir, cid) / AUDIO_FILE
    write_wav(path, render_audio(cid, version))
    return path


def write_frames(data_dir: Path, cid: str, version: int = 0) -> Path:
    """Render and write a clip's ``frames.npy``; returns its path."""
    path = clip_dir(data_dir, cid) / FRAMES_FILE
    frames = render_frames(cid, version)
    atomic_write(path, lambda fh: np.save(fh, frames, allow_pickle=False))
    return path


def read_versions(data_dir: Path, cid: str) -> dict[str, int]:
    """A clip's edit versions per field (0 for a field never edited)."""
    path = clip_dir(data_dir, cid) / EDITS_FILE
    stored = json.loads(path.read_text()) if path.exists() else {}
    return {name: int(stored.get(name, 0)) for name in FIELDS}


def write_versions(data_dir: Path, cid: str, versions: dict[str, int]) -> None:
    """Store a clip's edit versions per field."""
    text = json.dumps({name: int(versions.get(name, 0)) for name in FIELDS}, sort_keys=True)
    atomic_write(clip_dir(data_dir, cid) / EDITS_FILE, lambda fh: fh.write(text.encode()))


def generate_clips(data_dir: Path, count: int, start: int = 0) -> list[str]:
    """Create clips ``start .. start + count - 1``, skipping files that already exist.

    A missing file of an existing clip is rewritten at the clip's current edit version.

    Args:
        data_dir: Root of the example data.
        count: How many clip ids to cover.
        start: Index of the first clip.

    Returns:
        The ids of the clips that were (fully or partly) written, in order.
    """
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got count={count}, start={start}")
    written = []
    for index in range(start, start + count):
        cid = clip_id(index)
        folder = clip_dir(data_dir, cid)
        audio_missing = not (folder / AUDIO_FILE).exists()
        frames_missing = not (folder / FRAMES_FILE).exists()
        if not (audio_missing or frames_missing):
            continue
        versions = read_versions(data_dir, cid)
        if audio_missing:
            write_audio(data_dir, cid, versions["audio"])
        if frames_missing:
            write_frames(data_dir, cid, versions["frames"])
        written.append(cid)
    return written


def silence_audio(data_dir: Path, cid: str) -> Path:
    """Replace a clip's audio by silence of the same length: an empty audio track, as a
    broken recorder leaves it. The speech model rejects it; the other steps take it."""
    path = clip_dir(data_dir, cid) / AUDIO_FILE
    write_wav(path, np.zeros(int(SAMPLE_RATE * DURATION_S), dtype=np.int16))
    return path


def list_clips(data_dir: Path) -> list[str]:
    """Ids of the complete clips (both files present), in clip-number order."""
    root = clips_dir(data_dir)
    if not root.is_dir():
        return []
    ids = [
        entry.name
        for entry in root.iterdir()
        if _CLIP_RE.fullmatch(entry.name)
        and (entry / AUDIO_FILE).is_file()
        and (entry / FRAMES_FILE).is_file()
    ]
    return sorted(ids, key=clip_index)


def scan_clips(data_dir: Path) -> pl.DataFrame:
    """One row per clip, as the root feature ``video/raw`` (fields audio, frames) is written.

    Columns: ``clip_id``, ``audio_path``, ``frames_path`` (absolute), and
    ``metaxy_data_version__audio`` / ``metaxy_data_version__frames`` (content hashes).
    """
    root = Path(data_dir).resolve()
    ids = list_clips(root)
    audio = [clip_dir(root, cid) / AUDIO_FILE for cid in ids]
    frames = [clip_dir(root, cid) / FRAMES_FILE for cid in ids]
    return pl.DataFrame(
        {
            "clip_id": ids,
            "audio_path": [str(p) for p in audio],
            "frames_path": [str(p) for p in frames],
            "metaxy_data_version__audio": [content_hash(p) for p in audio],
            "metaxy_data_version__frames": [content_hash(p) for p in frames],
        },
        schema={
            "clip_id": pl.String,
            "audio_path": pl.String,
            "frames_path": pl.String,
            "metaxy_data_version__audio": pl.String,
            "metaxy_data_version__frames": pl.String,
        },
    )
