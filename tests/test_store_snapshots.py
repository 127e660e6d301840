"""Graph snapshots, audit rows and accepting a definition change, on every store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pytest

from metaxy_core import (
    DuckDBMetadataStore,
    FeatureGraph,
    FeatureSpec,
    FieldDep,
    FieldSpec,
    InMemoryMetadataStore,
    MetadataStore,
)
from metaxy_core.errors import AcceptRefusedError, SnapshotNotFoundError
from metaxy_core.store.accept import accept_change
from metaxy_core.store.snapshots import ACCEPT, audits, find_snapshot, record_snapshot, snapshots

Opener = Callable[[FeatureGraph], MetadataStore]


def graph(raw_audio: str = "1", text: str = "1") -> FeatureGraph:
    return FeatureGraph(
        [
            FeatureSpec(
                key="video/raw",
                id_columns=["id"],
                fields=[FieldSpec(key="audio", code_version=raw_audio), "frames"],
            ),
            FeatureSpec(
                key="audio/text",
                id_columns=["id"],
                deps=["video/raw"],
                fields=[
                    FieldSpec(key="text", code_version=text, deps=[FieldDep("video/raw", "audio")])
                ],
            ),
        ]
    )


def raw(audio: list[str]) -> pl.DataFrame:
    ids = [f"s{i}" for i in range(len(audio))]
    return pl.DataFrame(
        {
            "id": ids,
            "path": [f"/clips/{i}" for i in ids],
            "metaxy_data_version__audio": audio,
            "metaxy_data_version__frames": ["f"] * len(audio),
        }
    )


@pytest.fixture(params=["duckdb", "memory"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same store under a given graph (the memory store keeps its data across)."""
    if request.param == "duckdb":
        return lambda g: DuckDBMetadataStore(g, tmp_path / "store.duckdb")
    memory = InMemoryMetadataStore(graph())

    def reopen(g: FeatureGraph) -> MetadataStore:
        memory.graph = g
        memory._latest_snapshot = None
        return memory

    return reopen


def fill(store: MetadataStore) -> None:
    store.write("video/raw", raw(["a", "b", "c"]))
    text = store.resolve_update("audio/text").new.select("id", "metaxy_provenance__text")
    store.write("audio/text", text.with_columns(words=pl.lit(3)))


def test_first_write_records_a_snapshot_and_new_definitions_another(opener: Opener) -> None:
    v1 = opener(graph())
    with pytest.raises(SnapshotNotFoundError, match=r"has no graph snapshot yet: .* `metaxy"):
        find_snapshot(v1, None)
    fill(v1)
    fill(v1)  # same definitions: no second snapshot
    [first] = snapshots(v1)
    assert first.graph_version == graph().versions.graph
    assert first.graph.versions.graph == graph().versions.graph  # the definitions round-trip
    v2 = opener(graph(text="2"))
    v2.count_update("audio/text")
    assert len(snapshots(v2)) == 1  # reading never records
    v2.write("video/raw", raw(["a", "b", "c"]))
    assert [s.graph_version for s in snapshots(v2)] == [
        graph().versions.graph,
        graph(text="2").versions.graph,
    ]
    assert find_snapshot(v2, graph().versions.graph[:6]).graph.versions == graph().versions
    with pytest.raises(SnapshotNotFoundError, match=r"'zz' matches no graph snapshot"):
        find_snapshot(v2, "zz")


def test_accept_keeps_data_versions_and_leaves_an_audit_row(opener: Opener) -> None:
    fill(opener(graph()))
    store = opener(graph(text="2"))
    assert store.count_update("audio/text").stale == 3
    before = store.read("audio/text").sort("id")
    result = accept_change(store, "audio/text", ["text"])
    assert (result.samples, result.fields) == (3, ("text",))
    assert store.count_update("audio/text").stale == 0
    after = store.read("audio/text").sort("id")
    assert after["words"].to_list() == [3, 3, 3]
    assert after["metaxy_data_version"].to_list() == before["metaxy_data_version"].to_list()
    [(record, body)] = audits(store, ACCEPT)
    assert (record.key, body["samples"], body["fields"]) == ("audio/text", 3, ["text"])
    assert body["run_id"] == result.run_id


def test_accept_refuses_changed_upstream_data(opener: Opener) -> None:
    fill(opener(graph()))
    store = opener(graph(text="2"))
    store.write("video/raw", raw(["a", "B", "c"]))
    with pytest.raises(AcceptRefusedError, match=r"1 of its stale samples also have changed"):
        accept_change(store, "audio/text")
    assert audits(store, ACCEPT) == []


def test_accept_a_root_field(opener: Opener) -> None:
    fill(opener(graph()))
    store = opener(graph(raw_audio="2"))
    assert accept_change(store, "video/raw", ["audio"]).samples == 3
    samples = raw(["a", "b", "c"])
    assert store.count_update("video/raw", samples=samples).stale == 0
    # Data versions kept: downstream sees no change.
    assert store.count_update("audio/text").total == 0


def test_a_store_over_part_of_the_graph_updates_the_latest_snapshot(opener: Opener) -> None:
    """As a Dagster asset's store holds its feature and those upstream only: a part that
    agrees with the latest snapshot records nothing; a changed part records the latest
    snapshot with its definitions in place; ``exact`` records the part as it is."""
    fill(opener(graph()))
    raw_only = FeatureGraph([graph()["video/raw"]])
    part = opener(raw_only)
    part.write("video/raw", raw(["a", "b", "c"]))
    assert [s.graph_version for s in snapshots(part)] == [graph().versions.graph]
    bumped = opener(FeatureGraph([graph(raw_audio="2")["video/raw"]]))
    bumped.write("video/raw", raw(["a", "b", "c"]))
    latest = snapshots(bumped)[-1]
    assert latest.graph_version == graph(raw_audio="2").versions.graph  # both features
    assert sorted(spec.key for spec in latest.graph) == ["audio/text", "video/raw"]
    assert record_snapshot(opener(raw_only), exact=True) is True
    assert snapshots(bumped)[-1].graph_version == raw_only.versions.graph


def test_a_part_that_no_longer_fits_the_latest_snapshot_records_itself(opener: Opener) -> None:
    """A field removed that a feature outside the part read: the part is the best record."""
    fill(opener(graph()))
    no_audio = FeatureSpec(key="video/raw", id_columns=["id"], fields=["frames"])
    part = opener(FeatureGraph([no_audio]))
    part.write("video/raw", raw(["a"]).drop("metaxy_data_version__audio"))
    assert snapshots(part)[-1].graph_version == FeatureGraph([no_audio]).versions.graph


def test_a_store_written_before_records_existed(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    store = DuckDBMetadataStore(graph(), path)
    fill(store)
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE metaxy_records")
    fresh = DuckDBMetadataStore(graph(), path)
    assert snapshots(fresh) == []
    assert record_snapshot(fresh) is True
    assert len(snapshots(fresh)) == 1
