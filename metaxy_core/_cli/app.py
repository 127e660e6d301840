"""The ``metaxy`` command: Typer wiring of the subcommands; each one's work lives in its own
module. Errors print one line (``error: ...`` ending with a hint) and exit 1; usage errors
exit 2 (Click's convention)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.text import Text

from metaxy_core.errors import FeatureNotFoundError, MetaxyError
from metaxy_core.graph import FeatureGraph
from metaxy_core.store import accept, snapshots
from metaxy_core.store.base import MetadataStore

from . import config as cfg
from . import diff, graph_export, samples, status, views

__all__ = ["Project", "app", "main"]

P = ParamSpec("P")
R = TypeVar("R")


def out() -> Console:
    """The console of results (stdout), made per use so it sees the current environment
    (``COLUMNS``, ``TTY_COMPATIBLE``...) and streams."""
    return Console()


def err() -> Console:
    """The console of messages, errors and progress (stderr)."""
    return Console(stderr=True)


def say(text: str, *, console: Console | None = None) -> None:
    """Print ``text`` as it is on ``console`` (default: :func:`out`): no highlighting, no
    wrapping at the terminal's width, so a line stays one line for scripts and grep; no
    markup, so bracketed text such as ``[tool.metaxy]`` is printed, not taken for a style."""
    (console or out()).print(text, markup=False, highlight=False, soft_wrap=True)


app = typer.Typer(
    name="metaxy",
    help="Inspect a metaxy project: its features, their graph, and what the store holds.\n\n"
    "Reads \\[tool.metaxy] of pyproject.toml or metaxy.toml (nearest to the working "
    "directory; METAXY_FEATURES, METAXY_STORE and METAXY_ENGINE override it).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Project:
    """The configuration, graph and store of one invocation, loaded when first used."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path

    @cached_property
    def config(self) -> cfg.ProjectConfig:
        return cfg.load_config(self.config_path)

    @cached_property
    def graph(self) -> FeatureGraph:
        return cfg.load_graph(self.config)

    @cached_property
    def store(self) -> MetadataStore:
        return cfg.open_store(self.config, self.graph)

    def feature(self, key: str) -> str:
        """``key`` if it names a feature; else an error listing the features."""
        if key not in self.graph:
            known = ", ".join(self.graph.topological_order()) or "none"
            raise FeatureNotFoundError(
                f"feature {key!r} is not declared in {self.config.features}; known features: "
                f"{known}. Run `metaxy features` to see them."
            )
        return key


def handled(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a metaxy error into one line on stderr and exit code 1."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except MetaxyError as exc:
            err().print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
            raise typer.Exit(1) from None

    return run


def project(ctx: typer.Context) -> Project:
    obj = ctx.find_object(Project)
    assert obj is not None  # set by the callback, which always runs first
    return obj


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


@app.callback()
def _options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Configuration file (metaxy.toml or pyproject.toml); default: the nearest one, "
            "or $METAXY_CONFIG.",
            dir_okay=False,
            exists=True,
        ),
    ] = None,
) -> None:
    ctx.obj = Project(config)


FeatureArg = Annotated[str, typer.Argument(help="A feature key, e.g. video/raw.")]


@app.command("features")
@handled
def features_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the features, upstream first: ids, fields with code versions, what each reads."""
    graph = project(ctx).graph
    if as_json:
        print_json([views.feature_json(graph, spec.key) for spec in graph])
        return
    out().print(views.features_view(graph))


@app.command("describe")
@handled
def describe_command(
    ctx: typer.Context,
    feature: FeatureArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one feature: fields, code versions, what each field reads, and its upstream."""
    proj = project(ctx)
    proj.feature(feature)
    if as_json:
        print_json(views.feature_json(proj.graph, feature))
        return
    out().print(views.describe_view(proj.graph, feature))


@app.command("graph")
@handled
def graph_command(
    ctx: typer.Context,
    mermaid: Annotated[
        Path | None, typer.Option("--mermaid", help="Also write a Mermaid flowchart to FILE.")
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option("--image", help="Also draw the graph to FILE (.png, .svg or .pdf)."),
    ] = None,
) -> None:
    """Show the feature graph with field-level edges; write it as Mermaid or an image."""
    graph = project(ctx).graph
    out().print(views.graph_view(graph))
    if mermaid is not None:
        mermaid.parent.mkdir(parents=True, exist_ok=True)
        mermaid.write_text(graph_export.to_mermaid(graph) + "\n", encoding="utf-8")
        say(f"wrote {mermaid}", console=err())
    if image is not None:
        drawn = graph_export.write_image(graph, image)
        say(
            f"wrote {drawn.path}: {drawn.features} features, {drawn.fields} fields, "
            f"{drawn.edges} field edges",
            console=err(),
        )


