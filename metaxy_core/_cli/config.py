"""The project configuration: where the features are declared and which store holds them.

Read from the nearest ``metaxy.toml`` (top-level keys) or ``pyproject.toml`` (``[tool.metaxy]``)
in the working directory or above it, then overridden by ``METAXY_FEATURES``, ``METAXY_STORE``
and ``METAXY_ENGINE``. A relative store path is relative to the file's folder, which is also
put on ``sys.path`` so that the features module imports from there (as Dagster does with its
working directory).

>>> config = ProjectConfig(features="my_project.features:graph", store="metaxy.duckdb")
>>> config.engine
'duckdb'
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from metaxy_core.definitions import FeatureSpec
from metaxy_core.errors import ConfigError
from metaxy_core.graph import FeatureGraph
from metaxy_core.store.base import MetadataStore
from metaxy_core.store.uri import STORE_SCHEMES
from metaxy_core.store.uri import open_store as open_store_uri

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["CONFIG_ENV", "ProjectConfig", "find_config", "load_config", "load_graph", "open_store"]

CONFIG_ENV = "METAXY_CONFIG"
"""Environment variable naming the configuration file, instead of searching for one."""

_HINT = (
    'Add e.g. features = "my_project.features:graph" under [tool.metaxy] in pyproject.toml '
    "(or in metaxy.toml), or set METAXY_FEATURES."
)


class ProjectConfig(BaseSettings):
    """What ``metaxy`` needs to know about a project."""

    model_config = SettingsConfigDict(env_prefix="METAXY_", extra="forbid")

    features: str = Field(
        description="Where the feature graph is declared: 'module:attribute', the attribute "
        "being a FeatureGraph, a list of FeatureSpec, or a function returning either. For a "
        "Dagster code location: graph = metaxy_dagster.feature_graph(defs) in its module."
    )
    store: str = Field(
        default="metaxy.duckdb",
        description="The metadata store: a DuckDB file path (relative to the configuration "
        "file), or a store URI: 'duckdb:///absolute/path.duckdb', 'delta+file:///folder', "
        "'delta+s3://bucket/prefix', 'clickhouse://host/db', or 'memory://' (empty, for "
        "trying things).",
    )
    engine: Literal["duckdb", "polars"] = Field(
        default="duckdb", description="Engine resolving increments in a DuckDB store."
    )
    _project_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def project_dir(self) -> Path:
        """The folder of the configuration file (the working directory without one)."""
        return self._project_dir

    @field_validator("features")
    @classmethod
    def _features(cls, value: str) -> str:
        module, sep, attribute = value.partition(":")
        if not sep or not module.strip() or not attribute.strip():
            raise ValueError(f"{value!r} is not 'module:attribute'")
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (given to the constructor), never the reverse.
        return env_settings, init_settings


def find_config(start: Path) -> Path | None:
    """The nearest ``metaxy.toml``, or ``pyproject.toml`` with ``[tool.metaxy]``, from
    ``start`` upwards; ``metaxy.toml`` wins within one folder."""
    for folder in [start.resolve(), *start.resolve().parents]:
        if (folder / "metaxy.toml").is_file():
            return folder / "metaxy.toml"
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "metaxy" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the file's syntax.") from None


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> ProjectConfig:
    """The configuration from ``path`` (else ``$METAXY_CONFIG``, else the nearest file), with
    the environment's overrides. Without any file, the environment alone must name the
    features."""
    env_path = os.environ.get(CONFIG_ENV)
    here = Path.cwd() if cwd is None else cwd
    if path is None and env_path:
        path = Path(env_path)
    if path is None:
        path = find_config(here)
    values: dict[str, Any] = {}
    where = "the environment (no metaxy.toml or [tool.metaxy] found)"
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"configuration file {str(path)!r} does not exist. {_HINT}")
        values = _read_toml(path)
        if path.name == "pyproject.toml":
            values = values.get("tool", {}).get("metaxy", {})
        where = str(path)
    try:
        config = ProjectConfig(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(p) for p in error["loc"]) or "configuration"
        if error["type"] == "missing":
            raise ConfigError(f"{where}: {name!r} is not set. {_HINT}") from None
        if error["type"] == "extra_forbidden":
            known = ", ".join(ProjectConfig.model_fields)
            raise ConfigError(
                f"{where}: unknown setting {name!r}; the settings are: {known}. Remove or "
                "rename it."
            ) from None
        raise ConfigError(
            f"{where}: setting {name!r}: {error['msg']}. "
            + (_HINT if name == "features" else "See `metaxy --help`.")
        ) from None
    config._project_dir = (path.parent if path is not None else here).resolve()
    return config


def load_graph(config: ProjectConfig) -> FeatureGraph:
    """Import ``config.features`` and return its feature graph."""
    module_name, _, attribute = config.features.partition(":")
    folder = str(config.project_dir)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"features = {config.features!r}: cannot import module {module_name!r} ({exc}). "
            f"Make it importable from {folder} (or install it), or fix the module path."
        ) from None
    try:
        value: Any = getattr(module, attribute)
    except AttributeError:
        raise ConfigError(
            f"features = {config.features!r}: module {module_name!r} has no attribute "
            f"{attribute!r}. Name the FeatureGraph (or the function returning it) it defines."
        ) from None
    if callable(value) and not isinstance(value, FeatureGraph):
        value = value()
    if isinstance(value, FeatureGraph):
        return value
    if type(value) in (list, tuple) and all(isinstance(s, FeatureSpec) for s in value):
        return FeatureGraph(value)
    raise ConfigError(
        f"features = {config.features!r} is a {type(value).__name__}, not a FeatureGraph. "
        "Point it at a FeatureGraph, a list of FeatureSpec, or a function returning one (for "
        "Dagster definitions: add graph = metaxy_dagster.feature_graph(defs) to that module "
        "and name it)."
    )


def store_location(config: ProjectConfig) -> str:
    """The store's URI (see :mod:`metaxy_core.store.uri`); a path, relative paths resolved
    against the project."""
    uri = config.store.strip()
    if uri in ("memory://", ":memory:"):
        return "memory://"
    if uri.startswith("duckdb://"):
        uri = uri.removeprefix("duckdb://")
    elif "://" in uri:
        scheme = uri.split("://", 1)[0]
        if scheme.lower() not in STORE_SCHEMES:
            raise ConfigError(
                f"store = {config.store!r}: unknown scheme {scheme!r}; this metaxy opens "
                f"{', '.join(f'{s}://' for s in STORE_SCHEMES)}, or a plain path of a DuckDB "
                "file. Use one of those."
            )
        return uri
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else config.project_dir / path)


def open_store(config: ProjectConfig, graph: FeatureGraph) -> MetadataStore:
    """The store the configuration names, over ``graph``."""
    return open_store_uri(
        store_location(config), graph, engine=config.engine, base_dir=config.project_dir
    )
