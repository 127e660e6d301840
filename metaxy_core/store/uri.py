"""Choosing a store by URI: one string that reads the same in Python, Dagster and the CLI.

==============================  ==========================================================
URI                             store
==============================  ==========================================================
``duckdb:///abs/metaxy.duckdb``  :class:`~metaxy_core.DuckDBMetadataStore` (a plain path too)
``delta+file:///abs/folder``     :class:`~metaxy_core.store.delta.DeltaMetadataStore`, a folder
``delta+s3://bucket/prefix``     :class:`~metaxy_core.store.delta.DeltaMetadataStore` on S3
``clickhouse://host:8123/db``    :class:`~metaxy_core.ClickHouseMetadataStore` on a server
``clickhouses://host:8443/db``   the same over HTTPS (TLS)
``chdb:///abs/folder``           :class:`~metaxy_core.ClickHouseMetadataStore`, embedded (chdb)
``memory://``                    :class:`~metaxy_core.InMemoryMetadataStore` (this process)
==============================  ==========================================================

:data:`STORE_SCHEMES` maps each scheme to the function that opens it: one entry per scheme.
A relative path (``duckdb://data/metaxy.duckdb``, or a plain one) is taken relative to
``base_dir``. Credentials never go in a URI: object stores read them from the environment
(``AWS_*``) or ``storage_options``, ClickHouse servers from ``CLICKHOUSE_USER`` and
``CLICKHOUSE_PASSWORD``.

>>> from metaxy_core import FeatureGraph, FeatureSpec
>>> graph = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"])])
>>> open_store("memory://", graph)
InMemoryMetadataStore(0 features)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from metaxy_core.errors import ConfigError
from metaxy_core.graph import FeatureGraph
from metaxy_core.store.base import MetadataStore

__all__ = ["STORE_SCHEMES", "StoreOptions", "open_store"]


@dataclass(frozen=True)
class StoreOptions:
    """What a URI does not say: settings of some stores, ignored by the others."""

    engine: Literal["duckdb", "polars", "spark"] = "duckdb"
    """Engine of a DuckDB store, or ``"spark"`` for a Delta store resolved in Spark."""
    lock_timeout: float = 120.0
    """Seconds a DuckDB file store waits for other processes."""
    storage_options: Mapping[str, str] = field(default_factory=dict)
    """Object-store options of a Delta store (endpoint, credentials, ...)."""
    base_dir: Path | None = None
    """Folder relative paths are taken from (the working directory when ``None``)."""


Opener = Callable[[str, FeatureGraph, StoreOptions], MetadataStore]


def _local(location: str, options: StoreOptions) -> Path:
    path = Path(location).expanduser()
    if path.is_absolute() or options.base_dir is None:
        return path
    return options.base_dir / path


def _duckdb(location: str, graph: FeatureGraph, options: StoreOptions) -> MetadataStore:
    from metaxy_core.store.duckdb import DuckDBMetadataStore

    if options.engine == "spark":
        raise ConfigError(
            f"store {location!r}: the Spark engine resolves increments of Delta stores only; "
            "use a 'delta+file://' or 'delta+s3://' URI, or engine 'duckdb' or 'polars'."
        )
    return DuckDBMetadataStore(
        graph,
        _local(location, options),
        engine=options.engine,
        lock_timeout=options.lock_timeout,
    )


def _memory(location: str, graph: FeatureGraph, options: StoreOptions) -> MetadataStore:
    from metaxy_core.store.memory import InMemoryMetadataStore

    return InMemoryMetadataStore(graph)


def _delta_store(uri: str, graph: FeatureGraph, options: StoreOptions) -> MetadataStore:
    try:
        from metaxy_core.store.delta import DeltaMetadataStore
    except ImportError:  # deltalake is the optional extra `delta`
        raise ConfigError(
            "a Delta store needs the 'deltalake' package: pip install 'metaxy-dagster[delta]'."
        ) from None
    engine: Literal["polars", "spark"] = "spark" if options.engine == "spark" else "polars"
    return DeltaMetadataStore(graph, uri, storage_options=options.storage_options, engine=engine)


def _delta_file(location: str, graph: FeatureGraph, options: StoreOptions) -> MetadataStore:
    return _delta_store(str(_local(location, options)), graph, options)


def _delta_s3(location: str, graph: FeatureGraph, options: StoreOptions) -> MetadataStore:
    bucket = location.split("/", 1)[0]
    if "@" in bucket:
        # Not echoed: what stands before '@' would be a key and a secret.
        raise ConfigError(
            "a delta+s3:// URI holds no credentials (it has a '@'): write "
            "'delta+s3://bucket/prefix' and give the key through AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY or the store's storage_options."
        )
    return _delta_store(f"s3://{location}", graph, options)


def _server(scheme: str) -> Opener:
    """The opener of a ClickHouse server URI with ``scheme`` (``clickhouses``: HTTPS)."""

    def opener(location: str, graph: FeatureGraph, options: StoreOptions) -> MetadataStore:
        if "@" in location.partition("/")[0]:
            raise ConfigError(
                f"a {scheme}:// store URI holds credentials; credentials never go in a URI: set "
                "CLICKHOUSE_USER and CLICKHOUSE_PASSWORD (or Dagster EnvVars of the resource)."
            )
        from metaxy_core.store.clickhouse import ClickHouseMetadataStore

        return ClickHouseMetadataStore.from_uri(graph, f"{scheme}://{location}")

    return opener


def _chdb(location: str, graph: FeatureGraph, options: StoreOptions) -> MetadataStore:
    from metaxy_core.store.clickhouse import ClickHouseMetadataStore

    path, query = location.partition("?")[0], location.partition("?")[2]
    folder = _local(path, options)
    return ClickHouseMetadataStore.from_uri(
        graph, f"chdb://{folder}" + (f"?{query}" if query else "")
    )


STORE_SCHEMES: Final[dict[str, Opener]] = {
    "duckdb": _duckdb,
    "delta+file": _delta_file,
    "delta+s3": _delta_s3,
    "clickhouse": _server("clickhouse"),
    "clickhouses": _server("clickhouses"),
    "chdb": _chdb,
    "memory": _memory,
}
"""Scheme -> the function opening a store at the rest of the URI (after ``scheme://``)."""


def open_store(
    uri: str | Path,
    graph: FeatureGraph,
    *,
    engine: Literal["duckdb", "polars", "spark"] = "duckdb",
    lock_timeout: float = 120.0,
    storage_options: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
) -> MetadataStore:
    """The store at ``uri`` (see :mod:`metaxy_core.store.uri`), over ``graph``.

    A string without ``://`` is the path of a DuckDB file. Raises
    :class:`~metaxy_core.errors.ConfigError` for an unknown scheme.
    """
    options = StoreOptions(
        engine=engine,
        lock_timeout=lock_timeout,
        storage_options=dict(storage_options or {}),
        base_dir=None if base_dir is None else Path(base_dir),
    )
    text = str(uri).strip()
    if text == ":memory:":
        return _memory("", graph, options)
    if "://" not in text:
        return _duckdb(text, graph, options)
    scheme, location = text.split("://", 1)
    opener = STORE_SCHEMES.get(scheme.lower())
    if opener is None:
        raise ConfigError(
            f"store URI {without_credentials(text)!r}: unknown scheme {scheme!r}; choose one of "
            f"{', '.join(f'{s}://' for s in STORE_SCHEMES)}, or a plain path of a DuckDB file."
        )
    return opener(location, graph, options)


def without_credentials(uri: str) -> str:
    """The URI without what may stand before an '@' (credentials), to show in messages.

    >>> without_credentials("clickhouses://me:s3cret@ch.internal:8443/m")
    'clickhouses://ch.internal:8443/m'
    """
    scheme, _, rest = uri.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"
