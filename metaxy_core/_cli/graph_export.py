"""The feature graph as Mermaid text and as an image (PNG or SVG), with field-level edges.

The image is drawn with matplotlib (a wheel with its own fonts: nothing is downloaded or
called outside Python): one box per feature, holding one node per field, features laid out in
columns by depth (roots on the left), an arrow per field dependency. In an SVG, every feature,
field node and edge is a group with a stable id (``metaxy-feature-<i>``, ``metaxy-field-<i>``,
``metaxy-edge-<i>``), so tools and tests can find them.

>>> from metaxy_core import FeatureGraph, FeatureSpec
>>> graph = FeatureGraph([
...     FeatureSpec(key="video/raw", id_columns=["id"], fields=["audio", "frames"]),
...     FeatureSpec(key="audio/text", id_columns=["id"], fields=["text"], deps=["video/raw"]),
... ])
>>> print(to_mermaid(graph))
flowchart LR
  subgraph f0["video/raw"]
    f0_0["audio"]
    f0_1["frames"]
  end
  subgraph f1["audio/text"]
    f1_0["text"]
  end
  f0_0 --> f1_0
  f0_1 --> f1_0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metaxy_core.definitions import FieldRef
from metaxy_core.errors import ConfigError
from metaxy_core.graph import FeatureGraph

__all__ = ["ImageSummary", "layers", "to_mermaid", "write_image"]

IMAGE_FORMATS = ("png", "svg", "pdf")
_FIELD_HEIGHT = 0.55
_FEATURE_GAP = 0.55
_COLUMN_WIDTH = 3.4
_BOX_WIDTH = 2.6
_PALETTE = ("#dbeafe", "#dcfce7", "#fef9c3", "#fce7f3", "#ede9fe", "#ffedd5", "#e0f2fe")


def _node_ids(graph: FeatureGraph) -> dict[FieldRef, str]:
    return {
        FieldRef(feature, field): f"f{i}_{j}"
        for i, feature in enumerate(graph.topological_order())
        for j, field in enumerate(graph[feature].field_keys)
    }


def _quote(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def to_mermaid(graph: FeatureGraph) -> str:
    """A Mermaid flowchart: a subgraph per feature, a node per field, an edge per field
    dependency (upstream first)."""
    ids = _node_ids(graph)
    lines = ["flowchart LR"]
    for i, feature in enumerate(graph.topological_order()):
        lines.append(f"  subgraph f{i}[{_quote(feature)}]")
        lines.extend(
            f"    {ids[FieldRef(feature, field)]}[{_quote(field)}]"
            for field in graph[feature].field_keys
        )
        lines.append("  end")
    lines.extend(f"  {ids[up]} --> {ids[down]}" for up, down in _edges(graph))
    return "\n".join(lines)


def _edges(graph: FeatureGraph) -> list[tuple[FieldRef, FieldRef]]:
    ids = _node_ids(graph)
    return sorted(graph.field_edges(), key=lambda e: (ids[e[1]], ids[e[0]]))


def layers(graph: FeatureGraph) -> dict[str, int]:
    """Depth of every feature: 0 for roots, else one more than its deepest upstream."""
    depth: dict[str, int] = {}
    for feature in graph.topological_order():
        depth[feature] = 1 + max((depth[u] for u in graph.upstream(feature)), default=-1)
    return depth


@dataclass(frozen=True)
class ImageSummary:
    """What :func:`write_image` drew."""

    path: Path
    features: int
    fields: int
    edges: int


def write_image(graph: FeatureGraph, path: Path) -> ImageSummary:
    """Draw ``graph`` to ``path``; the format follows the suffix (png, svg or pdf)."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(
            f"cannot draw the graph as {path.name!r}: unknown image format {fmt!r}. Name a "
            f"file ending in one of: {', '.join('.' + f for f in IMAGE_FORMATS)}."
        )
    # Imported here: matplotlib takes a second to import, and only this command needs it.
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    depth = layers(graph)
    bottoms: dict[int, float] = {}  # per column, the lowest y drawn so far
    centers: dict[FieldRef, tuple[float, float]] = {}
    boxes: list[tuple[str, float, float, float]] = []  # feature, x, top, bottom

    # Each column top-down in order of where its upstream fields sit (their mean height), so
    # that a feature lines up with what it reads and edges rarely cross a box.
    def wanted_top(feature: str) -> float:
        ys = [
            centers[u][1] for f in graph[feature].field_keys for u in graph.field_deps(feature, f)
        ]
        return sum(ys) / len(ys) + 0.75 if ys else 0.0

    for column in range(max(depth.values(), default=-1) + 1):
        members = [f for f in graph.topological_order() if depth[f] == column]
        for feature in sorted(members, key=lambda f: -wanted_top(f)):
            x = column * _COLUMN_WIDTH
            top = min(wanted_top(feature), bottoms.get(column, 0.0))
            y = top - 0.75  # room for the feature's title
            for field in graph[feature].field_keys:
                centers[FieldRef(feature, field)] = (x, y)
                y -= _FIELD_HEIGHT
            bottom = y + _FIELD_HEIGHT - 0.35
            boxes.append((feature, x, top, bottom))
            bottoms[column] = bottom - _FEATURE_GAP
    heights = {column: -bottom for column, bottom in bottoms.items()}
    tallest = max(heights.values(), default=1.0)
    columns = max(depth.values(), default=0) + 1
    figure = Figure(figsize=(1.2 + columns * _COLUMN_WIDTH * 0.9, 0.6 + tallest * 0.9), dpi=100)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_axis_off()
    axes.set_xlim(-_BOX_WIDTH / 2 - 0.3, (columns - 1) * _COLUMN_WIDTH + _BOX_WIDTH / 2 + 0.3)
    axes.set_ylim(-tallest - 0.1, 0.2)
    for i, (feature, x, top, bottom) in enumerate(boxes):
        patch = FancyBboxPatch(
            (x - _BOX_WIDTH / 2, bottom),
            _BOX_WIDTH,
            top - bottom,
            boxstyle="round,pad=0,rounding_size=0.12",
            facecolor=_PALETTE[i % len(_PALETTE)],
            edgecolor="#475569",
            linewidth=1.2,
        )
        patch.set_gid(f"metaxy-feature-{i}")
        axes.add_patch(patch)
        axes.text(x, top - 0.3, feature, ha="center", va="center", fontsize=10, weight="bold")
    for i, (ref, (x, y)) in enumerate(centers.items()):
        label = f"{ref.field}  (v{graph[ref.feature].field(ref.field).code_version})"
        node = axes.text(
            x,
            y,
            label,
            ha="center",
            va="center",
            fontsize=9,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#64748b"},
        )
        node.set_gid(f"metaxy-field-{i}")
    edges = _edges(graph)
    for i, (up, down) in enumerate(edges):
        (x0, y0), (x1, y1) = centers[up], centers[down]
        arrow = FancyArrowPatch(
            (x0 + _BOX_WIDTH / 2 - 0.25, y0),
            (x1 - _BOX_WIDTH / 2 + 0.25, y1),
            arrowstyle="->",
            mutation_scale=12,
            color="#334155",
            shrinkA=0,
            shrinkB=0,
        )
        arrow.set_gid(f"metaxy-edge-{i}")
        axes.add_patch(arrow)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=fmt)
    return ImageSummary(path, len(boxes), len(centers), len(edges))
