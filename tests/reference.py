"""The reference feature graph that the tests (and the docs) reason about.

::

    video/raw {audio, frames}
    ├── video/crop {audio, frames}            default mapping: crop.audio <- raw.audio, ...
    │   └── vision/faces {faces}              faces <- crop.frames
    └── audio/transcript {text}               text <- raw.audio
    train/manifest {default}                  <- every field of vision/faces and audio/transcript

Every field starts at code version ``"1"``; pass ``code_versions`` to bump some of them.
"""

from __future__ import annotations

from metaxy_core import DEFAULT_FIELD, FeatureGraph, FeatureSpec, FieldDep, FieldSpec

__all__ = ["ID_COLUMNS", "REFERENCE_FIELDS", "reference_graph", "reference_specs"]

ID_COLUMNS = ("video_id",)

#: Every (feature, field) of the reference graph, in declaration order.
REFERENCE_FIELDS: tuple[tuple[str, str], ...] = (
    ("video/raw", "audio"),
    ("video/raw", "frames"),
    ("video/crop", "audio"),
    ("video/crop", "frames"),
    ("vision/faces", "faces"),
    ("audio/transcript", "text"),
    ("train/manifest", DEFAULT_FIELD),
)


def reference_specs(code_versions: dict[tuple[str, str], str] | None = None) -> list[FeatureSpec]:
    """The reference features, with ``code_versions[(feature, field)]`` overriding ``"1"``.

    Raises ``KeyError`` for an override that names no field of the reference graph, so a typo
    cannot silently leave a test comparing a graph with itself.
    """
    overrides = dict(code_versions or {})
    unknown = sorted(set(overrides) - set(REFERENCE_FIELDS))
    if unknown:
        raise KeyError(f"not fields of the reference graph: {unknown}")

    def cv(feature: str, field: str) -> str:
        return overrides.get((feature, field), "1")

    return [
        FeatureSpec(
            key="video/raw",
            id_columns=ID_COLUMNS,
            fields=[
                FieldSpec(key="audio", code_version=cv("video/raw", "audio")),
                FieldSpec(key="frames", code_version=cv("video/raw", "frames")),
            ],
        ),
        FeatureSpec(
            key="video/crop",
            id_columns=ID_COLUMNS,
            deps=["video/raw"],
            fields=[
                FieldSpec(key="audio", code_version=cv("video/crop", "audio")),
                FieldSpec(key="frames", code_version=cv("video/crop", "frames")),
            ],
        ),
        FeatureSpec(
            key="vision/faces",
            id_columns=ID_COLUMNS,
            deps=["video/crop"],
            fields=[
                FieldSpec(
                    key="faces",
                    code_version=cv("vision/faces", "faces"),
                    deps=[FieldDep("video/crop", ["frames"])],
                )
            ],
        ),
        FeatureSpec(
            key="audio/transcript",
            id_columns=ID_COLUMNS,
            deps=["video/raw"],
            fields=[
                FieldSpec(
                    key="text",
                    code_version=cv("audio/transcript", "text"),
                    deps=[FieldDep("video/raw", ["audio"])],
                )
            ],
        ),
        FeatureSpec(
            key="train/manifest",
            id_columns=ID_COLUMNS,
            deps=["vision/faces", "audio/transcript"],
            fields=[FieldSpec(key=DEFAULT_FIELD, code_version=cv("train/manifest", DEFAULT_FIELD))],
        ),
    ]


def reference_graph(code_versions: dict[tuple[str, str], str] | None = None) -> FeatureGraph:
    """The reference graph; see :func:`reference_specs`."""
    return FeatureGraph(reference_specs(code_versions))
