"""The example pipeline as metaxy assets: one feature per step, one row per clip (an MP4).

::

    video/raw {audio, frames}            scan the data folder: a hash of each track's packets
    ├── video/crop {audio, frames}       decode: crop.audio <- raw.audio, crop.frames <- raw.frames
    │   └── vision/faces {faces}         OpenCV Haar cascade; faces <- crop.frames
    ├── audio/features {features}        MFCCs; features <- raw.audio
    └── audio/transcript {text}          PocketSphinx; text <- raw.audio
    train/manifest {default}             <- transcript, faces and features (all their fields)

Each function receives only its increment: the clips that are new, or whose fields it reads
changed. Editing the audio of a clip therefore recomputes crop, features, transcript and the
manifest for that clip, and never the face detection, which reads only the cropped frames.

Every step writes its files under ``<data_dir>/outputs/<step>/`` (see
:func:`example_project.compute.output_dir`) and returns their paths and a few numbers, which
the IO manager stores with the clip's versions.

The transcript step shows the rest of what a Dagster asset function takes: its model is a
resource (:class:`SpeechModel`, by parameter) and it has run config (:class:`TranscriptConfig`).
:func:`build_resources` wires every resource the assets need.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import reduce
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from example_project.compute import (
    NoSpeechError,
    TranscriptResult,
    audio_features,
    build_manifest,
    crop,
    detect_faces,
    output_dir,
    transcribe,
)
from example_project.media import content_hash, scan_clips
from metaxy_core import FieldDep, FieldSpec, columns
from metaxy_dagster import (
    MetaxyIOManager,
    MetaxyOutput,
    MetaxyStoreResource,
    feature_graph,
    metaxy_asset,
)

__all__ = [
    "FEATURES",
    "GROUP",
    "ID",
    "SpeechModel",
    "TranscriptConfig",
    "build_assets",
    "build_resources",
    "describe_increment",
]

ID = "clip_id"
"""The id column of every feature: one sample per clip."""
GROUP = "multimodal"
"""The Dagster asset group of the example's assets."""
FEATURES = (
    "video/raw",
    "video/crop",
    "vision/faces",
    "audio/features",
    "audio/transcript",
    "train/manifest",
)
"""The feature keys, upstream first."""

_SHOWN_IDS = 10


class SpeechModel(dg.ConfigurableResource):  # type: ignore[type-arg]  # generic only in stubs
    """The speech-to-text model, as a resource: PocketSphinx with the US English model its
    wheel bundles, decoding against the clips' sentence grammar."""

    name: str = Field(default="pocketsphinx-en-us", description="Which model transcribes.")

    def transcribe(self, video_path: Path, out_dir: Path, *, clip_id: str) -> TranscriptResult:
        """Transcribe one clip's audio track into ``out_dir``; returns the file and its text."""
        return transcribe(video_path, out_dir, clip_id=clip_id)


class TranscriptConfig(dg.Config):
    """Run config of ``audio/transcript``."""

    log_text: bool = Field(default=False, description="Log each clip's transcript.")


def build_resources(store_path: Path | str) -> dict[str, object]:
    """Every resource the example's assets need, over the store file ``store_path``."""
    store = MetaxyStoreResource(path=str(store_path))
    return {
        "metaxy_store": store,
        "metaxy_io_manager": MetaxyIOManager(store=store),
        "speech_model": SpeechModel(),
    }


def describe_increment(feature: str, increment: pl.DataFrame) -> str:
    """One log line: how many clips are new or stale, which fields are stale, and which clips.

    >>> frame = pl.DataFrame(
    ...     {"clip_id": ["c1", "c2", "c3"], "metaxy_changed_fields": [None, ["audio"], ["audio"]]},
    ...     schema={"clip_id": pl.String, "metaxy_changed_fields": pl.List(pl.String)},
    ... )
    >>> describe_increment("video/crop", frame)
    'video/crop: computing 3 clip(s): 1 new, 2 stale (stale fields: audio x2): c1, c2, c3'
    """
    changed = (
        increment.get_column(columns.CHANGED_FIELDS)
        if columns.CHANGED_FIELDS in increment.columns
        else pl.Series(columns.CHANGED_FIELDS, [None] * increment.height, pl.List(pl.String))
    )
    stale = changed.is_not_null().sum()
    counts = (
        changed.explode()
        .drop_nulls()
        .alias("field")
        .value_counts(name="n")
        .sort(["n", "field"], descending=[True, False])
    )
    by_field = ", ".join(f"{name} x{n}" for name, n in counts.iter_rows()) or "none"
    ids = increment.get_column(ID).sort().head(_SHOWN_IDS).to_list()
    more = f" and {increment.height - _SHOWN_IDS} more" if increment.height > _SHOWN_IDS else ""
    return (
        f"{feature}: computing {increment.height} clip(s): {increment.height - stale} new, "
        f"{stale} stale (stale fields: {by_field}): {', '.join(ids)}{more}"
    )


