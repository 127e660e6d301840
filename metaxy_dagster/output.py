"""``MetaxyOutput``: what a metaxy asset returns when some samples failed.

A metaxy asset's function returns a frame of the samples it computed. When some samples
cannot be computed (a corrupt video, an empty audio track), it returns a
:class:`MetaxyOutput` instead: the rows it computed and the samples that failed, each with its
error message. The rows are written, the failures recorded with the provenance they were
tried under, and later increments leave those samples out until their inputs or code change
or a retry is asked for (see :mod:`metaxy_core.store.failures`). One bad sample no longer fails
the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MetaxyOutput"]


@dataclass(frozen=True)
class MetaxyOutput:
    """The rows an asset computed and the samples that failed.

    Attributes:
        rows: a Polars, pandas or Arrow frame of the computed samples, as the function
            would return it alone.
        failed: a frame of the samples that failed: their id columns (for an expansion, the
            ids of the parents that failed) and ``error``, the message of each.

    Example:
        .. code-block:: python

            @metaxy_asset(key="audio/embed", id_columns=["clip_id"], deps=[clips])
            def embed(increment: pl.DataFrame) -> MetaxyOutput:
                done, failed = [], []
                for clip in increment.iter_rows(named=True):
                    try:
                        done.append({"clip_id": clip["clip_id"], "dim": embed_clip(clip)})
                    except DecodeError as exc:
                        failed.append({"clip_id": clip["clip_id"], "error": str(exc)})
                return MetaxyOutput(
                    pl.DataFrame(done, schema={"clip_id": pl.String, "dim": pl.Int64}),
                    failed=pl.DataFrame(failed, schema={"clip_id": pl.String, "error": pl.String}),
                )
    """

    rows: Any
    failed: Any = None
