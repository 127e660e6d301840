"""The store resource: where the metadata lives, for assets, IO managers, sensors and checks."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from metaxy_core import FeatureGraph, MetadataStore, open_store

__all__ = ["MetaxyStoreResource"]


class MetaxyStoreResource(dg.ConfigurableResource):  # type: ignore[type-arg]  # generic only in stubs
    """Where the metadata of a code location's features lives: an embedded DuckDB file, or
    any store URI (``delta+s3://bucket/prefix``, see :func:`metaxy_core.open_store`).

    The resource holds where, not what: :meth:`get_store` takes the feature graph, which
    :func:`~metaxy_dagster.feature_graph` builds from the assets at hand.

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

    path: str = Field(
        default="metaxy.duckdb",
        description="Path of the DuckDB file holding the metadata, created on first use, or a "
        "store URI ('delta+file:///folder', 'delta+s3://bucket/prefix', 'memory://', ...). "
        "Relative paths are relative to the working directory of the code location.",
    )
    engine: str = Field(
        default="duckdb",
        description="Engine resolving increments: 'duckdb' (SQL inside the file), 'polars', or "
        "'spark' (a Delta store's increments in Spark SQL, in the process's active session).",
    )
    lock_timeout_seconds: float = Field(
        default=120.0,
        description="How long a step waits for another process to release the store file.",
    )

    def get_store(self, graph: FeatureGraph) -> MetadataStore:
        """The store of the features of ``graph``, e.g. ``feature_graph(defs)``."""
        if self.engine not in ("duckdb", "polars", "spark"):
            raise ValueError(f"engine must be 'duckdb', 'polars' or 'spark', got {self.engine!r}.")
        return open_store(
            self.path,
            graph,
            engine=self.engine,  # type: ignore[arg-type]  # checked above
            lock_timeout=self.lock_timeout_seconds,
        )
