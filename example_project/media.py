"""The example's video clips on local disk: real MP4 files holding a real face and real speech,
generated deterministically from what the installed packages bundle (nothing is downloaded).

Layout under a data directory::

    <data_dir>/clips/<clip_id>/video.mp4    MPEG-4 video, 320x240 at 10 fps, and AAC mono 16 kHz
    <data_dir>/clips/<clip_id>/edits.json   edit versions per track (written by the first edit)

- **Frames**: the face of the astronaut photo bundled with scikit-image (Eileen Collins,
  ``skimage.data.astronaut()``), cut out with her hair and shoulders and scaled to
  ``PATCH_SIZE``, glides along a straight line over a colour gradient. Where her face is in
  every frame is known: :func:`face_boxes`.
- **Audio**: a sentence of :data:`GRAMMAR` spoken by eSpeak NG (:mod:`example_project.speech`),
  after a short silence: :func:`spoken_text`.

Content is a pure function of the clip id and an edit version per track. The field ``audio`` of
``video/raw`` is a hash of the audio stream's packets, ``frames`` one of the video stream's:
an edit re-encodes both tracks from their versions, and the encoders are deterministic, so the
track not edited keeps byte-identical packets and its data version.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import av
import cv2
import numpy as np
import polars as pl
import xxhash
from numpy.typing import NDArray

from example_project.speech import SAMPLE_RATE, synthesize

__all__ = [
    "DATA_DIR_ENV",
    "DURATION_S",
    "FIELDS",
    "FPS",
    "FRAME_SIZE",
    "GRAMMAR",
    "HASH_SEED",
    "N_FRAMES",
    "PATCH_SIZE",
    "SAMPLE_RATE",
    "SILENT",
    "SOURCE_FACE",
    "VIDEO_FILE",
    "atomic_write",
    "clip_dir",
    "clip_id",
    "clip_index",
    "clips_dir",
    "content_hash",
    "default_data_dir",
    "face_boxes",
    "generate_clips",
    "list_clips",
    "read_audio",
    "read_frames",
    "read_versions",
    "render_frames",
    "scan_clips",
    "silence_audio",
    "spoken_text",
    "stream_hashes",
    "write_clip",
    "write_versions",
]

DATA_DIR_ENV = "METAXY_EXAMPLE_DATA"
"""Environment variable that overrides the default data directory."""

VIDEO_FILE = "video.mp4"
EDITS_FILE = "edits.json"
FIELDS = ("audio", "frames")
"""Fields of the root feature ``video/raw``: one track of the MP4 file each."""

FRAME_SIZE = (320, 240)
"""Width and height of the video."""
FPS = 10
DURATION_S = 3.5
N_FRAMES = int(FPS * DURATION_S)
PATCH_SIZE = 120
"""Side of the square cut-out of the photo placed in the frames, in pixels."""
_SOURCE_CUT = (130, 20, 180)
"""The cut-out of ``astronaut.png``: left, top and side in the photo's pixels."""
SOURCE_FACE = (177, 66, 95, 95)
"""The face in ``astronaut.png`` (x, y, width, height): brows to chin, ear to ear."""
_SPEECH_START_S = 0.3
SILENT = -1
"""The audio version of a track silenced by :func:`silence_audio`."""

GRAMMAR: tuple[tuple[str, ...], ...] = (
    ("the", "a"),
    ("red", "green", "blue", "small", "big"),
    ("cat", "dog", "bird", "fish", "horse"),
    ("runs", "jumps", "sits", "sleeps", "sings", "swims"),
    ("near", "under", "over", "behind"),
    ("the", "a"),
    ("ball", "box", "car", "house", "tree", "boat"),
)
"""The sentences spoken in the clips: one word of each slot, in order."""

HASH_SEED = 42
"""xxhash64 seed of content hashes (the project's one hash seed)."""

_CLIP_RE = re.compile(r"clip-(\d{4,})")
_VIDEO_CODEC = "mpeg4"  # FFmpeg's own encoder: in every PyAV wheel, deterministic on 1 thread
_VIDEO_BIT_RATE = 600_000


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


# --- what a clip shows and says -----------------------------------------------------------


