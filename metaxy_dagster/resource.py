"""The store resource: where the metadata lives, for assets, IO managers, sensors and checks."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
from pydantic import Field

from metaxy_core import FeatureGraph, MetadataStore, SampleRetryPolicy, open_store

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

    retry_failed: bool = Field(
        default=False,
        description="Compute again the samples that failed under their current inputs and "
        "code (by default they are left out until those change). Set it in a run's config "
        "(resources.metaxy_store.config.retry_failed: true) to retry them in that run.",
    )
    max_sample_retries: int = Field(
        default=0,
        description="How many times a failed sample comes back by itself under unchanged "
        "inputs and code (0: never; see metaxy_core.SampleRetryPolicy).",
    )
    sample_retry_backoff_seconds: float = Field(
        default=0.0,
        description="Wait before a failed sample's first automatic retry; doubled after "
        "each further failure.",
    )

    def get_store(self, graph: FeatureGraph) -> MetadataStore:
        """The store of the features of ``graph``, e.g. ``feature_graph(defs)``."""
        if self.engine not in ("duckdb", "polars", "spark"):
            raise ValueError(f"engine must be 'duckdb', 'polars' or 'spark', got {self.engine!r}.")
        store = open_store(
            self.path,
            graph,
            engine=self.engine,  # type: ignore[arg-type]  # checked above
            lock_timeout=self.lock_timeout_seconds,
        )
        if self.max_sample_retries:
            backoff = timedelta(seconds=self.sample_retry_backoff_seconds)
            store.sample_retry = SampleRetryPolicy(self.max_sample_retries, backoff)
        return store
