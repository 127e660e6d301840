"""The ``metaxy`` command, driven as a user drives it: Typer's runner in process (the same
parsing, output and exit codes as the console script) and, once, the installed script itself,
on the example project's features and a real DuckDB file.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner, Result

from example_project.assets import build_assets, build_resources
from example_project.edit import edit_audio, remove_clips
from example_project.media import generate_clips
from metaxy_core import (
    DuckDBMetadataStore,
    FeatureGraph,
    FieldDep,
    FieldSpec,
    IncrementCounts,
    columns,
    open_store,
)
from metaxy_core._cli.app import app, say
from metaxy_core.store.snapshots import ACCEPT, audits
from metaxy_core.testing import root_samples
from metaxy_dagster import asset_key, feature_graph

ROOT = Path(__file__).resolve().parent.parent
METAXY = Path(sys.executable).parent / "metaxy"
N = 6
CLIPS = [f"clip-{i:04d}" for i in range(N)]
EXAMPLE_FEATURES = "example_project.definitions:graph"
LOCATION = "code_location"
"""The module name of the code locations a test writes into its project folder."""


@pytest.fixture(autouse=True)
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No METAXY_* setting of the caller's environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("METAXY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "120")  # Rich's width when not writing to a terminal
    yield
    # Each test writes its own code location modules: the next test must import its own.
    for name in [m for m in sys.modules if m.startswith(LOCATION)]:
        del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with a metaxy.toml naming the example's features and a store file."""
    (tmp_path / "metaxy.toml").write_text(
        f'features = "{EXAMPLE_FEATURES}"\nstore = "metaxy.duckdb"\n', encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


# -- P1: the command, its configuration, errors and exit codes -----------------------------------

COMMANDS = [
    "features",
    "describe",
    "graph",
    "status",
    "history",
    "snapshot",
    "snapshots",
    "diff",
    "accept",
    "delete",
    "retry",
    "vacuum",
    "copy",
]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command: str | None) -> None:
    result = run(*([command] if command else []), "--help")
    assert "Usage: metaxy" in result.stdout
    assert "--help" in result.stdout


def test_bracketed_text_is_printed_not_taken_for_markup() -> None:
    assert "Reads [tool.metaxy] of pyproject.toml" in run("--help").stdout
    console = Console(file=io.StringIO(), width=40)
    say("under [tool.metaxy] in [bold]pyproject.toml", console=console)
    assert console.file.getvalue() == "under [tool.metaxy] in [bold]pyproject.toml\n"


def test_no_command_shows_help_and_unknown_command_is_a_usage_error() -> None:
    assert "features" in run(code=2).stdout  # no_args_is_help exits 2, as Click does
    assert "No such command 'bogus'" in run("bogus", code=2).stderr


def test_features_from_metaxy_toml(project: Path) -> None:
    listed = json.loads(run("features", "--json").stdout)
    assert [f["feature"] for f in listed] == [
        "video/raw",
        "audio/features",
        "audio/transcript",
        "video/crop",
        "vision/faces",
        "train/manifest",
    ]
    crop = listed[3]
    assert crop["id_columns"] == ["clip_id"]
    assert crop["upstream"] == ["video/raw"]
    assert [(f["field"], f["code_version"], f["reads"]) for f in crop["fields"]] == [
        ("audio", "1", ["video/raw.audio"]),
        ("frames", "1", ["video/raw.frames"]),
    ]
    table = run("features").stdout
    assert "6 features" in table
    assert "audio (v1), frames (v1)" in table


def test_config_in_pyproject_and_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "sub" / "deeper"
    sub.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.metaxy]\nfeatures = "no_such_module:graph"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(sub)  # found by walking up
    result = run("features", code=1)
    assert result.stderr.startswith(
        "error: features = 'no_such_module:graph': cannot import module 'no_such_module'"
    )
    assert str(tmp_path) in result.stderr  # where it looked
    listed = run("features", "--json", env={"METAXY_FEATURES": EXAMPLE_FEATURES}).stdout
    assert len(json.loads(listed)) == 6


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("", r"'features' is not set\. Add e\.g\. features = "),
        ('features = "nocolon"', r"setting 'features': Value error, 'nocolon' is not 'module:att"),
        (f'features = "{EXAMPLE_FEATURES}"\nstor = "x"', r"unknown setting 'stor'; the settings"),
        (f'features = "{EXAMPLE_FEATURES}"\nengine = "spark"', r"setting 'engine': Input should"),
        ("features = ", r"not valid TOML"),
        ('features = "example_project.definitions:nope"', r"has no attribute 'nope'\. Name the"),
        ('features = "example_project.definitions:defs"', r"is a Definitions, not a FeatureG"),
    ],
)
def test_config_errors_are_one_line_with_a_hint(project: Path, toml: str, message: str) -> None:
    (project / "metaxy.toml").write_text(toml + "\n", encoding="utf-8")
    result = run("features", code=1)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert re.search(message, result.stderr), result.stderr


