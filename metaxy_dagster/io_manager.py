"""The IO manager: writes what a metaxy asset computed, loads current rows for downstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
import narwhals as nw
import polars as pl
from pydantic import Field

from metaxy_core import FeatureGraph, SampleFilter
from metaxy_dagster.features import graph_of, partitions_of
from metaxy_dagster.partitions import HashShardPartitions
from metaxy_dagster.resource import MetaxyStoreResource

__all__ = ["MetaxyIOManager", "MetaxyWrite"]

_PREVIEW_ROWS = 10


@dataclass(frozen=True)
class MetaxyWrite:
    """What a metaxy asset hands its IO manager: rows to append, samples to delete and
    samples that failed (key columns, their provenance and ``error``), of a feature of
    ``graph``."""

    feature: str
    rows: pl.DataFrame
    orphaned: pl.DataFrame
    graph: FeatureGraph
    failed: pl.DataFrame | None = None


class MetaxyIOManager(dg.ConfigurableIOManager):
    """Writes metaxy assets' samples to the store with every system column; loads inputs.

    Example:
        .. code-block:: python

            store = MetaxyStoreResource(path="metaxy.duckdb")
            defs = dg.Definitions(
                assets=[raw, crop],
                resources={
                    "metaxy_store": store,
                    "metaxy_io_manager": MetaxyIOManager(store=store),
                },
            )
    """

    store: MetaxyStoreResource
    preview_rows: int = Field(
        default=_PREVIEW_ROWS, description="Rows shown in the preview table of a materialization."
    )

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if not isinstance(obj, MetaxyWrite):
            raise TypeError(
                f"MetaxyIOManager stores outputs of @metaxy_asset only; asset "
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}. Give it "
                "another io_manager_key."
            )
        store = self.store.get_store(obj.graph)
        written = deleted = failed = 0
        with store:
            if obj.rows.height or (obj.failed is not None and obj.failed.height):
                result = store.write(
                    obj.feature, obj.rows, run_id=context.run_id, failed=obj.failed
                )
                written, failed = result.rows, result.failed
            if obj.orphaned.height:
                deleted = store.delete(obj.feature, obj.orphaned, run_id=context.run_id).rows
            seq = store.last_write_seq(obj.feature)
        preview = obj.rows.head(self.preview_rows)
        context.add_output_metadata(
            {
                "metaxy/rows_written": written,
                "metaxy/rows_deleted": deleted,
                "metaxy/failed_recorded": failed,
                "metaxy/write_seq": seq,
                "metaxy/store": self.store.path,
                "metaxy/preview": dg.MetadataValue.md(_markdown(preview)),
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        """The current rows of the upstream metaxy asset: those of the partitions the
        downstream run maps to, when the upstream is partitioned; a ``LazyFrame`` over them
        when the input is annotated ``pl.LazyFrame``."""
        feature = "/".join(context.asset_key.path)
        upstream = context.upstream_output
        metadata = upstream.definition_metadata if upstream is not None else {}
        graph = graph_of(metadata)
        if graph is None:
            raise TypeError(
                f"MetaxyIOManager loads metaxy assets only; {feature!r} is not one (no "
                "@metaxy_asset metadata). Load it with the IO manager that stored it."
            )
        store = self.store.get_store(graph)
        filters: list[SampleFilter | None] = [None]
        if context.has_asset_partitions:
            partitions = partitions_of(metadata, context.asset_partitions_def)
            keys = list(context.asset_partition_keys)
            if isinstance(partitions, HashShardPartitions):
                filters = [partitions.filter(k) for k in keys]
            elif partitions is not None:
                filters = [nw.col(partitions.column).cast(nw.String()).is_in(keys)]
        with store:
            frames = [store.read(feature, filter=f) for f in filters]
        rows = pl.concat(frames) if len(frames) > 1 else frames[0]
        wanted = getattr(context.dagster_type, "typing_type", None)
        return rows.lazy() if wanted is pl.LazyFrame else rows


def _markdown(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "_no rows written_"
    shown = frame.select(
        c for c in frame.columns if not c.startswith("metaxy_") or c.endswith("provenance")
    )
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.iter_rows()]
    return "\n".join([header, rule, *body])
