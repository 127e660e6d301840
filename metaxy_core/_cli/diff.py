"""``metaxy diff``: what changed between a recorded snapshot and the current definitions, and
what the store would recompute because of it.

>>> from metaxy_core import FeatureGraph, FeatureSpec, FieldSpec
>>> old = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"], fields=["audio"])])
>>> new = FeatureGraph([FeatureSpec(key="clips", id_columns=["id"],
...                                 fields=[FieldSpec(key="audio", code_version="2"), "frames"])])
>>> for change in definition_changes(old, new):
...     print(change.text())
clips.audio: code version 1 -> 2
clips.frames: field added
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.table import Table

from metaxy_core.definitions import FieldRef
from metaxy_core.graph import FeatureGraph

from .status import FeatureStatus
from .views import reads_text

__all__ = ["Change", "definition_changes", "follows", "impact_table"]


@dataclass(frozen=True)
class Change:
    """One difference between two graphs' definitions."""

    feature: str
    field: str | None
    kind: str
    """``feature added``, ``feature removed``, ``id columns``, ``field added``,
    ``field removed``, ``code version`` or ``reads``."""
    old: str = ""
    new: str = ""

    def text(self) -> str:
        where = self.feature if self.field is None else f"{self.feature}.{self.field}"
        if self.old or self.new:
            return f"{where}: {self.kind} {self.old} -> {self.new}"
        return f"{where}: {self.kind}"

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def definition_changes(old: FeatureGraph, new: FeatureGraph) -> list[Change]:
    """Every change from ``old`` to ``new``, in the new graph's order (removed ones last)."""
    changes: list[Change] = []
    for spec in new:
        key = spec.key
        if key not in old:
            changes.append(Change(key, None, "feature added"))
            continue
        before = old[key]
        if before.id_columns != spec.id_columns:
            changes.append(
                Change(
                    key, None, "id columns", ",".join(before.id_columns), ",".join(spec.id_columns)
                )
            )
        for f in spec.fields:
            if f.key not in before.field_keys:
                changes.append(Change(key, f.key, "field added"))
                continue
            was = before.field(f.key)
            if was.code_version != f.code_version:
                changes.append(Change(key, f.key, "code version", was.code_version, f.code_version))
            reads_old, reads_new = reads_text(old, key, f.key), reads_text(new, key, f.key)
            if reads_old != reads_new:
                changes.append(Change(key, f.key, "reads", reads_old, reads_new))
        changes.extend(
            Change(key, name, "field removed")
            for name in before.field_keys
            if name not in spec.field_keys
        )
    changes.extend(
        Change(k, None, "feature removed") for k in old.topological_order() if k not in new
    )
    return changes


def follows(graph: FeatureGraph, changes: list[Change]) -> dict[str, list[str]]:
    """Per feature, the fields that read a changed field (directly or not): they recompute
    too if the changed fields' outputs change when recomputed."""
    changed = {
        FieldRef(ch.feature, ch.field)
        for ch in changes
        if ch.field is not None and ch.kind in ("code version", "reads", "field added")
    }
    reached: dict[str, set[str]] = {}
    for ref in changed:
        if ref.feature in graph and ref.field in graph[ref.feature].field_keys:
            for down in graph.downstream_fields(*ref):
                reached.setdefault(down.feature, set()).add(down.field)
    order = graph.topological_order()
    return {k: sorted(reached[k]) for k in order if k in reached}


def impact_table(found: list[FeatureStatus], following: dict[str, list[str]]) -> Table:
    table = Table(title="impact on the store (what a run would compute now)")
    for name, justify in [
        ("feature", "left"),
        ("new", "right"),
        ("stale", "right"),
        ("orphaned", "right"),
        ("why", "left"),
        ("then, if outputs change", "left"),
    ]:
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for s in found:
        why = ", ".join(f"{f.field}: {f.samples} ({f.reason})" for f in s.stale_fields)
        then = ", ".join(following.get(s.feature, []))
        table.add_row(s.feature, str(s.new), str(s.stale), str(s.orphaned), why or s.note, then)
    return table
