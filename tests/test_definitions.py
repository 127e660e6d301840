"""Feature and field declarations: coercions, defaults, immutability and every invalid input."""

from __future__ import annotations

import re

import pydantic
import pytest

from metaxy_core import (
    DEFAULT_FIELD,
    FeatureDep,
    FeatureSpec,
    FieldDep,
    FieldRef,
    FieldSpec,
    Lineage,
)
from metaxy_core.errors import (
    DuplicateFieldError,
    EmptyIdColumnsError,
    FieldNotFoundError,
    GraphError,
    InvalidKeyError,
    MetaxyError,
)
from tests.reference import reference_specs

FEATURE_KEY_HINT = (
    "is not a valid path: use lowercase segments of letters, digits and single underscores, "
    "starting with a letter, joined by '/', e.g. 'video/raw'."
)
FIELD_KEY_HINT = (
    "of a FieldSpec is not valid: use one lowercase segment of letters, digits and single "
    "underscores, starting with a letter, e.g. 'audio'."
)


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


# -- construction and coercion ----------------------------------------------------------------


def test_strings_are_coerced_to_specs() -> None:
    spec = FeatureSpec(
        key="video/crop", id_columns="video_id", fields=["audio", "frames"], deps="video/raw"
    )
    assert spec.id_columns == ("video_id",)
    assert spec.fields == (FieldSpec(key="audio"), FieldSpec(key="frames"))
    assert spec.deps == (FeatureDep(feature="video/raw", lineage=Lineage.IDENTITY),)
    assert spec.field_keys == ("audio", "frames")
    assert spec.description is None


def test_single_field_spec_and_single_feature_dep_are_accepted() -> None:
    field = FieldSpec(key="text", code_version="3")
    spec = FeatureSpec(
        key="audio/transcript",
        id_columns=["video_id"],
        fields=field,
        deps=FeatureDep(feature="video/raw"),
    )
    assert spec.fields == (field,)
    assert spec.deps == (FeatureDep(feature="video/raw"),)


def test_defaults() -> None:
    spec = FeatureSpec(key="train/manifest", id_columns=["video_id"])
    assert DEFAULT_FIELD == "default"
    assert spec.fields == (FieldSpec(key="default", code_version="1", deps=None),)
    assert spec.deps == ()
    assert spec.is_root
    assert not FeatureSpec(key="b", id_columns=["id"], deps=["a"]).is_root
    assert FieldSpec(key="audio").code_version == "1"
    assert FieldSpec(key="audio").deps is None
    assert FeatureDep(feature="a").lineage is Lineage.IDENTITY
    assert Lineage.IDENTITY.value == "identity"


def test_field_dep_positional_arguments_and_coercion() -> None:
    assert FieldDep("video/raw").fields is None  # None: every field of video/raw
    assert FieldDep("video/raw", "audio").fields == ("audio",)
    assert FieldDep("video/raw", ["audio", "frames"]).fields == ("audio", "frames")
    assert FieldDep("video/raw", []).fields == ()


def test_field_dep_keyword_arguments() -> None:
    # Like every other spec (and like its own repr), FieldDep is constructible by keyword.
    assert FieldDep(feature="video/raw", fields=["audio"]) == FieldDep("video/raw", ["audio"])
    assert FieldDep(feature="video/raw").fields is None


def test_specs_round_trip_through_json_and_dicts() -> None:
    # Specs are stored and shipped as JSON (snapshots, Dagster metadata); explicit field deps
    # included.
    for spec in reference_specs():
        assert FeatureSpec.model_validate_json(spec.model_dump_json()) == spec
        assert FeatureSpec.model_validate(spec.model_dump()) == spec


def test_field_deps_may_be_given_as_dicts() -> None:
    field = FieldSpec(key="text", deps=[{"feature": "video/raw", "fields": ["audio"]}])
    assert field.deps == (FieldDep("video/raw", ["audio"]),)


def test_field_deps_are_kept_in_declaration_order() -> None:
    field = FieldSpec(
        key="manifest", deps=[FieldDep("vision/faces"), FieldDep("audio/transcript", ["text"])]
    )
    assert field.deps == (
        FieldDep("vision/faces", None),
        FieldDep("audio/transcript", ("text",)),
    )


def test_field_lookup() -> None:
    spec = FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio", "frames"])
    assert spec.field("frames") == FieldSpec(key="frames")
    with pytest.raises(
        FieldNotFoundError,
        match=exactly("feature 'video/raw' has no field 'text'; its fields are: audio, frames."),
    ):
        spec.field("text")


def test_field_not_found_is_a_key_error_with_a_plain_message() -> None:
    spec = FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio"])
    with pytest.raises(KeyError) as info:
        spec.field("frames")
    # KeyError would quote its message; metaxy errors render as the plain sentence.
    assert str(info.value) == "feature 'video/raw' has no field 'frames'; its fields are: audio."


