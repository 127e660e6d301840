"""The example's videos cut into chunks: expansion (1:N), aggregation (N:1) and hash-shard
partitions, on the same MP4 files and the same face model as :mod:`example_project.assets`.

::

    video/raw {audio, frames}                  the scan of assets.py, partitioned
    └── video/chunks {audio, frames}           expansion: one row per second of each video
        └── vision/chunk_faces {faces}         Haar cascade per chunk; faces <- chunks.frames
            └── vision/face_tracks {track}     aggregation: one row per video, its chunks' boxes

The heavy steps are partitioned in ``HashShardPartitions(shards)``. Shards hash the ids of each
feature: ``video/raw`` and ``video/chunks`` split by the video id (a video and its chunks share
a shard), ``vision/chunk_faces`` by the chunk's ids (its shards are spread over the videos). So
run the cut of every shard, then the detection of every shard; ``vision/face_tracks``, one row
per video over all its chunks, is not partitioned. :func:`run_shards` does exactly that.

The per-field story holds through the expansion: a new audio track makes every chunk of that
video stale in ``audio`` only; the chunks' frames come out byte-identical (their data version
is a content hash), so ``vision/chunk_faces`` and ``vision/face_tracks`` receive nothing.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from numpy.typing import NDArray

from example_project.assets import GROUP, ID, describe_increment
from example_project.compute import (
    CROP_LEFT,
    CROP_SIZE,
    FRAME_STEP,
    detect_faces,
    output_dir,
    wav_bytes,
)
from example_project.media import (
    FPS,
    SAMPLE_RATE,
    atomic_write,
    content_hash,
    read_audio,
    read_frames,
    scan_clips,
)
from metaxy_core import FeatureDep, FieldDep, FieldSpec, columns
from metaxy_dagster import HashShardPartitions, metaxy_asset

__all__ = [
    "CHUNK_FEATURES",
    "CHUNK_ID",
    "CHUNK_S",
    "build_chunk_assets",
    "cut_chunks",
    "run_shards",
]

CHUNK_ID = "chunk_id"
CHUNK_S = 1
"""Seconds of video per chunk (the last chunk of a video may be shorter)."""
CHUNK_FEATURES = ("video/raw", "video/chunks", "vision/chunk_faces", "vision/face_tracks")


def cut_chunks(video_path: Path, out_dir: Path, *, clip_id: str) -> list[dict[str, object]]:
    """Cut a video into ``CHUNK_S`` chunks: per chunk, its kept frames (every
    ``FRAME_STEP``-th, center-cropped, grey; ``<clip>-<k>.npy``) and its audio
    (``<clip>-<k>.wav``), each with a content hash as the field's data version.

    Returns:
        One dict per chunk: ids, paths, the first frame's index and both data versions.
    """
    import cv2

    frames = [
        cv2.cvtColor(frame[:, CROP_LEFT : CROP_LEFT + CROP_SIZE], cv2.COLOR_RGB2GRAY)
        for frame in read_frames(video_path, every=FRAME_STEP)
    ]
    audio = read_audio(video_path)
    per_chunk = CHUNK_S * FPS // FRAME_STEP
    rows: list[dict[str, object]] = []
    for k in range(-(-len(frames) // per_chunk)):
        stem = Path(out_dir).resolve() / f"{clip_id}-{k}"
        kept = np.stack(frames[k * per_chunk : (k + 1) * per_chunk]).astype(np.uint8)
        samples = audio[k * CHUNK_S * SAMPLE_RATE : (k + 1) * CHUNK_S * SAMPLE_RATE]
        frames_path, audio_path = stem.with_suffix(".npy"), stem.with_suffix(".wav")
        _write(frames_path, _npy_bytes(kept))
        _write(audio_path, wav_bytes(samples))
        rows.append(
            {
                ID: clip_id,
                CHUNK_ID: k,
                "first_frame": k * CHUNK_S * FPS,
                "chunk_frames_path": str(frames_path),
                "chunk_audio_path": str(audio_path),
                columns.data_version_column("frames"): content_hash(frames_path),
                columns.data_version_column("audio"): content_hash(audio_path),
            }
        )
    return rows


def _npy_bytes(array: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def build_chunk_assets(data_dir: Path, *, shards: int = 2) -> list[dg.AssetsDefinition]:
    """The chunked face pipeline over the videos of ``data_dir``, in ``shards`` partitions."""
    data_dir = Path(data_dir).resolve()
    partitions = HashShardPartitions(shards)

    def took(context: dg.AssetExecutionContext, feature: str, started: float, n: int) -> None:
        seconds = time.perf_counter() - started
        context.log.info(f"{feature}: computed {n} row(s) in {seconds:.2f} s")

    @metaxy_asset(
        key="video/raw",
        id_columns=[ID],
        fields=["audio", "frames"],
        columns={"video_path": "string"},
        partitions=partitions,
        group_name=GROUP,
    )
    def video_raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
        """Every video of the data folder (the run keeps those of its shard)."""
        return scan_clips(data_dir)

    @metaxy_asset(
        key="video/chunks",
        id_columns=[ID, CHUNK_ID],
        fields=["audio", "frames"],
        deps=[FeatureDep("video/raw", lineage="expansion", select=["video_path"]), video_raw],
        columns={
            "first_frame": "int",
            "chunk_frames_path": "string",
            "chunk_audio_path": "string",
        },
        partitions=partitions,
        group_name=GROUP,
    )
    def video_chunks(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        """Each video given, cut into one-second chunks (a new video comes as one row; an
        edited one as a row per chunk it had)."""
        context.log.info(describe_increment("video/chunks", increment))
        started = time.perf_counter()
        out = output_dir(data_dir, "chunks")
        videos = increment.select(ID, "video_path").unique(ID).sort(ID)
        rows = [
            row
            for cid, video in videos.iter_rows()
            for row in cut_chunks(Path(video), out, clip_id=cid)
        ]
        took(context, "video/chunks", started, len(rows))
        return pl.DataFrame(rows, schema_overrides={CHUNK_ID: pl.Int64, "first_frame": pl.Int64})

    @metaxy_asset(
        key="vision/chunk_faces",
        id_columns=[ID, CHUNK_ID],
        fields=[FieldSpec(key="faces", deps=(FieldDep("video/chunks", ["frames"]),))],
        deps=[video_chunks],
        columns={"faces_path": "string", "n_faces": "int"},
        partitions=partitions,
        group_name=GROUP,
    )
    def chunk_faces(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        """The Haar cascade on each chunk's frames (reads the chunks' frames only)."""
        context.log.info(describe_increment("vision/chunk_faces", increment))
        started = time.perf_counter()
        out = output_dir(data_dir, "chunk_faces")
        rows = []
        for cid, k, frames, first in increment.select(
            ID, CHUNK_ID, "chunk_frames_path", "first_frame"
        ).iter_rows():
            found = detect_faces(Path(frames), out, clip_id=f"{cid}-{k}", first_frame=first)
            rows.append({ID: cid, CHUNK_ID: k, **found})
        took(context, "vision/chunk_faces", started, len(rows))
        return pl.DataFrame(rows, schema_overrides={CHUNK_ID: pl.Int64})

    @metaxy_asset(
        key="vision/face_tracks",
        id_columns=[ID],
        deps=[FeatureDep("vision/chunk_faces", lineage="aggregation"), chunk_faces],
        fields=["track"],
        columns={"track_path": "string", "n_boxes": "int"},
        group_name=GROUP,
    )
    def face_tracks(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        """Per video, the face boxes of all its chunks in frame order (one row per video)."""
        context.log.info(describe_increment("vision/face_tracks", increment))
        started = time.perf_counter()
        out = output_dir(data_dir, "face_tracks")
        rows = []
        for cid, paths in increment.select(ID, "faces_path").iter_rows():
            boxes = sorted(
                (box for path in paths for box in json.loads(Path(path).read_text())["boxes"]),
                key=lambda box: box["frame"],
            )
            path = out.resolve() / f"{cid}.json"
            text = json.dumps({"clip_id": cid, "boxes": boxes}, indent=2) + "\n"
            _write(path, text.encode())
            rows.append({ID: cid, "track_path": str(path), "n_boxes": len(boxes)})
        took(context, "vision/face_tracks", started, len(rows))
        return pl.DataFrame(rows)

    return [video_raw, video_chunks, chunk_faces, face_tracks]


def run_shards(
    assets: list[dg.AssetsDefinition],
    resources: dict[str, object],
    instance: dg.DagsterInstance | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize the chunked pipeline: the cut of every shard, the detection of every shard,
    then the face tracks, each by :func:`dagster.materialize` on ``instance``.

    Returns:
        The runs' results, in order; each has succeeded.
    """
    raw, chunks, faces, tracks = assets
    shards = raw.partitions_def.get_partition_keys() if raw.partitions_def else []
    stages = [[raw, chunks], [faces]]
    results = [
        dg.materialize(
            assets, selection=stage, resources=resources, partition_key=shard, instance=instance
        )
        for stage in stages
        for shard in shards
    ]
    results.append(
        dg.materialize(assets, selection=[tracks], resources=resources, instance=instance)
    )
    failed = [r.run_id for r in results if not r.success]
    if failed:
        raise RuntimeError(f"the chunked pipeline failed in run(s) {failed}: see their logs")
    return results
