"""The feature graph: structure, field-level dependency resolution, and every invalid graph."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from metaxy_core import FeatureGraph, FeatureSpec, FieldDep, FieldRef, FieldSpec
from metaxy_core.errors import (
    CycleError,
    DuplicateFeatureError,
    FeatureNotFoundError,
    FieldNotFoundError,
    GraphError,
    IdColumnsMismatchError,
)
from tests.reference import reference_graph, reference_specs

RAW_AUDIO = FieldRef("video/raw", "audio")
RAW_FRAMES = FieldRef("video/raw", "frames")
CROP_AUDIO = FieldRef("video/crop", "audio")
CROP_FRAMES = FieldRef("video/crop", "frames")
FACES = FieldRef("vision/faces", "faces")
TEXT = FieldRef("audio/transcript", "text")
MANIFEST = FieldRef("train/manifest", "default")


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def spec(
    key: str,
    deps: Sequence[str] = (),
    fields: Sequence[str | FieldSpec] = ("default",),
    id_columns: Sequence[str] = ("id",),
) -> FeatureSpec:
    return FeatureSpec(key=key, id_columns=list(id_columns), deps=list(deps), fields=list(fields))


# -- the reference graph ----------------------------------------------------------------------


def test_reference_graph_structure(reference_graph: FeatureGraph) -> None:
    graph = reference_graph
    assert len(graph) == 5
    # Every feature after its upstream; ties broken by key.
    assert graph.topological_order() == (
        "video/raw",
        "audio/transcript",
        "video/crop",
        "vision/faces",
        "train/manifest",
    )
    assert [s.key for s in graph] == list(graph.topological_order())
    assert repr(graph) == (
        "FeatureGraph(['video/raw', 'audio/transcript', 'video/crop', 'vision/faces', "
        "'train/manifest'])"
    )
    assert "video/raw" in graph
    assert "video/missing" not in graph
    assert graph["vision/faces"].field_keys == ("faces",)


def test_reference_graph_feature_dependencies(reference_graph: FeatureGraph) -> None:
    graph = reference_graph
    assert graph.upstream("video/raw") == ()
    assert graph.upstream("train/manifest") == ("vision/faces", "audio/transcript")
    assert graph.upstream("train/manifest", transitive=True) == (
        "audio/transcript",
        "video/crop",
        "video/raw",
        "vision/faces",
    )
    assert graph.downstream("video/raw") == ("audio/transcript", "video/crop")
    assert graph.downstream("video/raw", transitive=True) == (
        "audio/transcript",
        "train/manifest",
        "video/crop",
        "vision/faces",
    )
    assert graph.downstream("train/manifest", transitive=True) == ()


def test_reference_graph_field_dependencies(reference_graph: FeatureGraph) -> None:
    graph = reference_graph
    assert graph.field_deps("video/raw", "audio") == ()
    assert graph.field_deps("video/raw", "frames") == ()
    # Default mapping: the same-named field of the upstream feature.
    assert graph.field_deps("video/crop", "audio") == (RAW_AUDIO,)
    assert graph.field_deps("video/crop", "frames") == (RAW_FRAMES,)
    # Explicit field dependencies.
    assert graph.field_deps("vision/faces", "faces") == (CROP_FRAMES,)
    assert graph.field_deps("audio/transcript", "text") == (RAW_AUDIO,)
    # Default mapping where no upstream has a field named `default`: every upstream field.
    assert graph.field_deps("train/manifest", "default") == (TEXT, FACES)
    assert set(graph.field_edges()) == {
        (RAW_AUDIO, CROP_AUDIO),
        (RAW_FRAMES, CROP_FRAMES),
        (CROP_FRAMES, FACES),
        (RAW_AUDIO, TEXT),
        (TEXT, MANIFEST),
        (FACES, MANIFEST),
    }
    assert len(graph.field_edges()) == 6


def test_pruning_audio_and_frames(reference_graph: FeatureGraph) -> None:
    graph = reference_graph
    assert graph.downstream_fields("video/raw", "audio") == (TEXT, MANIFEST, CROP_AUDIO)
    assert graph.downstream_fields("video/raw", "frames") == (MANIFEST, CROP_FRAMES, FACES)
    assert graph.downstream_fields("video/crop", "audio") == ()
    assert graph.downstream_fields("train/manifest", "default") == ()
    assert graph.upstream_fields("train/manifest", "default") == (
        TEXT,
        CROP_FRAMES,
        RAW_AUDIO,
        RAW_FRAMES,
        FACES,
    )
    assert graph.upstream_fields("vision/faces", "faces") == (CROP_FRAMES, RAW_FRAMES)
    assert graph.upstream_fields("video/raw", "audio") == ()


def test_default_mapping_mixes_same_name_and_all_fields() -> None:
    graph = FeatureGraph(
        [
            spec("video/raw", fields=["audio", "frames"]),
            spec("audio/meta", fields=["rate", "channels"]),
            spec("mix/out", deps=["video/raw", "audio/meta"], fields=["audio", "summary"]),
        ]
    )
    # `audio` exists in video/raw: only that one; audio/meta has no `audio`: all of its fields.
    assert graph.field_deps("mix/out", "audio") == (
        FieldRef("audio/meta", "channels"),
        FieldRef("audio/meta", "rate"),
        FieldRef("video/raw", "audio"),
    )
    assert graph.field_deps("mix/out", "summary") == (
        FieldRef("audio/meta", "channels"),
        FieldRef("audio/meta", "rate"),
        FieldRef("video/raw", "audio"),
        FieldRef("video/raw", "frames"),
    )


def test_explicit_field_deps_override_the_default() -> None:
    graph = FeatureGraph(
        [
            spec("video/raw", fields=["audio", "frames"]),
            spec(
                "video/crop",
                deps=["video/raw"],
                fields=[
                    FieldSpec(key="audio", deps=[FieldDep("video/raw", ["frames"])]),
                    FieldSpec(key="frames", deps=[FieldDep("video/raw")]),  # all fields
                    FieldSpec(key="meta", deps=[]),  # reads nothing upstream
                ],
            ),
        ]
    )
    assert graph.field_deps("video/crop", "audio") == (FieldRef("video/raw", "frames"),)
    assert graph.field_deps("video/crop", "frames") == (
        FieldRef("video/raw", "audio"),
        FieldRef("video/raw", "frames"),
    )
    assert graph.field_deps("video/crop", "meta") == ()
    assert graph.downstream_fields("video/raw", "audio") == (FieldRef("video/crop", "frames"),)


def test_identical_feature_declared_twice_is_kept_once() -> None:
    specs = reference_specs()
    graph = FeatureGraph([*specs, *reference_specs()])
    assert len(graph) == 5
    assert graph.versions == reference_graph().versions


def test_input_order_does_not_matter() -> None:
    forward = reference_graph()
    backward = FeatureGraph(reversed(reference_specs()))
    assert backward.topological_order() == forward.topological_order()
    assert backward.field_edges() == forward.field_edges()


def test_with_features_returns_a_new_validated_graph(reference_graph: FeatureGraph) -> None:
    extra = spec("video/thumbs", deps=["video/crop"], fields=["frames"], id_columns=["video_id"])
    bigger = reference_graph.with_features(extra)
    assert len(bigger) == 6
    assert "video/thumbs" not in reference_graph
    assert bigger.field_deps("video/thumbs", "frames") == (CROP_FRAMES,)
    with pytest.raises(IdColumnsMismatchError, match=r"^feature 'video/thumbs' "):
        reference_graph.with_features(
            spec("video/thumbs", deps=["video/crop"], fields=["frames"], id_columns=["thumb_id"])
        )
    with pytest.raises(DuplicateFeatureError, match=r"^feature 'video/raw' is declared twice"):
        reference_graph.with_features(spec("video/raw", id_columns=["video_id"]))


def test_empty_graph() -> None:
    graph = FeatureGraph()
    assert len(graph) == 0
    assert graph.topological_order() == ()
    assert graph.field_edges() == ()


# -- lookups of unknown things ----------------------------------------------------------------


def test_unknown_feature_lookups(reference_graph: FeatureGraph) -> None:
    message = exactly(
        "feature 'video/missing' is not in the graph; known features: audio/transcript, "
        "train/manifest, video/crop, video/raw, vision/faces."
    )
    with pytest.raises(FeatureNotFoundError, match=message):
        reference_graph["video/missing"]
    with pytest.raises(FeatureNotFoundError, match=message):
        reference_graph.upstream("video/missing", transitive=True)
    with pytest.raises(FeatureNotFoundError, match=message):
        reference_graph.downstream("video/missing", transitive=True)
    with pytest.raises(FeatureNotFoundError, match=message):
        reference_graph.field_deps("video/missing", "audio")
    with pytest.raises(FeatureNotFoundError, match=message):
        reference_graph.upstream_fields("video/missing", "audio")
    with pytest.raises(FeatureNotFoundError, match=message):
        reference_graph.downstream_fields("video/missing", "audio")
    with pytest.raises(KeyError):  # FeatureNotFoundError is a KeyError too
        reference_graph["video/missing"]
    with pytest.raises(
        FeatureNotFoundError,
        match=exactly("feature 'a' is not in the graph; known features: none."),
    ):
        FeatureGraph()["a"]


def test_unknown_field_lookups(reference_graph: FeatureGraph) -> None:
    message = exactly("feature 'video/raw' has no field 'text'; its fields are: audio, frames.")
    with pytest.raises(FieldNotFoundError, match=message):
        reference_graph.field_deps("video/raw", "text")
    with pytest.raises(FieldNotFoundError, match=message):
        reference_graph.upstream_fields("video/raw", "text")
    with pytest.raises(FieldNotFoundError, match=message):
        reference_graph.downstream_fields("video/raw", "text")


# -- invalid graphs ---------------------------------------------------------------------------


def test_cycle_of_two_prints_the_cycle() -> None:
    # Printed in the direction data flows: `a/y -> a/x` means a/x reads a/y.
    with pytest.raises(
        CycleError,
        match=exactly(
            "feature dependencies form a cycle: a/y -> a/x -> a/y. "
            "Remove one of these dependencies."
        ),
    ):
        FeatureGraph([spec("a/x", deps=["a/y"]), spec("a/y", deps=["a/x"])])


def test_cycle_of_three_prints_the_cycle_in_data_flow_order() -> None:
    # a/x -> a/y -> a/z -> a/x: each feature reads the one before it.
    specs = [spec("a/y", deps=["a/x"]), spec("a/z", deps=["a/y"]), spec("a/x", deps=["a/z"])]
    with pytest.raises(
        CycleError,
        match=exactly(
            "feature dependencies form a cycle: a/y -> a/z -> a/x -> a/y. "
            "Remove one of these dependencies."
        ),
    ):
        FeatureGraph(specs)


def test_cycle_message_leaves_out_features_that_only_read_the_cycle() -> None:
    specs = [
        spec("a/root"),
        spec("a/w", deps=["a/x"]),  # downstream of the cycle, not part of it
        spec("a/x", deps=["a/y", "a/root"]),
        spec("a/y", deps=["a/x"]),
    ]
    with pytest.raises(CycleError, match=r"form a cycle: a/y -> a/x -> a/y\. Remove"):
        FeatureGraph(specs)


def test_self_dependency() -> None:
    with pytest.raises(
        CycleError,
        match=exactly("feature 'a/x' depends on itself: remove it from its own deps=."),
    ):
        FeatureGraph([spec("a/x", deps=["a/x"])])


def test_unknown_upstream_feature() -> None:
    with pytest.raises(
        FeatureNotFoundError,
        match=exactly(
            "feature 'video/crop' depends on 'video/rwa', which is not in the graph; known "
            "features: video/crop, video/raw. Declare 'video/rwa' or remove it from deps= of "
            "'video/crop'."
        ),
    ):
        FeatureGraph([spec("video/raw"), spec("video/crop", deps=["video/rwa"])])


def test_explicit_field_dep_on_a_missing_field_lists_the_fields() -> None:
    transcript = spec(
        "audio/transcript",
        deps=["video/raw"],
        fields=[FieldSpec(key="text", deps=[FieldDep("video/raw", ["sound"])])],
    )
    with pytest.raises(
        FieldNotFoundError,
        match=exactly(
            "field audio/transcript.text depends on video/raw.sound, but 'video/raw' has no "
            "field 'sound'; its fields are: audio, frames. Depend on one of those, or declare "
            "'sound' in fields= of 'video/raw'."
        ),
    ):
        FeatureGraph([spec("video/raw", fields=["audio", "frames"]), transcript])


def test_explicit_field_dep_on_a_feature_not_in_deps() -> None:
    faces = spec(
        "vision/faces",
        deps=["video/crop"],
        fields=[FieldSpec(key="faces", deps=[FieldDep("video/raw", ["frames"])])],
    )
    with pytest.raises(
        FeatureNotFoundError,
        match=exactly(
            "field vision/faces.faces depends on feature 'video/raw', which 'vision/faces' does "
            "not read; its upstream features are: video/crop. Add 'video/raw' to deps= of "
            "'vision/faces', or depend on one of those."
        ),
    ):
        FeatureGraph(
            [
                spec("video/raw", fields=["audio", "frames"]),
                spec("video/crop", deps=["video/raw"], fields=["audio", "frames"]),
                faces,
            ]
        )


def test_explicit_field_dep_in_a_root_feature() -> None:
    root = spec("video/raw", fields=[FieldSpec(key="audio", deps=[FieldDep("video/src")])])
    with pytest.raises(
        FeatureNotFoundError,
        match=exactly(
            "field video/raw.audio depends on feature 'video/src', which 'video/raw' does not "
            "read; its upstream features are: none. Add 'video/src' to deps= of 'video/raw', or "
            "depend on one of those."
        ),
    ):
        FeatureGraph([spec("video/src"), root])


def test_duplicate_feature_keys_with_different_definitions() -> None:
    with pytest.raises(
        DuplicateFeatureError,
        match=exactly(
            "feature 'video/raw' is declared twice with different definitions: give one of them "
            "another key, or declare it once and import it."
        ),
    ):
        FeatureGraph(
            [spec("video/raw", fields=["audio"]), spec("video/raw", fields=["audio", "frames"])]
        )


def test_duplicate_feature_keys_differing_only_in_a_code_version() -> None:
    specs = reference_specs()
    bumped = reference_specs({("video/raw", "audio"): "2"})[0]
    with pytest.raises(DuplicateFeatureError, match=r"^feature 'video/raw' is declared twice"):
        FeatureGraph([*specs, bumped])


def test_upstream_listed_twice() -> None:
    with pytest.raises(
        GraphError,
        match=exactly(
            "feature 'video/crop' lists one upstream feature twice in deps=: list each upstream "
            "once."
        ),
    ):
        FeatureGraph([spec("video/raw"), spec("video/crop", deps=["video/raw", "video/raw"])])


def test_identity_dependency_with_mismatching_id_columns() -> None:
    with pytest.raises(
        IdColumnsMismatchError,
        match=exactly(
            "feature 'video/crop' (id columns ['clip_id']) reads 'video/raw' (id columns "
            "['video_id']) with identity lineage, which needs the same id columns: use the same "
            "id columns in both features."
        ),
    ):
        FeatureGraph(
            [
                spec("video/raw", id_columns=["video_id"]),
                spec("video/crop", deps=["video/raw"], id_columns=["clip_id"]),
            ]
        )


def test_identity_dependency_with_a_subset_of_id_columns() -> None:
    with pytest.raises(IdColumnsMismatchError, match=r"\(id columns \['video_id', 'frame'\]\)"):
        FeatureGraph(
            [
                spec("video/raw", id_columns=["video_id"]),
                spec("video/frame", deps=["video/raw"], id_columns=["video_id", "frame"]),
            ]
        )


def test_identity_dependency_ignores_the_order_of_id_columns() -> None:
    graph = FeatureGraph(
        [
            spec("a/x", id_columns=["video_id", "clip"]),
            spec("a/y", deps=["a/x"], id_columns=["clip", "video_id"]),
        ]
    )
    assert graph.upstream("a/y") == ("a/x",)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (CycleError, ValueError),
        (DuplicateFeatureError, ValueError),
        (IdColumnsMismatchError, ValueError),
        (FeatureNotFoundError, KeyError),
        (FieldNotFoundError, KeyError),
    ],
)
def test_graph_errors_are_also_builtin_errors(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, builtin)