def spoken_text(cid: str, version: int = 0) -> str:
    """The sentence spoken in a clip at an audio edit version (one word of each slot)."""
    picks = _uniform(_seed(cid, "audio", max(version, 0)), len(GRAMMAR))
    return " ".join(slot[int(p * len(slot))] for slot, p in zip(GRAMMAR, picks, strict=True))


def _track(cid: str, version: int) -> NDArray[np.int64]:
    """Top-left corner (x, y) of the cut-out in each frame: a straight line, inside the
    center square of the frame (the part ``video/crop`` keeps)."""
    width, height = FRAME_SIZE
    left = (width - height) // 2
    u = _uniform(_seed(cid, "frames", version), 4)
    start = np.array([left + u[0] * (height - PATCH_SIZE), u[1] * (height - PATCH_SIZE)])
    end = np.array([left + u[2] * (height - PATCH_SIZE), u[3] * (height - PATCH_SIZE)])
    steps = np.linspace(0.0, 1.0, N_FRAMES)[:, None]
    return np.asarray(np.rint(start + (end - start) * steps), dtype=np.int64)


def face_boxes(cid: str, version: int = 0) -> list[tuple[int, int, int, int]]:
    """Where the face is in each frame of a clip at a frames edit version: (x, y, w, h)."""
    left, top, side = _SOURCE_CUT
    scale = PATCH_SIZE / side
    fx, fy, fw, fh = SOURCE_FACE
    dx, dy = round((fx - left) * scale), round((fy - top) * scale)
    w, h = round(fw * scale), round(fh * scale)
    return [(int(x) + dx, int(y) + dy, w, h) for x, y in _track(cid, version)]


@functools.cache
def _patch() -> NDArray[np.uint8]:
    from skimage import data  # bundled in the wheel: no download

    left, top, side = _SOURCE_CUT
    photo = data.astronaut()[top : top + side, left : left + side]  # type: ignore[no-untyped-call]
    patch = cv2.resize(photo, (PATCH_SIZE, PATCH_SIZE), interpolation=cv2.INTER_AREA)
    return np.asarray(patch, dtype=np.uint8)


def render_frames(cid: str, version: int = 0) -> NDArray[np.uint8]:
    """The RGB frames of a clip at a frames edit version: uint8, (N_FRAMES, height, width, 3)."""
    width, height = FRAME_SIZE
    u = _uniform(_seed(cid, "background", version), 6)
    top_colour, bottom_colour = 60.0 + 140.0 * u[:3], 60.0 + 140.0 * u[3:]
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    background = np.broadcast_to(
        top_colour + (bottom_colour - top_colour) * ramp, (height, width, 3)
    ).astype(np.uint8)
    frames = np.repeat(background[None], N_FRAMES, axis=0)
    patch = _patch()
    for frame, (x, y) in zip(frames, _track(cid, version), strict=True):
        frame[y : y + PATCH_SIZE, x : x + PATCH_SIZE] = patch
    return frames


@functools.cache
def _speech(text: str) -> NDArray[np.int16]:
    return synthesize(text)


def render_audio(cid: str, version: int = 0) -> NDArray[np.int16]:
    """The audio samples of a clip (mono int16, ``SAMPLE_RATE``): silence, then the sentence,
    then silence up to ``DURATION_S``; all zeros for the version ``SILENT``."""
    samples = np.zeros(int(SAMPLE_RATE * DURATION_S), dtype=np.int16)
    if version == SILENT:
        return samples
    speech = _speech(spoken_text(cid, version))
    start = int(SAMPLE_RATE * _SPEECH_START_S)
    if start + speech.size > samples.size:
        raise ValueError(f"{cid}: the speech lasts longer than the clip ({DURATION_S} s)")
    samples[start : start + speech.size] = speech
    return samples


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


def _encode(fh: IO[bytes], frames: NDArray[np.uint8], audio: NDArray[np.int16]) -> None:
    """Mux ``frames`` (MPEG-4) and ``audio`` (AAC) into an MP4 file object."""
    width, height = FRAME_SIZE
    with av.open(fh, "w", format="mp4") as container:
        video = container.add_stream(_VIDEO_CODEC, rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = _VIDEO_BIT_RATE
        video.codec_context.thread_count = 1
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))