def test_unknown_feature_lists_the_known_ones(project: Path) -> None:
    result = run("describe", "video/nope", code=1)
    assert result.stderr == (
        "error: feature 'video/nope' is not declared in example_project.definitions:"
        "graph; known features: video/raw, audio/features, audio/transcript, "
        "video/crop, vision/faces, train/manifest. Run `metaxy features` to see them.\n"
    )


def test_store_setting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative to the configuration file's folder, whatever the working directory; a URI;
    the environment alone, without a file."""
    (project / "metaxy.toml").write_text(
        f'features = "{EXAMPLE_FEATURES}"\nstore = "stores/m.duckdb"\n', encoding="utf-8"
    )
    (project / "deeper").mkdir()
    monkeypatch.chdir(project / "deeper")
    assert "recorded in DuckDBMetadataStore" in run("snapshot").stdout
    assert (project / "stores" / "m.duckdb").is_file()
    uri = f"duckdb://{project / 'u.duckdb'}"
    run("snapshot", env={"METAXY_STORE": uri})
    assert (project / "u.duckdb").is_file()
    found = json.loads(run("status", "--json", env={"METAXY_STORE": "memory://"}).stdout)
    assert found["store"] == "InMemoryMetadataStore(0 features)"
    bad = run("status", code=1, env={"METAXY_STORE": "s3://bucket/x"})
    assert bad.stderr.startswith("error: store = 's3://bucket/x': unknown scheme 's3'")
    (project / "metaxy.toml").unlink()
    listed = run("features", "--json", env={"METAXY_FEATURES": EXAMPLE_FEATURES}).stdout
    assert len(json.loads(listed)) == 6
    assert "'features' is not set" in run("features", code=1).stderr


def test_config_option_names_the_file(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('features = "nowhere:graph"\n', encoding="utf-8")
    assert "cannot import module 'nowhere'" in run("-c", str(other), "features", code=1).stderr
    missing = run("--config", str(tmp_path / "missing.toml"), "features", code=2)
    assert "does not exist" in missing.stderr  # checked by the option itself: a usage error


def test_console_script_runs_from_the_repository() -> None:
    """`pip install` gives a `metaxy` script; in this repository it reads [tool.metaxy]."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAXY_")}
    result = subprocess.run(
        [str(METAXY), "describe", "vision/faces", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["fields"][0]["reads"] == ["video/crop.frames"]
    bad = subprocess.run(
        [str(METAXY), "describe", "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: feature 'nope' is not declared")
    assert bad.stdout == ""


# -- P2: describe and graph ----------------------------------------------------------------------


def test_describe_shows_fields_code_versions_and_reads(project: Path) -> None:
    text = run("describe", "train/manifest").stdout
    assert "train/manifest" in text
    assert "audio/features.features, audio/transcript.text, vision/faces.faces" in text
    assert "read by: nothing" in text
    faces = json.loads(run("describe", "vision/faces", "--json").stdout)
    assert faces["upstream"] == ["video/crop"]
    assert [f["field"] for f in faces["fields"]] == ["faces"]


def test_graph_text_has_field_level_edges(project: Path) -> None:
    text = run("graph").stdout
    assert "faces (v1)  <- video/crop.frames" in text
    assert "text (v1)  <- video/raw.audio" in text
    assert "frames (v1)  <- video/raw.frames" in text


def test_graph_mermaid(project: Path) -> None:
    run("graph", "--mermaid", "out/graph.mmd")
    lines = (project / "out" / "graph.mmd").read_text().splitlines()
    assert lines[0] == "flowchart LR"
    assert sum(line.strip().startswith("subgraph ") for line in lines) == 6
    assert sum(" --> " in line for line in lines) == 8  # one per field dependency
    assert '  subgraph f3["video/crop"]' in lines
    assert "  f3_1 --> f4_0" in lines  # video/crop.frames -> vision/faces.faces


def test_graph_image_png_and_svg(project: Path) -> None:
    result = run("graph", "--image", "graph.png")
    assert "wrote graph.png: 6 features, 8 fields, 8 field edges" in result.stderr
    with Image.open(project / "graph.png") as png:
        assert png.format == "PNG"
        width, height = png.size
        assert 800 <= width <= 2000 and 300 <= height <= 1200, png.size
        assert len(png.getcolors(maxcolors=1 << 16) or []) > 10  # drawn, not blank

    run("graph", "--image", "graph.svg")
    tree = ET.parse(project / "graph.svg")
    ids = [el.get("id", "") for el in tree.iter() if el.get("id")]
    assert sum(i.startswith("metaxy-feature-") for i in ids) == 6
    assert sum(i.startswith("metaxy-field-") for i in ids) == 8
    assert sum(i.startswith("metaxy-edge-") for i in ids) == 8

    bad = run("graph", "--image", "graph.gif", code=1)
    assert "unknown image format 'gif'" in bad.stderr


def test_graph_image_offline_needs_no_program(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No `dot` or browser: an empty PATH still draws (matplotlib ships its fonts)."""
    monkeypatch.setenv("PATH", "")
    run("graph", "--image", "g.png")
    assert (project / "g.png").stat().st_size > 10_000


# -- P3: status and history on the example's store -----------------------------------------------


LOCATION_MODULE = '''"""The example's code location, with the fields a test changed."""
from pathlib import Path

from example_project.assets import build_assets
from metaxy_core import FieldSpec
from metaxy_dagster import feature_graph

CHANGED = {changed!r}
assets = build_assets(
    Path(__file__).parent / "data",
    fields={{k: [FieldSpec.model_validate(f) for f in v] for k, v in CHANGED.items()}},
)
graph = feature_graph(assets)
'''


class Example:
    """The example's assets over clips and a store file in the project folder, run by Dagster.
    :meth:`change` edits their code as an author would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data_dir = folder / "data"
        assert generate_clips(self.data_dir, N) == CLIPS
        self.assets = build_assets(self.data_dir)
        self.store_path = folder / "metaxy.duckdb"
        self.instance = dg.DagsterInstance.ephemeral()
        self.changed: dict[str, list[FieldSpec]] = {}
        self.versions = 0

    @property
    def graph(self) -> FeatureGraph:
        """The feature graph of the current assets."""
        return feature_graph(self.assets)

    def store(self) -> DuckDBMetadataStore:
        """The store file, over the current definitions."""
        return DuckDBMetadataStore(self.graph, self.store_path)

    def change(self, feature: str, fields: list[FieldSpec]) -> None:
        """Declare ``feature`` with ``fields`` from now on: a new code location module in the
        project builds the example's assets so, metaxy.toml names its ``graph`` (the command
        imports it), and the runs materialize the same assets."""
        self.changed[feature] = fields
        self.versions += 1
        name = f"{LOCATION}_{self.versions}"
        dumped = {k: [f.model_dump(mode="json") for f in v] for k, v in self.changed.items()}
        (self.folder / f"{name}.py").write_text(
            LOCATION_MODULE.format(changed=dumped), encoding="utf-8"
        )
        importlib.invalidate_caches()  # a module file written within the folder's mtime tick
        (self.folder / "metaxy.toml").write_text(
            f'features = "{name}:graph"\nstore = "metaxy.duckdb"\n', encoding="utf-8"
        )
        self.assets = build_assets(self.data_dir, fields=self.changed)

    def bump(self, feature: str, *fields: str, version: str = "2") -> None:
        """Change code versions of ``feature``'s ``fields``."""
        self.change(
            feature,
            [
                f.model_copy(update={"code_version": version}) if f.key in fields else f
                for f in self.graph[feature].fields
            ],
        )

    def materialize(self, *features: str) -> dg.ExecuteInProcessResult:
        """Materialize ``features`` (default: all) in one run."""
        chosen = [
            a for a in self.assets if not features or a.key in {asset_key(f) for f in features}
        ]
        result = dg.materialize(
            chosen,
            resources=build_resources(self.store_path),
            instance=self.instance,
            selection=chosen,
        )
        assert result.success
        return result

    def written(self, feature: str, run_id: str) -> list[str]:
        """Clips of ``feature`` that run ``run_id`` wrote."""
        history = self.store().read(feature, history=True)
        rows = history.filter((pl.col(columns.RUN_ID) == run_id) & ~pl.col(columns.DELETED))
        return sorted(rows["clip_id"])


@pytest.fixture
def example(project: Path) -> Example:
    ex = Example(project)
    ex.materialize()
    return ex


def status_json(*args: str) -> dict[str, dict[str, object]]:
    found = json.loads(run("status", *args, "--json").stdout)
    return {s["feature"]: s for s in found["features"]}


def test_status_after_an_audio_edit(example: Example) -> None:
    """Acceptance 1: after an audio edit (scanned by video/raw), crop and transcript are stale
    by `audio`; faces nothing."""
    fresh = status_json()
    assert {k: (s["stored"], s["new"], s["stale"], s["orphaned"]) for k, s in fresh.items()} == {
        k: (N, 0, 0, 0) for k in fresh
    }
    edit_audio(2, example.data_dir)
    example.materialize("video/raw")
    found = status_json()
    counts = {k: (s["new"], s["stale"], s["orphaned"]) for k, s in found.items()}
    assert counts == {
        "video/raw": (0, 0, 0),
        "audio/features": (0, 2, 0),
        "audio/transcript": (0, 2, 0),
        "video/crop": (0, 2, 0),
        "vision/faces": (0, 0, 0),
        "train/manifest": (0, 0, 0),
    }
    assert found["video/crop"]["stale_fields"] == [
        {"field": "audio", "reason": "input_data", "samples": 2, "reads": "video/raw.audio"}
    ]
    assert found["audio/transcript"]["stale_fields"] == [
        {"field": "text", "reason": "input_data", "samples": 2, "reads": "video/raw.audio"}
    ]
    assert found["vision/faces"]["stale_fields"] == []
    assert "stored data versions" in str(found["video/raw"]["note"])

    table = run("status").stdout
    assert "audio: 2 (input_data) <- video/raw.audio" in table
    assert "text: 2 (input_data) <- video/raw.audio" in table
    one = status_json("video/crop")
    assert list(one) == ["video/crop"]


def test_status_shows_a_progress_bar_on_a_terminal(example: Example) -> None:
    """On a terminal (TTY_COMPATIBLE=1 tells Rich it is one), stderr shows the bar while
    counting; stdout holds only the result."""
    result = run("status", "--json", env={"TTY_COMPATIBLE": "1"})
    assert "counting train/manifest" in result.stderr
    assert "6/6" in result.stderr
    assert len(json.loads(result.stdout)["features"]) == 6
    assert run("status").stderr == ""  # not a terminal: no bar


def test_status_of_a_removed_clip_is_orphaned_downstream(example: Example) -> None:
    remove_clips(1, example.data_dir)
    example.materialize("video/raw")
    found = status_json()
    assert {k: s["orphaned"] for k, s in found.items()} == {
        "video/raw": 0,  # soft-deleted by its own scan
        "audio/features": 1,
        "audio/transcript": 1,
        "video/crop": 1,
        "vision/faces": 0,  # reads video/crop, which still holds the clip
        "train/manifest": 0,
    }
    assert found["video/raw"]["stored"] == N - 1


def test_status_on_an_empty_store(project: Path) -> None:
    found = status_json()
    assert found["video/raw"]["note"] == "root, never written: run its asset to scan the samples"
    assert all(s["stored"] == 0 and s["new"] == 0 for s in found.values())


def test_history_lists_the_writes(example: Example) -> None:
    edit_audio(1, example.data_dir)
    second = example.materialize()
    writes = json.loads(run("history", "video/crop", "--json").stdout)
    assert [(w["write_seq"] > 0, w["rows"], w["deleted"]) for w in writes] == [
        (True, N, False),
        (True, 1, False),
    ]
    assert writes[1]["run_id"] == second.run_id
    assert writes[0]["write_seq"] < writes[1]["write_seq"]
    table = run("history", "video/crop").stdout
    assert "writes of video/crop" in table
    assert second.run_id[:8] in table
    assert run("history", "nope", code=1).stderr.startswith("error: feature 'nope' is not")


# -- P4: snapshots, diff, accept, delete ----------------------------------------------------------


def test_a_changed_feature_must_be_one_of_the_example_s(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no feature 'video/nope' in the example; its features"):
        build_assets(tmp_path, fields={"video/nope": [FieldSpec(key="x")]})


def test_a_write_records_a_snapshot_once(example: Example) -> None:
    """Each asset writes over its feature and those upstream of it: the first run's snapshots
    grow with the graph (one feature more each), the latest is the whole graph; a run with the
    same definitions records nothing."""
    listed = json.loads(run("snapshots", "--json").stdout)
    assert [(s["features"], s["current"]) for s in listed] == [
        (6, True),
        (5, False),
        (4, False),
        (3, False),
        (2, False),
        (1, False),
    ]
    assert listed[0]["graph_version"] == example.graph.versions.graph
    assert "already the latest" in run("snapshot").stdout
    example.materialize()
    assert json.loads(run("snapshots", "--json").stdout) == listed
    example.bump("video/crop", "audio")
    assert "recorded" in run("snapshot").stdout
    current = [s["current"] for s in json.loads(run("snapshots", "--json").stdout)]
    assert current == [True, *[False] * 6]
    # A run with the bumped definitions records nothing more: the snapshot holds them.
    example.materialize()
    assert len(json.loads(run("snapshots", "--json").stdout)) == 7


def test_diff_predicts_exactly_what_the_run_recomputes(example: Example) -> None:
    """Acceptance 1: after a code-version bump, `diff` names the change and predicts the
    samples each feature recomputes; the run then recomputes exactly those."""
    example.bump("video/crop", "audio")
    found = json.loads(run("diff", "--json").stdout)
    assert found["changes"] == [
        {"feature": "video/crop", "field": "audio", "kind": "code version", "old": "1", "new": "2"}
    ]
    predicted = {s["feature"]: s["new"] + s["stale"] for s in found["impact"]}
    assert predicted == {
        "video/raw": 0,
        "audio/features": 0,
        "audio/transcript": 0,
        "video/crop": N,
        "vision/faces": 0,
        "train/manifest": 0,
    }
    crop = next(s for s in found["impact"] if s["feature"] == "video/crop")
    assert crop["stale_fields"] == [
        {"field": "audio", "reason": "code_version", "samples": N, "reads": "video/raw.audio"}
    ]
    assert found["follows"] == {}  # nothing reads video/crop.audio
    text = run("diff").stdout
    assert "video/crop.audio: code version 1 -> 2" in text

    result = example.materialize()
    recomputed = {f: len(example.written(f, result.run_id)) for f in predicted}
    assert recomputed == predicted
    assert example.written("video/crop", result.run_id) == CLIPS
    # The run recorded the new definitions: relative to them, nothing changed.
    assert json.loads(run("diff", "--json").stdout)["changes"] == []
    older = json.loads(run("snapshots", "--json").stdout)[1]["graph_version"]
    assert json.loads(run("diff", older[:10], "--json").stdout)["changes"] == found["changes"]


def test_diff_of_a_reads_change_and_what_follows(example: Example) -> None:
    audio = example.graph["video/crop"].fields[0]
    frames = FieldSpec(key="frames", deps=(FieldDep("video/raw"),))  # now reads audio too
    example.change("video/crop", [audio, frames])
    found = json.loads(run("diff", "--json").stdout)
    assert found["changes"] == [
        {
            "feature": "video/crop",
            "field": "frames",
            "kind": "reads",
            "old": "video/raw.frames",
            "new": "video/raw.audio, video/raw.frames",
        }
    ]
    assert found["follows"] == {"vision/faces": ["faces"], "train/manifest": ["default"]}
    crop = next(s for s in found["impact"] if s["feature"] == "video/crop")
    assert (crop["stale"], crop["stale_fields"][0]["reason"]) == (N, "code_version")
    assert "then, if outputs change" in run("diff").stdout


def test_diff_errors(project: Path, example: Example) -> None:
    assert "matches no graph snapshot" in run("diff", "ffff", code=1).stderr
    empty = project / "empty.duckdb"
    result = run("diff", code=1, env={"METAXY_STORE": str(empty)})
    assert "has no graph snapshot yet" in result.stderr
    assert "Run `metaxy snapshot`" in result.stderr


def test_accept_makes_samples_fresh_without_recompute(example: Example) -> None:
    """Acceptance 1: `accept` after a cosmetic bump: fresh without recompute, an audit row."""
    example.bump("video/crop", "audio")
    before = example.store().read("video/crop").sort("clip_id")
    result = run("accept", "video/crop.audio")
    assert f"accepted audio of video/crop: {N} samples take version" in result.stdout
    found = status_json()
    assert {k: s["new"] + s["stale"] + s["orphaned"] for k, s in found.items()} == dict.fromkeys(
        found, 0
    )
    after = example.store().read("video/crop").sort("clip_id")
    # Outputs and data versions kept; versions and provenance of audio moved on.
    for name in [
        "crop_audio_path",
        "n_frames",
        "metaxy_data_version",
        "metaxy_data_version__audio",
    ]:
        assert after[name].to_list() == before[name].to_list(), name
    assert (
        after["metaxy_provenance__audio"].to_list() != before["metaxy_provenance__audio"].to_list()
    )
    assert set(after["metaxy_feature_version"]) == {example.graph.versions.features["video/crop"]}
    [(record, body)] = audits(example.store(), ACCEPT)
    assert record.key == "video/crop"
    assert (body["fields"], body["samples"]) == (["audio"], N)
    writes = json.loads(run("history", "video/crop", "--json").stdout)
    assert writes[-1]["run_id"] == body["run_id"]
    assert writes[-1]["run_id"].startswith("metaxy-accept-")
    # A run now computes nothing anywhere.
    rerun = example.materialize()
    assert {f: example.written(f, rerun.run_id) for f in found} == {f: [] for f in found}
    assert "nothing to accept" in run("accept", "video/crop").stdout


def test_accept_refuses_when_upstream_data_changed_too(example: Example) -> None:
    edit_audio(1, example.data_dir)
    example.materialize("video/raw")
    example.bump("video/crop", "audio")
    seq = example.store().last_write_seq("video/crop")
    result = run("accept", "video/crop", code=1)
    assert result.stderr.startswith(
        "error: cannot accept the change of 'video/crop': 1 of its stale samples also have "
        "changed upstream data (e.g. {'clip_id': 'clip-0000'}), which needs a recompute."
    )
    assert example.store().last_write_seq("video/crop") == seq  # nothing written
    assert audits(example.store(), ACCEPT) == []


def test_accept_one_field_refuses_other_changed_fields(example: Example) -> None:
    example.bump("video/crop", "audio", "frames")
    result = run("accept", "video/crop.audio", code=1)
    assert f"{N} stale samples also changed field(s) frames" in result.stderr
    assert "accepted audio, frames of video/crop" in run("accept", "video/crop").stdout
    assert run("accept", "video/crop.nope", code=1).stderr.startswith(
        "error: feature 'video/crop' has no field 'nope'"
    )


def test_accept_a_root_code_change(example: Example) -> None:
    example.bump("video/raw", "frames")
    assert status_json("video/raw")["video/raw"]["stale"] == N
    assert f"accepted frames of video/raw: {N} samples" in run("accept", "video/raw.frames").stdout
    assert {k: s["stale"] for k, s in status_json().items()} == dict.fromkeys(status_json(), 0)


def test_delete_soft_deletes_samples(example: Example) -> None:
    result = run("delete", "vision/faces", "--ids", "clip-0001,clip-0002", "--ids", "clip-0003")
    assert "deleted 3 samples of vision/faces" in result.stdout
    found = status_json("vision/faces")["vision/faces"]
    assert (found["stored"], found["new"]) == (N - 3, 3)  # computable again
    writes = json.loads(run("history", "vision/faces", "--json").stdout)
    assert (writes[-1]["rows"], writes[-1]["deleted"]) == (3, True)
    assert len(example.store().read("vision/faces", history=True)) == N + 3  # history kept

    bad = run("delete", "vision/faces", "--ids", "clip-0000,clip-9999", code=1)
    assert "1 of the given ids are not current samples of 'vision/faces'" in bad.stderr
    assert "{'clip_id': 'clip-9999'}" in bad.stderr
    assert example.store().read("vision/faces").height == N - 3  # nothing deleted
    assert "Missing option '--ids'" in run("delete", "vision/faces", code=2).stderr


# -- docs/cli.md: what it shows is what metaxy prints ---------------------------------------------

DOC = ROOT / "docs" / "cli.md"


def doc_blocks(lang: str) -> list[str]:
    """The bodies of the ```<lang> blocks of docs/cli.md."""
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)


def test_doc_terminal_captures_are_what_metaxy_prints(project: Path) -> None:
    """Every ```console block, run in the state the page describes: the example materialized,
    then the audio of two clips edited and scanned."""
    example = Example(project)
    example.materialize()
    edit_audio(2, example.data_dir)
    example.materialize("video/raw")
    captures = doc_blocks("console")
    assert len(captures) == 3
    for capture in captures:
        command, *expected = capture.splitlines()
        assert command.startswith("$ metaxy ")
        printed = run(*command.split()[2:], env={"COLUMNS": "100"}).stdout
        assert [line.rstrip() for line in printed.splitlines()] == expected, command


def test_doc_error_example_and_diff_line(example: Example) -> None:
    error, diff_line = doc_blocks("text")
    assert run("describe", "video/nope", code=1).stderr == error
    example.bump("video/crop", "audio")
    assert diff_line.strip() in run("diff").stdout


def test_doc_graph_image_is_the_example_graph(project: Path) -> None:
    run("graph", "--image", "fresh.png")
    with (
        Image.open(project / "fresh.png") as fresh,
        Image.open(ROOT / DOC.parent / "img" / "metaxy-graph.png") as shown,
    ):
        assert shown.size == fresh.size
    assert "](img/metaxy-graph.png)" in DOC.read_text(encoding="utf-8")


def test_doc_configuration_is_this_repository_s() -> None:
    [toml] = doc_blocks("toml")
    assert toml in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


# -- store upkeep: vacuum and copy ---------------------------------------------------------------


def _raw_clips(version: str) -> pl.DataFrame:
    return root_samples("clip_id", CLIPS[:2], audio=[version] * 2, frames=["f"] * 2)


def test_vacuum_compacts_a_delta_store_and_other_stores_need_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    graph = importlib.import_module("example_project.definitions").graph
    delta = open_store(f"delta+file://{tmp_path}/delta", graph)
    for version in ("1", "2"):
        delta.write("video/raw", _raw_clips(version))
    config = f'features = "{EXAMPLE_FEATURES}"\nstore = "delta+file://{tmp_path}/delta"\n'
    (tmp_path / "metaxy.toml").write_text(config, encoding="utf-8")
    result = run("vacuum", "--retention-hours", "0")
    assert result.stdout.splitlines() == [
        "_metaxy/writes: 2 files deleted",
        "_metaxy/records: 0 files deleted",
        "features/video__raw: 2 files deleted",
        f"vacuumed 3 tables of DeltaMetadataStore({str(tmp_path / 'delta')!r}) (files unused "
        "for 0 h)",
    ]
    assert delta.read("video/raw").height == 2  # every row is still there
    assert delta.read("video/raw", history=True).height == 4
    refused = run("vacuum", "--retention-hours", "-1", code=2).stderr
    assert "Invalid value for '--retention-hours'" in refused
    (tmp_path / "metaxy.toml").write_text(
        f'features = "{EXAMPLE_FEATURES}"\nstore = "metaxy.duckdb"\n', encoding="utf-8"
    )
    assert run("vacuum").stdout == (
        f"DuckDBMetadataStore({str(tmp_path / 'metaxy.duckdb')!r}, engine='duckdb') needs no "
        "vacuum: only a Delta store keeps small and unused files (DuckDB and ClickHouse compact "
        "their own storage).\n"
    )


def test_copy_moves_the_project_to_another_store(project: Path) -> None:
    graph = importlib.import_module("example_project.definitions").graph
    DuckDBMetadataStore(graph, project / "metaxy.duckdb").write("video/raw", _raw_clips("1"))
    result = run("copy", "metaxy.duckdb", f"delta+file://{project}/delta")
    assert result.stdout.splitlines() == [
        "video/raw: 2 rows",
        f"copied 1 features from DuckDBMetadataStore({str(project / 'metaxy.duckdb')!r}, "
        f"engine='duckdb') to DeltaMetadataStore({str(project / 'delta')!r})",
    ]
    moved = open_store(f"delta+file://{project}/delta", graph)
    assert moved.count_update("video/raw", samples=_raw_clips("1")) == IncrementCounts(0, 0, 0)


def test_copy_refuses_credentials_in_a_uri_without_echoing_them(project: Path) -> None:
    for uri in ("clickhouse://admin:s3cret@ch.internal/meta", "delta+s3://AKIA:s3cret@b/p"):
        result = run("copy", "metaxy.duckdb", uri, code=1)
        assert result.stderr.startswith("error: ")
        assert "credentials" in result.stderr
        assert "s3cret" not in result.stdout + result.stderr
