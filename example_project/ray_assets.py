"""The example's crop and face steps computed on Ray, the increment never passing through
Dagster.

::

    video/raw {audio, frames}            scanned in the Dagster process, as in assets.py
    └── video/crop {audio, frames}       on Ray: the per-clip crop of compute.py
        └── vision/faces {faces}         on Ray: the per-clip face detection

Each downstream function reads its increment with
:func:`~metaxy_core.integrations.ray.read_increment` (every read task resolves one hash shard
of the clips on a Ray worker), runs the same per-clip step as the in-process assets with
``map_batches``, and writes the results from the workers through
:class:`~metaxy_core.integrations.ray.MetaxyDatasink`. It returns no rows itself: the IO
manager then writes nothing more, and the Dagster data version, counts and pruning are those
of the in-process assets. The features are the same, so a store filled by either set of
assets is the same store.

Ray is started by the caller (``ray.init(...)``), or by Ray Data itself on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa

from example_project.assets import GROUP, ID, build_assets
from example_project.compute import crop, detect_faces, output_dir
from example_project.media import content_hash
from metaxy_core import FieldDep, FieldSpec, columns
from metaxy_core.integrations.ray import MetaxyDatasink, read_increment
from metaxy_dagster import MetaxyStoreResource, feature_graph, metaxy_asset

__all__ = ["RAY_WRITES", "build_ray_assets", "crop_batch", "faces_batch"]

RAY_WRITES = "ray/writes"
"""Metadata key of the observation each Ray asset logs: one entry per write task."""

_CARRIED = f"^{columns.PREFIX}(provenance|upstream_data_version)__.*$"
"""The increment's expected provenance, carried to the datasink with each result."""


def _results(batch: pa.Table, rows: list[dict[str, object]]) -> pa.Table:
    """Per-clip results of ``batch``, with the increment's provenance columns of each clip."""
    carried = pl.from_arrow(batch)
    assert isinstance(carried, pl.DataFrame)
    computed = pl.DataFrame(rows, infer_schema_length=None)
    return carried.select(ID, pl.col(_CARRIED)).join(computed, on=ID).to_arrow()


def crop_batch(batch: pa.Table, *, data_dir: str) -> pa.Table:
    """Crop every clip of a batch of the ``video/crop`` increment (runs on a Ray worker)."""
    out = output_dir(Path(data_dir), "crop")
    clips = batch.select([ID, "video_path"]).to_pylist()
    rows: list[dict[str, object]] = []
    for r in clips:
        result = crop(Path(r["video_path"]), out, clip_id=r[ID])
        # A content hash of each output file is its field's data version, as in-process.
        rows.append(
            {
                ID: r[ID],
                **result,
                columns.data_version_column("audio"): content_hash(Path(result["crop_audio_path"])),
                columns.data_version_column("frames"): content_hash(
                    Path(result["crop_frames_path"])
                ),
            }
        )
    return _results(batch, rows)


def faces_batch(batch: pa.Table, *, data_dir: str) -> pa.Table:
    """Detect faces in every clip of a batch of the ``vision/faces`` increment (on Ray)."""
    out = output_dir(Path(data_dir), "faces")
    clips = batch.select([ID, "crop_frames_path"]).to_pylist()
    rows = [
        {ID: r[ID], **detect_faces(Path(r["crop_frames_path"]), out, clip_id=r[ID])} for r in clips
    ]
    return _results(batch, rows)


def build_ray_assets(data_dir: Path, *, blocks: int | None = None) -> list[dg.AssetsDefinition]:
    """``video/raw`` as in :func:`~example_project.assets.build_assets`, and ``video/crop`` and
    ``vision/faces`` computed on Ray in ``blocks`` read tasks (default: one per Ray CPU)."""
    data_dir = Path(data_dir).resolve()
    video_raw = build_assets(data_dir)[0]

    def on_ray(
        context: dg.AssetExecutionContext,
        store: MetaxyStoreResource,
        asset: dg.AssetsDefinition,
        step: Callable[..., pa.Table],
    ) -> pl.DataFrame:
        feature = "/".join(asset.key.path)
        metadata_store = store.get_store(feature_graph([asset]))
        sink = MetaxyDatasink(metadata_store, feature, run_id=context.run.run_id)
        read_increment(metadata_store, feature, blocks=blocks).map_batches(
            step, fn_kwargs={"data_dir": str(data_dir)}, batch_format="pyarrow"
        ).write_datasink(sink)
        workers = sorted({w.worker for w in sink.writes if w.rows})
        context.log.info(
            f"{feature}: Ray wrote {sink.rows_written} clip(s) in {len(sink.writes)} write "
            f"task(s) on {len(workers)} worker(s)"
        )
        context.log_event(
            dg.AssetObservation(
                asset_key=asset.key,
                metadata={
                    RAY_WRITES: dg.MetadataValue.json(
                        [{"rows": w.rows, "worker": w.worker} for w in sink.writes]
                    )
                },
            )
        )
        # Everything is in the store already: the IO manager has nothing left to write.
        return pl.DataFrame(schema={ID: pl.String})

    @metaxy_asset(
        key="video/crop",
        id_columns=[ID],
        deps=[video_raw],
        fields=["audio", "frames"],
        columns={"crop_frames_path": "string", "crop_audio_path": "string", "n_frames": "int"},
        group_name=GROUP,
    )
    def video_crop(
        context: dg.AssetExecutionContext,
        increment: pl.DataFrame,
        metaxy_store: MetaxyStoreResource,
    ) -> pl.DataFrame:
        """Each clip decoded: center-cropped grey frames and the audio track, on Ray."""
        return on_ray(context, metaxy_store, video_crop, crop_batch)

    @metaxy_asset(
        key="vision/faces",
        id_columns=[ID],
        deps=[video_crop],
        fields=[FieldSpec(key="faces", deps=(FieldDep("video/crop", ["frames"]),))],
        columns={"faces_path": "string", "n_faces": "int"},
        group_name=GROUP,
    )
    def vision_faces(
        context: dg.AssetExecutionContext,
        increment: pl.DataFrame,
        metaxy_store: MetaxyStoreResource,
    ) -> pl.DataFrame:
        """Face boxes found in the cropped frames (reads the crop's frames only), on Ray."""
        return on_ray(context, metaxy_store, vision_faces, faces_batch)

    return [video_raw, video_crop, vision_faces]