def write_clip(data_dir: Path, cid: str, versions: dict[str, int]) -> Path:
    """Render and write a clip's ``video.mp4`` at edit versions ``{"audio": ..,
    "frames": ..}`` (atomically); returns its path."""
    path = clip_dir(data_dir, cid) / VIDEO_FILE
    frames = render_frames(cid, versions["frames"])
    audio = render_audio(cid, versions["audio"])
    atomic_write(path, lambda fh: _encode(fh, frames, audio))
    return path


def stream_hashes(path: Path) -> dict[str, str]:
    """The data version of each field of a clip: xxhash64 (seed 42) of the packets of its audio
    (``audio``) and of its video (``frames``) stream, read without decoding."""
    digests = {name: xxhash.xxh64(seed=HASH_SEED) for name in FIELDS}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size:
                digests["frames" if packet.stream.type == "video" else "audio"].update(
                    bytes(packet)
                )
    return {name: str(d.hexdigest()) for name, d in digests.items()}


def read_frames(path: Path, every: int = 1) -> Iterator[NDArray[np.uint8]]:
    """Decode every ``every``-th video frame of an MP4 file, as RGB uint8 (height, width, 3)."""
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % every == 0:
                yield frame.to_ndarray(format="rgb24")


def read_audio(path: Path) -> NDArray[np.int16]:
    """Decode the audio track of an MP4 (or any FFmpeg-readable) file: mono int16 at
    ``SAMPLE_RATE``."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[NDArray[np.int16]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray()[0] for f in resampler.resample(None))
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)


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
    """Create clips ``start .. start + count - 1``, skipping those that already exist.

    A missing video of a clip that was edited is rewritten at the clip's edit versions.

    Args:
        data_dir: Root of the example data.
        count: How many clip ids to cover.
        start: Index of the first clip.

    Returns:
        The ids of the clips that were written, in order.
    """
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got count={count}, start={start}")
    missing = [
        cid
        for cid in map(clip_id, range(start, start + count))
        if not (clip_dir(data_dir, cid) / VIDEO_FILE).exists()
    ]
    versions = {cid: read_versions(data_dir, cid) for cid in missing}
    # Each sentence is spoken by a process of its own (see example_project.speech): start a
    # few at once, then encode.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(_speech, {spoken_text(c, v["audio"]) for c, v in versions.items()}))
    for cid in missing:
        write_clip(data_dir, cid, versions[cid])
    return missing


def silence_audio(data_dir: Path, cid: str) -> Path:
    """Replace a clip's audio track by silence of the same length, as a broken microphone
    leaves it (the frames keep their bytes). The speech model rejects it; the other steps
    take it."""
    versions = {**read_versions(data_dir, cid), "audio": SILENT}
    write_versions(data_dir, cid, versions)
    return write_clip(data_dir, cid, versions)


def list_clips(data_dir: Path) -> list[str]:
    """Ids of the clips that have a video, in clip-number order."""
    root = clips_dir(data_dir)
    if not root.is_dir():
        return []
    ids = [
        entry.name
        for entry in root.iterdir()
        if _CLIP_RE.fullmatch(entry.name) and (entry / VIDEO_FILE).is_file()
    ]
    return sorted(ids, key=clip_index)


def scan_clips(data_dir: Path) -> pl.DataFrame:
    """One row per clip, as the root feature ``video/raw`` (fields audio, frames) is written.

    Columns: ``clip_id``, ``video_path`` (absolute), and ``metaxy_data_version__audio`` /
    ``metaxy_data_version__frames`` (hashes of the packets of each track).
    """
    root = Path(data_dir).resolve()
    ids = list_clips(root)
    paths = [clip_dir(root, cid) / VIDEO_FILE for cid in ids]
    hashes = [stream_hashes(p) for p in paths]
    return pl.DataFrame(
        {
            "clip_id": ids,
            "video_path": [str(p) for p in paths],
            "metaxy_data_version__audio": [h["audio"] for h in hashes],
            "metaxy_data_version__frames": [h["frames"] for h in hashes],
        },
        schema={
            "clip_id": pl.String,
            "video_path": pl.String,
            "metaxy_data_version__audio": pl.String,
            "metaxy_data_version__frames": pl.String,
        },
    )