def test_field_ref_renders_as_feature_dot_field() -> None:
    ref = FieldRef("video/raw", "audio")
    assert str(ref) == "video/raw.audio"
    assert ref == ("video/raw", "audio")
    assert (ref.feature, ref.field) == ("video/raw", "audio")


def test_specs_are_immutable_and_hashable() -> None:
    spec = FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio"])
    with pytest.raises(pydantic.ValidationError, match="Instance is frozen"):
        spec.key = "video/other"  # type: ignore[misc]
    same = FeatureSpec(key="video/raw", id_columns=("video_id",), fields=[FieldSpec(key="audio")])
    assert spec == same
    assert hash(spec) == hash(same)


def test_unknown_arguments_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        FeatureSpec(key="video/raw", id_columns=["video_id"], field=["audio"])  # type: ignore[call-arg]


# -- invalid declarations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "Video/raw",
        "video//raw",
        "video/raw/",
        "/video",
        "1video",
        "video-raw",
        "video raw",
        "video/_raw",
        "video/raw_",
        "video/a__b",
        "",
        "vidéo",
        "video/raw\n",
        "\nvideo",
    ],
)
def test_invalid_feature_key(key: str) -> None:
    with pytest.raises(InvalidKeyError, match=exactly(f"feature key {key!r} {FEATURE_KEY_HINT}")):
        FeatureSpec(key=key, id_columns=["id"])


@pytest.mark.parametrize("key", ["video", "video/raw", "a1/b_2/c3", "x/y_z/w9_0"])
def test_valid_feature_keys(key: str) -> None:
    assert FeatureSpec(key=key, id_columns=["id"]).key == key


@pytest.mark.parametrize(
    "key", ["Audio", "au/dio", "1audio", "audio-x", "_audio", "", "a b", "audio\n"]
)
def test_invalid_field_key(key: str) -> None:
    with pytest.raises(InvalidKeyError, match=exactly(f"field key {key!r} {FIELD_KEY_HINT}")):
        FieldSpec(key=key)


def test_invalid_field_key_given_as_string_in_feature() -> None:
    with pytest.raises(InvalidKeyError, match=exactly(f"field key 'Frames' {FIELD_KEY_HINT}")):
        FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio", "Frames"])


def test_invalid_key_in_dependencies() -> None:
    def message(key: str) -> str:
        return exactly(f"feature key {key!r} {FEATURE_KEY_HINT}")

    with pytest.raises(InvalidKeyError, match=message("Video/Raw")):
        FeatureSpec(key="video/crop", id_columns=["video_id"], deps=["Video/Raw"])
    with pytest.raises(InvalidKeyError, match=message("video-raw")):
        FieldDep("video-raw", ["audio"])
    with pytest.raises(InvalidKeyError, match=message("a//b")):
        FeatureDep(feature="a//b")


def test_invalid_key_is_a_value_error_and_a_metaxy_error() -> None:
    with pytest.raises(InvalidKeyError) as info:
        FieldSpec(key="Bad")
    assert isinstance(info.value, GraphError)
    assert isinstance(info.value, MetaxyError)
    assert isinstance(info.value, ValueError)
    # Our error, not pydantic's wrapper around it.
    assert not isinstance(info.value, pydantic.ValidationError)


@pytest.mark.parametrize("id_columns", [[], (), [""], ["video_id", ""]])
def test_empty_id_columns(id_columns: list[str]) -> None:
    message = (
        "feature 'video/raw' has no id columns: pass id_columns=[...] naming the column(s) that "
        "identify a sample, e.g. id_columns=['video_id']."
    )
    with pytest.raises(EmptyIdColumnsError, match=exactly(message)):
        FeatureSpec(key="video/raw", id_columns=id_columns)


def test_repeated_id_column() -> None:
    message = (
        "feature 'video/raw' repeats an id column in ['video_id', 'video_id']: "
        "list each id column once."
    )
    with pytest.raises(EmptyIdColumnsError, match=exactly(message)):
        FeatureSpec(key="video/raw", id_columns=["video_id", "video_id"])


def test_duplicate_field_keys() -> None:
    message = (
        "feature 'video/raw' declares field 'audio' twice: give each field of a feature its own "
        "key."
    )
    with pytest.raises(DuplicateFieldError, match=exactly(message)):
        FeatureSpec(key="video/raw", id_columns=["video_id"], fields=["audio", "frames", "audio"])
    # Also when the two declarations differ (here: in their code versions).
    with pytest.raises(DuplicateFieldError, match=exactly(message)):
        FeatureSpec(
            key="video/raw",
            id_columns=["video_id"],
            fields=[FieldSpec(key="audio"), FieldSpec(key="audio", code_version="2")],
        )


def test_no_fields() -> None:
    message = "feature 'video/raw' has no fields: declare at least one, e.g. fields=['default']."
    with pytest.raises(GraphError, match=exactly(message)):
        FeatureSpec(key="video/raw", id_columns=["video_id"], fields=[])