def build_assets(
    data_dir: Path,
    *,
    automation_condition: dg.AutomationCondition[dg.AssetKey] | None = None,
    fields: Mapping[str, Sequence[FieldSpec]] | None = None,
) -> list[dg.AssetsDefinition]:
    """The example's assets over the clips of ``data_dir``, upstream first.

    ``automation_condition`` (e.g. :func:`metaxy_dagster.metaxy_eager`) is given to every
    downstream asset, for declarative automation instead of the sensor. ``fields`` replaces
    the fields of some features, feature key -> fields, as an author changing the code would
    (a bumped code version, a field reading more).

    Each asset names its upstream assets in ``deps``, and so carries the features it reads:
    :func:`metaxy_dagster.feature_graph` builds the graph from the assets returned.
    """
    data_dir = Path(data_dir).resolve()
    changed = dict(fields or {})

    def fields_of(
        key: str, declared: Sequence[FieldSpec | str] | None
    ) -> Sequence[FieldSpec | str] | None:
        return list(changed.pop(key)) if key in changed else declared

    @metaxy_asset(
        key="video/raw",
        id_columns=[ID],
        fields=fields_of("video/raw", ["audio", "frames"]),
        columns={"video_path": "string"},
        group_name=GROUP,
    )
    def video_raw(context: dg.AssetExecutionContext) -> pl.DataFrame:
        """Every clip of the data folder, with a hash of its audio track and of its video track.

        Only clips that are new or whose content changed are written; clips whose folder is gone
        are soft-deleted.
        """
        started = time.perf_counter()
        clips = scan_clips(data_dir)
        context.log.info(f"video/raw: found {clips.height} clip(s) in {data_dir}")
        _took(context, "video/raw", started, clips.height, verb="scanned")
        return clips

    @metaxy_asset(
        key="video/crop",
        id_columns=[ID],
        deps=[video_raw],
        fields=fields_of("video/crop", ["audio", "frames"]),
        columns={"crop_frames_path": "string", "crop_audio_path": "string", "n_frames": "int"},
        group_name=GROUP,
        automation_condition=automation_condition,
    )
    def video_crop(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        """Each clip decoded: center-cropped grey frames (2 per second) and the audio track.

        The data version of each field is a content hash of the file it produced, so a recompute
        that yields the same bytes (the frames, when only the audio changed) stops there.
        """
        started = _start(context, "video/crop", increment)
        out = output_dir(data_dir, "crop")
        # One call per clip: each step reads and writes files, there is no frame math to batch.
        results = [
            _with_content_hashes({ID: cid, **crop(Path(video), out, clip_id=cid)})
            for cid, video in increment.select(ID, "video_path").iter_rows()
        ]
        _took(context, "video/crop", started, len(results))
        return _frame(
            results,
            ID,
            "crop_frames_path",
            "crop_audio_path",
            "n_frames",
            columns.data_version_column("audio"),
            columns.data_version_column("frames"),
        )

    @metaxy_asset(
        key="vision/faces",
        id_columns=[ID],
        deps=[video_crop],
        fields=fields_of(
            "vision/faces", [FieldSpec(key="faces", deps=(FieldDep("video/crop", ["frames"]),))]
        ),
        columns={"faces_path": "string", "n_faces": "int"},
        group_name=GROUP,
        automation_condition=automation_condition,
    )
    def vision_faces(context: dg.AssetExecutionContext, increment: pl.DataFrame) -> pl.DataFrame:
        """Face boxes found by OpenCV's Haar cascade in the cropped frames (reads the crop's
        frames only)."""
        started = _start(context, "vision/faces", increment)
        out = output_dir(data_dir, "faces")
        results = [
            {ID: cid, **detect_faces(Path(frames), out, clip_id=cid)}
            for cid, frames in increment.select(ID, "crop_frames_path").iter_rows()
        ]
        _took(context, "vision/faces", started, len(results))
        return _frame(results, ID, "faces_path", "n_faces")

    @metaxy_asset(
        key="audio/features",
        id_columns=[ID],
        deps=[video_raw],
        fields=fields_of(
            "audio/features", [FieldSpec(key="features", deps=(FieldDep("video/raw", ["audio"]),))]
        ),
        columns={"features_path": "string", "rms": "float", "dominant_hz": "float"},
        group_name=GROUP,
        automation_condition=automation_condition,
    )
    def audio_features_asset(
        context: dg.AssetExecutionContext, increment: pl.DataFrame
    ) -> pl.DataFrame:
        """MFCCs, RMS energy and dominant frequency of each clip's audio (reads the audio
        only)."""
        started = _start(context, "audio/features", increment)
        out = output_dir(data_dir, "features")
        results = [
            {ID: cid, **audio_features(Path(video), out, clip_id=cid)}
            for cid, video in increment.select(ID, "video_path").iter_rows()
        ]
        _took(context, "audio/features", started, len(results))
        return _frame(results, ID, "features_path", "rms", "dominant_hz")

    @metaxy_asset(
        key="audio/transcript",
        id_columns=[ID],
        deps=[video_raw],
        fields=fields_of(
            "audio/transcript", [FieldSpec(key="text", deps=(FieldDep("video/raw", ["audio"]),))]
        ),
        columns={"transcript_path": "string", "text": "string"},
        group_name=GROUP,
        automation_condition=automation_condition,
    )
    def audio_transcript(
        context: dg.AssetExecutionContext,
        increment: pl.DataFrame,
        config: TranscriptConfig,
        speech_model: SpeechModel,
    ) -> MetaxyOutput:
        """A transcript of each clip's audio, by the speech model (reads the audio only).

        A clip the model rejects (a silent track) is returned as failed, with the model's
        message: the other clips are written, and that one is not tried again until its audio
        changes.
        """
        started = _start(context, "audio/transcript", increment)
        out = output_dir(data_dir, "transcript")
        results: list[dict[str, object]] = []
        failed: list[dict[str, object]] = []
        for cid, video in increment.select(ID, "video_path").iter_rows():
            try:
                results.append({ID: cid, **speech_model.transcribe(Path(video), out, clip_id=cid)})
            except NoSpeechError as exc:
                failed.append({ID: cid, "error": str(exc)})
        _took(context, "audio/transcript", started, len(results), failed=len(failed))
        if config.log_text:
            for result in results:
                context.log.info(
                    f"audio/transcript: {result[ID]} [{speech_model.name}]: {result['text']}"
                )
        rows = (
            _frame(results, ID, "transcript_path", "text")
            if results
            else pl.DataFrame(
                schema={ID: pl.String, "transcript_path": pl.String, "text": pl.String}
            )
        )
        return MetaxyOutput(
            rows, failed=pl.DataFrame(failed, schema={ID: pl.String, "error": pl.String})
        )

    @metaxy_asset(
        key="train/manifest",
        id_columns=[ID],
        deps=[audio_transcript, vision_faces, audio_features_asset],
        fields=fields_of("train/manifest", None),
        columns={"manifest_path": "string", "manifest_clips": "int"},
        group_name=GROUP,
        automation_condition=automation_condition,
    )
    def train_manifest(
        context: dg.AssetExecutionContext,
        increment: pl.DataFrame,
        metaxy_store: MetaxyStoreResource,
    ) -> pl.DataFrame:
        """The training manifest: one JSONL file per run listing every clip's outputs.

        The file covers all current clips (read from the store); the rows written are those of
        the clips whose transcript, faces or features changed, each pointing at the new file.
        """
        started = _start(context, "train/manifest", increment)
        # The store resource, by parameter, over the graph of the features the manifest reads.
        store = metaxy_store.get_store(feature_graph([train_manifest]))
        parts = {
            "audio/transcript": ["transcript_path", "text"],
            "vision/faces": ["faces_path", "n_faces"],
            "audio/features": ["features_path", "rms", "dominant_hz"],
        }
        current = [store.read(feature, columns=[ID, *names]) for feature, names in parts.items()]
        rows = reduce(lambda left, right: left.join(right, on=ID, how="inner"), current)
        path = output_dir(data_dir, "manifest") / f"train-{context.run.run_id}.jsonl"
        build_manifest(rows.sort(ID), path)
        context.log.info(f"train/manifest: wrote {rows.height} clip(s) to {path}")
        _took(context, "train/manifest", started, increment.height)
        return increment.select(ID).with_columns(
            manifest_path=pl.lit(str(path)), manifest_clips=pl.lit(rows.height, pl.Int64)
        )

    if changed:
        raise ValueError(
            f"build_assets: no feature {sorted(changed)[0]!r} in the example; its features "
            f"are {', '.join(FEATURES)}. Fix the key in fields=."
        )
    return [
        video_raw,
        video_crop,
        vision_faces,
        audio_features_asset,
        audio_transcript,
        train_manifest,
    ]


def _start(context: dg.AssetExecutionContext, feature: str, increment: pl.DataFrame) -> float:
    """Log what a step is given (:func:`describe_increment`); returns its start time."""
    context.log.info(describe_increment(feature, increment))
    return time.perf_counter()


def _took(
    context: dg.AssetExecutionContext,
    feature: str,
    started: float,
    clips: int,
    *,
    failed: int = 0,
    verb: str = "computed",
) -> None:
    """Log a step's time: ``audio/transcript: computed 3 clip(s) (0 failed) in 0.42 s``."""
    seconds = time.perf_counter() - started
    failures = f" ({failed} failed)" if failed else ""
    context.log.info(f"{feature}: {verb} {clips} clip(s){failures} in {seconds:.2f} s")


def _with_content_hashes(result: dict[str, object]) -> dict[str, object]:
    """A crop result with the content hash of each output file as its field's data version."""
    return {
        **result,
        columns.data_version_column("audio"): content_hash(Path(str(result["crop_audio_path"]))),
        columns.data_version_column("frames"): content_hash(Path(str(result["crop_frames_path"]))),
    }


def _frame(results: list[dict[str, object]], *names: str) -> pl.DataFrame:
    """The per-clip results of a step as a frame of the columns ``names``, in that order."""
    return pl.DataFrame(results, infer_schema_length=None).select(names)
