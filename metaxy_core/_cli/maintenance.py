"""Store upkeep from the command line: ``metaxy vacuum`` and ``metaxy copy``.

Registered on the ``metaxy`` app when :mod:`.app` is imported. Stores are named by their
``repr``, which never holds credentials (a URI with credentials is refused before any store is
opened, without echoing it).
"""

from __future__ import annotations

from typing import Annotated

import typer

from metaxy_core.store.base import MetadataStore
from metaxy_core.store.copy import copy_store
from metaxy_core.store.uri import open_store

from .app import app, handled, project, say

__all__ = ["copy_command", "vacuum_command"]


@app.command("vacuum")
@handled
def vacuum_command(
    ctx: typer.Context,
    retention_hours: Annotated[
        int,
        typer.Option(
            "--retention-hours",
            min=0,
            help="Delete only files unused for this long; keep it above your longest run.",
        ),
    ] = 168,
) -> None:
    """Compact the store's small files and delete unused ones (Delta stores; never automatic).
    Other stores need none: the command says so and changes nothing."""
    store = project(ctx).store
    vacuum = getattr(store, "vacuum", None)
    if vacuum is None:
        say(
            f"{store!r} needs no vacuum: only a Delta store keeps small and unused files "
            "(DuckDB and ClickHouse compact their own storage)."
        )
        return
    removed: dict[str, int] = vacuum(retention_hours=retention_hours)
    for table, files in removed.items():
        say(f"{table}: {files} files deleted")
    say(f"vacuumed {len(removed)} tables of {store!r} (files unused for {retention_hours} h)")


@app.command("copy")
@handled
def copy_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The store to copy from, as a URI.")],
    target: Annotated[str, typer.Argument(help="The store to copy into (empty), as a URI.")],
) -> None:
    """Copy the current rows of every feature from SOURCE into TARGET, upstream first, with
    their provenance and data versions (nothing resolves as new or stale there). URIs as in
    the configuration's `store`, e.g. duckdb:///abs/metaxy.duckdb, delta+s3://bucket/prefix;
    credentials come from the environment, never from a URI."""
    proj = project(ctx)
    stores: list[MetadataStore] = [
        open_store(uri, proj.graph, engine=proj.config.engine, base_dir=proj.config.project_dir)
        for uri in (source, target)
    ]
    copied = copy_store(*stores)
    for feature, rows in copied.items():
        say(f"{feature}: {rows} rows")
    say(f"copied {len(copied)} features from {stores[0]!r} to {stores[1]!r}")
