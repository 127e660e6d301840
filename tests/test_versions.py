"""Definition-level versions: golden values, pruning, and determinism across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metaxy_core import (
    FeatureGraph,
    FeatureSpec,
    FieldDep,
    FieldRef,
    FieldSpec,
    hash_parts,
    to_hex,
)
from tests.reference import REFERENCE_FIELDS, reference_graph, reference_specs

ROOT = Path(__file__).resolve().parent.parent

# Computed once from the reference graph (every code version "1") and pasted here. A change to
# any of these changes every stored version: it must be deliberate (and bump a "/v1" tag).
GOLDEN_RECIPES = {
    "video/raw.audio": "88a8c4318b65dfc1",
    "video/raw.frames": "2f26ffdeefb1c624",
    "video/crop.audio": "1e162238d91831a4",
    "video/crop.frames": "2474750e353942c7",
    "vision/faces.faces": "fe47a0977cd883cf",
    "audio/transcript.text": "bef09cd9013a739b",
    "train/manifest.default": "2a933e6a2f9a202a",
}
GOLDEN_FIELDS = {
    "video/raw.audio": "a01c59618bb0c418",
    "video/raw.frames": "2c4eabd054e382e0",
    "video/crop.audio": "6219e5ea2b133eae",
    "video/crop.frames": "033bd51034a2a89c",
    "vision/faces.faces": "49def52bcc9bea07",
    "audio/transcript.text": "a2d627c17d24ebc2",
    "train/manifest.default": "76e4c13eb637582b",
}
GOLDEN_FEATURES = {
    "video/raw": "7901b69e6c69cb0c",
    "video/crop": "b72a0d265b19791a",
    "vision/faces": "cec4e4eca5a72192",
    "audio/transcript": "de78b1ba0ba4ef70",
    "train/manifest": "7d1d6846eccb818d",
}
GOLDEN_GRAPH = "617471b607f37682"
GOLDEN_GRAPH_AUDIO_BUMPED = "cd9a32e5d4664eea"  # video/raw.audio at code version "2"
GOLDEN_GRAPH_FRAMES_BUMPED = "167eedd97d3d534e"  # video/raw.frames at code version "2"

AUDIO_BUMP = {("video/raw", "audio"): "2"}
FRAMES_BUMP = {("video/raw", "frames"): "2"}


def by_name(versions: dict[FieldRef, str]) -> dict[str, str]:
    return {str(ref): v for ref, v in versions.items()}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if before[k] != after[k]}


# -- golden values ----------------------------------------------------------------------------


def test_golden_versions() -> None:
    versions = reference_graph().versions
    assert by_name(versions.recipes) == GOLDEN_RECIPES
    assert by_name(versions.fields) == GOLDEN_FIELDS
    assert versions.features == GOLDEN_FEATURES
    assert versions.graph == GOLDEN_GRAPH
    assert reference_graph_version(AUDIO_BUMP) == GOLDEN_GRAPH_AUDIO_BUMPED
    assert reference_graph_version(FRAMES_BUMP) == GOLDEN_GRAPH_FRAMES_BUMPED


def reference_graph_version(code_versions: dict[tuple[str, str], str]) -> str:
    return reference_graph(code_versions).versions.graph


def version(parts: list[str]) -> str:
    """A definition-level version: the hash of the canonical string, as its hex text."""
    return to_hex(hash_parts(parts))


def test_the_recipe_spelled_out() -> None:
    """The canonical strings behind the versions, as the versions module documents them."""
    versions = reference_graph().versions
    raw_audio_recipe = version(["recipe/v1", "video/raw", "audio", "1"])
    raw_audio = version(["field/v1", raw_audio_recipe])
    raw_frames = version(["field/v1", version(["recipe/v1", "video/raw", "frames", "1"])])
    crop_audio_recipe = version(
        ["recipe/v1", "video/crop", "audio", "1", "video/raw.audio@identity"]
    )
    crop_audio = version(["field/v1", crop_audio_recipe, raw_audio])
    raw = version(["feature/v1", "video/raw", f"audio={raw_audio}", f"frames={raw_frames}"])

    assert versions.recipes[FieldRef("video/raw", "audio")] == raw_audio_recipe
    assert versions.fields[FieldRef("video/raw", "audio")] == raw_audio
    assert versions.fields[FieldRef("video/raw", "frames")] == raw_frames
    assert versions.recipes[FieldRef("video/crop", "audio")] == crop_audio_recipe
    assert versions.fields[FieldRef("video/crop", "audio")] == crop_audio
    assert versions.features["video/raw"] == raw
    assert versions.graph == version(
        ["graph/v1", *(f"{k}={v}" for k, v in sorted(versions.features.items()))]
    )


def test_feature_fields() -> None:
    versions = reference_graph().versions
    assert versions.feature_fields("video/raw") == {
        "audio": GOLDEN_FIELDS["video/raw.audio"],
        "frames": GOLDEN_FIELDS["video/raw.frames"],
    }
    assert versions.feature_fields("train/manifest") == {
        "default": GOLDEN_FIELDS["train/manifest.default"]
    }


def test_versions_are_computed_once() -> None:
    graph = reference_graph()
    assert graph.versions is graph.versions


# -- pruning: what a code-version bump changes ------------------------------------------------


def test_audio_bump_changes_only_what_reads_audio() -> None:
    before = reference_graph().versions
    after = reference_graph(AUDIO_BUMP).versions
    assert changed(by_name(before.fields), by_name(after.fields)) == {
        "video/raw.audio",
        "video/crop.audio",
        "audio/transcript.text",
        "train/manifest.default",
    }
    # Unchanged, spelled out: the frames side of the graph is pruned.
    for name in ("video/raw.frames", "video/crop.frames", "vision/faces.faces"):
        assert by_name(after.fields)[name] == GOLDEN_FIELDS[name]
    assert changed(before.features, after.features) == {
        "video/raw",
        "video/crop",
        "audio/transcript",
        "train/manifest",
    }
    assert after.features["vision/faces"] == GOLDEN_FEATURES["vision/faces"]
    assert after.graph != before.graph
    # Recipes exclude upstream versions: only the bumped field's recipe changes, so stored
    # samples downstream go stale only once upstream data actually changes.
    assert changed(by_name(before.recipes), by_name(after.recipes)) == {"video/raw.audio"}


def test_frames_bump_changes_only_what_reads_frames() -> None:
    before = reference_graph().versions
    after = reference_graph(FRAMES_BUMP).versions
    assert changed(by_name(before.fields), by_name(after.fields)) == {
        "video/raw.frames",
        "video/crop.frames",
        "vision/faces.faces",
        "train/manifest.default",
    }
    for name in ("video/raw.audio", "video/crop.audio", "audio/transcript.text"):
        assert by_name(after.fields)[name] == GOLDEN_FIELDS[name]
    assert changed(before.features, after.features) == {
        "video/raw",
        "video/crop",
        "vision/faces",
        "train/manifest",
    }
    assert after.features["audio/transcript"] == GOLDEN_FEATURES["audio/transcript"]
    assert changed(by_name(before.recipes), by_name(after.recipes)) == {"video/raw.frames"}


@pytest.mark.parametrize(("feature", "field"), REFERENCE_FIELDS)
def test_a_bump_changes_exactly_the_field_and_its_downstream_fields(
    feature: str, field: str
) -> None:
    graph = reference_graph()
    after = reference_graph({(feature, field): "2"}).versions
    expected = {f"{feature}.{field}"} | {str(r) for r in graph.downstream_fields(feature, field)}
    assert changed(by_name(graph.versions.fields), by_name(after.fields)) == expected
    assert changed(graph.versions.features, after.features) == {
        name.split(".")[0] for name in expected
    }


def test_leaf_bump_changes_only_the_leaf() -> None:
    before = reference_graph().versions
    after = reference_graph({("train/manifest", "default"): "2"}).versions
    assert changed(by_name(before.fields), by_name(after.fields)) == {"train/manifest.default"}
    assert changed(before.features, after.features) == {"train/manifest"}


def test_code_versions_are_compared_as_strings() -> None:
    one = reference_graph().versions.graph
    assert reference_graph({("video/raw", "audio"): "01"}).versions.graph != one
    assert reference_graph({("video/raw", "audio"): "1 "}).versions.graph != one
    assert reference_graph({("video/raw", "audio"): "1"}).versions.graph == one


# -- what versions depend on, and what they do not --------------------------------------------


def replace(specs: list[FeatureSpec], new: FeatureSpec) -> list[FeatureSpec]:
    return [new if s.key == new.key else s for s in specs]


def test_changing_what_a_field_reads_changes_its_version() -> None:
    specs = reference_specs()
    faces = FeatureSpec(
        key="vision/faces",
        id_columns=["video_id"],
        deps=["video/crop"],
        fields=[FieldSpec(key="faces", deps=[FieldDep("video/crop", ["frames", "audio"])])],
    )
    before = reference_graph().versions
    after = FeatureGraph(replace(specs, faces)).versions
    assert changed(by_name(before.fields), by_name(after.fields)) == {
        "vision/faces.faces",
        "train/manifest.default",
    }
    assert changed(by_name(before.recipes), by_name(after.recipes)) == {"vision/faces.faces"}


def test_spelling_out_the_default_mapping_keeps_the_version() -> None:
    crop = FeatureSpec(
        key="video/crop",
        id_columns=["video_id"],
        deps=["video/raw"],
        fields=[
            FieldSpec(key="audio", deps=[FieldDep("video/raw", ["audio"])]),
            FieldSpec(key="frames", deps=[FieldDep("video/raw", "frames")]),
        ],
    )
    assert FeatureGraph(replace(reference_specs(), crop)).versions == reference_graph().versions


def test_description_and_field_order_do_not_change_versions() -> None:
    specs = [
        s.model_copy(update={"description": f"about {s.key}", "fields": s.fields[::-1]})
        for s in reference_specs()
    ]
    assert specs[0].field_keys == ("frames", "audio")
    assert FeatureGraph(specs).versions == reference_graph().versions


def test_renaming_a_feature_changes_its_versions() -> None:
    renamed = [
        FeatureSpec(key="video/source", id_columns=["video_id"], fields=["audio", "frames"]),
        FeatureSpec(
            key="video/crop",
            id_columns=["video_id"],
            deps=["video/source"],
            fields=["audio", "frames"],
        ),
    ]
    versions = FeatureGraph(renamed).versions
    assert versions.features["video/source"] != GOLDEN_FEATURES["video/raw"]
    assert versions.fields[FieldRef("video/crop", "audio")] != GOLDEN_FIELDS["video/crop.audio"]


@given(st.permutations(reference_specs()))
def test_versions_do_not_depend_on_declaration_order(specs: list[FeatureSpec]) -> None:
    versions = FeatureGraph(specs).versions
    assert versions.graph == GOLDEN_GRAPH
    assert versions == reference_graph().versions


# -- determinism across processes -------------------------------------------------------------

_SUBPROCESS_SCRIPT = """
import json
from tests.reference import reference_graph

out = {}
for name, code_versions in {"base": None, "audio": {("video/raw", "audio"): "2"}}.items():
    v = reference_graph(code_versions).versions
    out[name] = {
        "recipes": {str(k): x for k, x in v.recipes.items()},
        "fields": {str(k): x for k, x in v.fields.items()},
        "features": v.features,
        "graph": v.graph,
    }
print(json.dumps(out, sort_keys=True))
"""


def versions_in_subprocesses(hash_seeds: list[str]) -> list[dict[str, dict[str, object]]]:
    """Compute the versions in one fresh interpreter per hash seed, all at once."""
    procs = []
    for seed in hash_seeds:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _SUBPROCESS_SCRIPT],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout))
    return results


def test_versions_are_identical_across_processes_and_hash_seeds() -> None:
    seen = versions_in_subprocesses(["0", "1", "2024", "4294967295", "random"])
    for run in seen:
        assert run == seen[0]
    base = seen[0]["base"]
    assert base == {
        "recipes": GOLDEN_RECIPES,
        "fields": GOLDEN_FIELDS,
        "features": GOLDEN_FEATURES,
        "graph": GOLDEN_GRAPH,
    }
    assert seen[0]["audio"]["graph"] == GOLDEN_GRAPH_AUDIO_BUMPED
