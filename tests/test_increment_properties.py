"""Property: the increment is exactly what a field-level model of the graph says, no more, no less.

For random graphs and random edits of root samples, a plain-Python model propagates "which fields
of which samples changed" through the resolved field dependencies. Each feature (in topological
order) must report exactly the model's new, stale and orphaned samples, and exactly the model's
changed fields per stale sample; then it is recomputed, as a pipeline step would.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaxy_core import (
    ClickHouseMetadataStore,
    FeatureGraph,
    FeatureSpec,
    FieldDep,
    FieldRef,
    FieldSpec,
    MetadataStore,
)
from metaxy_core.testing import QUICK_STORE_KINDS, make_store

FIELD_POOL = ("a", "b", "c")


@st.composite
def graphs(draw: st.DrawFn) -> FeatureGraph:
    n_features = draw(st.integers(2, 5))
    specs: list[FeatureSpec] = []
    for i in range(n_features):
        fields = draw(st.lists(st.sampled_from(FIELD_POOL), min_size=1, max_size=3, unique=True))
        deps = sorted(
            draw(st.sets(st.sampled_from([s.key for s in specs]), max_size=2)) if specs else set()
        )
        if i > 0 and not deps and draw(st.booleans()):
            deps = [specs[-1].key]
        field_specs = []
        for f in fields:
            explicit = None
            if deps and draw(st.booleans()):
                up = draw(st.sampled_from(deps))
                up_fields = next(s for s in specs if s.key == up).field_keys
                explicit = [
                    FieldDep(
                        up, draw(st.lists(st.sampled_from(up_fields), min_size=1, unique=True))
                    )
                ]
            field_specs.append(FieldSpec(key=f, deps=explicit))
        specs.append(FeatureSpec(key=f"f{i}", id_columns=["sid"], fields=field_specs, deps=deps))
    return FeatureGraph(specs)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[FeatureGraph, int, dict[str, dict[str, set[int]]], set[int], set[int]]:
    graph = draw(graphs())
    n = draw(st.integers(1, 25))
    roots = [s for s in graph if s.is_root]
    edits = {
        r.key: {f: draw(st.sets(st.integers(0, n - 1), max_size=n)) for f in r.field_keys}
        for r in roots
    }
    added = set(range(n, n + draw(st.integers(0, 3))))
    removed = draw(st.sets(st.integers(0, n - 1), max_size=3))
    return graph, n, edits, added, removed


def _root_frame(spec: FeatureSpec, ids: set[int], edited: dict[str, set[int]]) -> pl.DataFrame:
    order = sorted(ids)
    data: dict[str, list[str]] = {"sid": [f"s{i}" for i in order]}
    for f in spec.field_keys:
        data[f"metaxy_data_version__{f}"] = [
            f"{f}{i}" + ("*" if i in edited.get(f, ()) else "") for i in order
        ]
    return pl.DataFrame(data, schema={k: pl.String for k in data})


def _recompute(store: MetadataStore, feature: str) -> None:
    inc = store.resolve_update(feature)
    todo = inc.to_compute().drop("metaxy_changed_fields", "metaxy_stale_reason", strict=False)
    if todo.height:
        store.write(feature, todo)
    if inc.orphaned.height:
        store.delete(feature, inc.orphaned)


def _check(
    kind: str,
    scenario: tuple[FeatureGraph, int, dict[str, dict[str, set[int]]], set[int], set[int]],
) -> None:
    graph, n, edits, added, removed = scenario
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(kind, graph, Path(tmp))
        try:
            _run(store, graph, n, edits, added, removed)
        finally:
            if isinstance(store, ClickHouseMetadataStore):
                store.close()  # stops its background merges before the directory goes


def _run(
    store: MetadataStore,
    graph: FeatureGraph,
    n: int,
    edits: dict[str, dict[str, set[int]]],
    added: set[int],
    removed: set[int],
) -> None:
    before = set(range(n))
    for spec in graph:
        if spec.is_root:
            store.write(spec.key, _root_frame(spec, before, {}))
        else:
            _recompute(store, spec.key)

    after = (before | added) - removed
    changed: dict[FieldRef, set[int]] = {}
    present: dict[str, set[int]] = {}
    for spec in graph:
        if spec.is_root:
            root = _root_frame(spec, after, edits[spec.key])
            inc = store.resolve_update(spec.key, samples=root)
            for f in spec.field_keys:
                changed[FieldRef(spec.key, f)] = edits[spec.key][f] & before & after
            present[spec.key] = after
            store.write(spec.key, inc.to_compute().join(root, on="sid").select(root.columns))
            store.delete(spec.key, inc.orphaned)
        else:
            present[spec.key] = set.intersection(*(present[d.feature] for d in spec.deps))
            for f in spec.field_keys:
                deps = graph.field_deps(spec.key, f)
                changed[FieldRef(spec.key, f)] = set().union(*(changed[d] for d in deps)) & before
        stored = before if spec.is_root else set(range(n))
        expected_stale = {
            i: sorted(f for f in spec.field_keys if i in changed[FieldRef(spec.key, f)])
            for i in present[spec.key] & stored
        }
        expected_stale = {i: fs for i, fs in expected_stale.items() if fs}
        if spec.is_root:
            continue  # roots were checked through their own samples above
        inc = store.resolve_update(spec.key)
        got_stale = {
            int(sid[1:]): sorted(fs)
            for sid, fs in inc.stale.select("sid", "metaxy_changed_fields").iter_rows()
        }
        assert got_stale == expected_stale, spec.key
        assert {int(s[1:]) for s in inc.new["sid"]} == present[spec.key] - stored, spec.key
        assert {int(s[1:]) for s in inc.orphaned["sid"]} == stored - present[spec.key], spec.key
        counts = store.count_update(spec.key)
        assert (counts.new, counts.stale, counts.orphaned) == (
            inc.new.height, inc.stale.height, inc.orphaned.height,
        )  # fmt: skip
        _recompute(store, spec.key)


@pytest.mark.parametrize("kind", QUICK_STORE_KINDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_increment_matches_field_level_model(
    kind: str,
    scenario: tuple[FeatureGraph, int, dict[str, dict[str, set[int]]], set[int], set[int]],
) -> None:
    _check(kind, scenario)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_increment_matches_field_level_model_on_spark(
    scenario: tuple[FeatureGraph, int, dict[str, dict[str, set[int]]], set[int], set[int]],
) -> None:
    _check("delta-spark", scenario)