@app.command("status")
@handled
def status_command(
    ctx: typer.Context,
    feature: Annotated[
        str | None, typer.Argument(help="Only this feature (default: every feature).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Count new, stale (by field and reason), orphaned and failed samples of each feature."""
    proj = project(ctx)
    features = [proj.feature(feature)] if feature else list(proj.graph.topological_order())
    console = err()
    with Progress(
        SpinnerColumn(),
        TextColumn("counting {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("features", total=len(features))
        found = status.statuses(
            proj.store,
            features,
            counting=lambda name: progress.update(task, description=name),
            counted=lambda _: progress.advance(task),
        )
    if as_json:
        print_json({"store": str(proj.store), "features": [s.to_json() for s in found]})
        return
    out().print(status.status_table(found))


@app.command("history")
@handled
def history_command(
    ctx: typer.Context,
    feature: FeatureArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the writes of a feature over time: sequence, time, run id, rows, version."""
    proj = project(ctx)
    writes = status.write_history(proj.store, proj.feature(feature))
    if as_json:
        print_json(writes.to_dicts())
        return
    if writes.is_empty():
        say(f"{feature} was never written to {proj.store}.")
        return
    out().print(status.history_table(feature, writes))


@app.command("snapshot")
@handled
def snapshot_command(ctx: typer.Context) -> None:
    """Record the current definitions in the store as a graph snapshot (for `metaxy diff`).

    A store also records one by itself when it is first written with new definitions.
    """
    proj = project(ctx)
    recorded = snapshots.record_snapshot(proj.store, force=True, exact=True)
    version = proj.graph.versions.graph
    what = "recorded" if recorded else "already the latest"
    say(f"graph snapshot {version} {what} in {proj.store}")


@app.command("snapshots")
@handled
def snapshots_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the graph snapshots recorded in the store, newest first."""
    proj = project(ctx)
    found = list(reversed(snapshots.snapshots(proj.store)))
    current = proj.graph.versions.graph
    if as_json:
        print_json(
            [
                {
                    "graph_version": s.graph_version,
                    "recorded_at": s.recorded_at.isoformat(),
                    "features": len(s.graph),
                    "current": s.graph_version == current,
                }
                for s in found
            ]
        )
        return
    out().print(views.snapshots_table(str(proj.store), found, current))


@app.command("diff")
@handled
def diff_command(
    ctx: typer.Context,
    ref: Annotated[
        str | None,
        typer.Argument(help="A recorded graph version (or a prefix); default: the latest."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What changed since a recorded snapshot (fields, code versions, reads), and how many
    samples each feature would recompute now."""
    proj = project(ctx)
    snap = snapshots.find_snapshot(proj.store, ref)
    changes = diff.definition_changes(snap.graph, proj.graph)
    following = diff.follows(proj.graph, changes)
    found = status.statuses(proj.store, proj.graph.topological_order())
    if as_json:
        print_json(
            {
                "snapshot": snap.graph_version,
                "current": proj.graph.versions.graph,
                "changes": [ch.to_json() for ch in changes],
                "impact": [s.to_json() for s in found],
                "follows": following,
            }
        )
        return
    say(
        f"snapshot {views.short(snap.graph_version)} "
        f"({snap.recorded_at:%Y-%m-%d %H:%M:%S} UTC) -> current definitions "
        f"{views.short(proj.graph.versions.graph)}"
    )
    for change in changes:
        say(f"  {change.text()}")
    if not changes:
        say("  no definition changes")
    out().print(diff.impact_table(found, following))


def _feature_and_fields(graph: FeatureGraph, target: str) -> tuple[str, list[str] | None]:
    if target in graph:
        return target, None
    feature, _, field = target.rpartition(".")
    if feature in graph:
        graph[feature].field(field)
        return feature, [field]
    raise FeatureNotFoundError(
        f"{target!r} names no feature (or FEATURE.FIELD); known features: "
        f"{', '.join(graph.topological_order())}. Run `metaxy features` to see them."
    )


@app.command("accept")
@handled
def accept_command(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="FEATURE or FEATURE.FIELD whose definition change to accept.")
    ],
) -> None:
    """Accept a definition change that does not change outputs: the stale samples take the
    new versions without recompute (an audit row is kept). Refused when upstream data changed."""
    proj = project(ctx)
    feature, fields = _feature_and_fields(proj.graph, target)
    result = accept.accept_change(proj.store, feature, fields)
    if not result.samples:
        out().print(
            f"nothing to accept: no sample of {feature} is stale by its definitions", soft_wrap=True
        )
        return
    say(
        f"accepted {', '.join(result.fields)} of {feature}: {result.samples} samples take "
        f"version {views.short(proj.graph.versions.features[feature])} without recompute "
        f"(write {result.write_seq}, run {result.run_id})"
    )


@app.command("delete")
@handled
def delete_command(
    ctx: typer.Context,
    feature: FeatureArg,
    ids: Annotated[
        list[str],
        typer.Option(
            "--ids",
            help="Ids of the samples, comma-separated or repeated; for several id columns, "
            'JSON objects such as \'{"video_id": "v1", "chunk": 2}\'.',
        ),
    ],
) -> None:
    """Soft-delete samples: history keeps every earlier row."""
    proj = project(ctx)
    frame = samples.parse_ids(proj.store, proj.feature(feature), ids)
    result = proj.store.delete(feature, frame, run_id="metaxy-delete")
    say(f"deleted {result.rows} samples of {feature} (write {result.write_seq})")


@app.command("retry")
@handled
def retry_command(ctx: typer.Context, feature: FeatureArg) -> None:
    """Compute failed samples again: the next increment of FEATURE includes the samples that
    failed under their current inputs and code (their failures stay recorded)."""
    proj = project(ctx)
    released = proj.store.forget_failures(proj.feature(feature))
    say(f"{released} failed samples of {feature} will be computed again by its next run")


def main() -> None:
    """The console script."""
    app()


from . import maintenance  # noqa: E402, F401  (registers `vacuum` and `copy` on the app)
